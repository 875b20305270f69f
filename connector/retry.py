"""The one retry policy: what is worth retrying, how long to wait, and the retry loop.

Shared by the PIM client, the DAM adapters, the pipeline and intake tasks, so that every
side waits the same way:

- classification: `is_transient_status` (HTTP statuses) and `is_transient` /
  `transient_errors` (exceptions; the latter is the Celery tasks' `autoretry_for`);
- `parse_retry_after`: the single `Retry-After` parser (delta-seconds or HTTP-date,
  RFC 9110 §10.2.3);
- `backoff_delay`: exponential backoff with jitter where the server's Retry-After wins;
  `retry_countdown` turns it into a Celery countdown;
- `retrying`: the in-process retry loop (bounded attempts, or a patience deadline).

No Celery and no I/O here: task-level retries use Celery's own options with a countdown
from `retry_countdown`.
"""

from __future__ import annotations

import email.utils
import functools
import math
import random
import time
from collections.abc import Callable
from datetime import UTC
from typing import TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], object]

#: statuses worth retrying on either side (PIM and DAM): timeouts, too early / too many
#: requests (420 is Cloudinary's rate-limit answer); every other 5xx is transient too
#: (`is_transient_status`)
TRANSIENT_STATUSES = frozenset({408, 420, 425, 429, 500, 502, 503, 504})

#: longest wait, in seconds, of a consumer loop that reconnects to its broker
RECONNECT_MAX = 30.0


# ---------------------------------------------------------------- classification


def is_transient_status(status: int) -> bool:
    """An HTTP answer worth asking again later (408, 420, 425, 429 and every 5xx)."""
    return status in TRANSIENT_STATUSES or 500 <= status <= 599


@functools.cache
def transient_errors() -> tuple[type[BaseException], ...]:
    """The exceptions worth retrying later: the PIM's and the DAM's transient errors,
    Redis connection problems, and the OS's own connection errors and timeouts.

    Imported on first use: the PIM and DAM error modules use this module's classification."""
    import redis

    from connector.dam.base import TransientDamError
    from connector.pim.errors import TransientPimError

    return (
        TransientPimError,
        TransientDamError,
        redis.ConnectionError,
        redis.TimeoutError,
        ConnectionError,
        TimeoutError,
    )


def is_transient(exc: BaseException) -> bool:
    """Worth retrying later: `transient_errors()`, or any error class named `Transient…`
    (an injected pipeline callable may bring its own)."""
    if isinstance(exc, transient_errors()):
        return True
    return any(cls.__name__.startswith("Transient") for cls in type(exc).__mro__)


def is_redis_outage(exc: BaseException) -> bool:
    """Redis unreachable, raised as such or as the cause of another error (a token store
    that could not be read, …)."""
    import redis

    outage = (redis.ConnectionError, redis.TimeoutError)
    return isinstance(exc, outage) or isinstance(exc.__cause__, outage)


# ---------------------------------------------------------------- how long to wait


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


def retry_after_of(exc: BaseException | None) -> float | None:
    """The Retry-After (seconds) an error carries, when it carries a number."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    *,
    jitter: bool = True,
) -> float:
    """Seconds before retry number `attempt` (1-based): base·2^(attempt-1), with jitter
    50 to 100 % of it (none with `jitter=False`); the server's Retry-After wins when
    longer. Never more than `cap`, so that no wait (or Celery countdown) comes near the
    broker's visibility timeout."""
    doublings = min(max(0, attempt - 1), 64)  # a consumer down for days: no float overflow
    ceiling = min(cap, base * 2.0**doublings)
    delay = ceiling / 2 + random.uniform(0, ceiling / 2) if jitter else ceiling
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


def retry_countdown(retries: int, exc: BaseException | None, base: float, cap: float) -> float:
    """Countdown of a Celery task's retry number `retries` + 1 after `exc`: the backoff,
    or the Retry-After `exc` carries when longer, never more than `cap`."""
    return backoff_delay(retries + 1, base, cap, retry_after_of(exc))


# ---------------------------------------------------------------- the in-process loop


def retrying(
    body: Callable[[], T],
    *,
    retry_if: Callable[[BaseException], bool],
    wait: Callable[[int, BaseException], float | None],
    attempts: int | None = None,
    patience: float | None = None,
    give_up: Callable[[int, BaseException], BaseException | None] | None = None,
    on_retry: Callable[[int, BaseException, float | None], None] | None = None,
    sleep: Sleep | None = None,
    clock: Clock | None = None,
) -> T:
    """Call `body` until it returns; the one in-process retry loop.

    An error `retry_if` refuses propagates at once. Failure number n (1-based) of a
    retryable error ends the loop when n reaches `attempts`, or when waiting `wait(n, exc)`
    seconds would end past `patience` seconds after the first call: then `give_up(n, exc)`
    is raised instead of the error when it returns one. Otherwise `on_retry(n, exc, delay)`
    is told (to log it) and `delay = wait(n, exc)` seconds are slept (None: nothing to sleep
    here, e.g. a shared Retry-After gate holds the next call); `wait` may raise to stop
    early. `sleep` and `clock` default to time.sleep and time.monotonic, looked up at call
    time (tests patch them).
    """
    pause = sleep if sleep is not None else time.sleep
    now = clock if clock is not None else time.monotonic
    deadline = None if patience is None else now() + patience
    failures = 0
    while True:
        try:
            return body()
        except Exception as exc:
            if not retry_if(exc):
                raise
            failures += 1
            if attempts is None or failures < attempts:
                delay = wait(failures, exc)
                if deadline is None or now() + (delay or 0.0) <= deadline:
                    if on_retry is not None:
                        on_retry(failures, exc, delay)
                    if delay is not None:
                        pause(delay)
                    continue
            final = give_up(failures, exc) if give_up is not None else None
            if final is None:
                raise
            raise final from None


__all__ = [
    "RECONNECT_MAX",
    "TRANSIENT_STATUSES",
    "backoff_delay",
    "is_redis_outage",
    "is_transient",
    "is_transient_status",
    "parse_retry_after",
    "retry_after_of",
    "retry_countdown",
    "retrying",
    "transient_errors",
]
