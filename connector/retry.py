"""Retry arithmetic shared by the PIM client, the DAM adapters and the pipeline tasks.

One `Retry-After` parser (delta-seconds or HTTP-date, RFC 9110 §10.2.3) and one backoff
formula, so that the PIM side, the DAM side and the Celery task retries wait the same way.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from datetime import UTC

Clock = Callable[[], float]


def parse_retry_after(value: str | None, now: float | Clock | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value; None when absent or unreadable.

    `now` (epoch seconds, or a function returning them) is only used for the HTTP-date form;
    a date in the past means "no wait" (0.0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP-dates are GMT by definition
            when = when.replace(tzinfo=UTC)
        current = now() if callable(now) else (time.time() if now is None else now)
        seconds = when.timestamp() - current
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(
    attempt: int, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Exponential backoff with jitter (50 to 100 % of base·2^(attempt-1)); the server's
    Retry-After wins when longer. Never more than `cap`, so that no wait (or Celery
    countdown) comes near the broker's visibility timeout."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


__all__ = ["backoff_delay", "parse_retry_after"]
