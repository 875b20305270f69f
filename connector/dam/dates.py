"""DAM timestamps: reading the many forms DAMs send, writing the watermark as each wants it.

Apart from the REST adapter because the dates are pure functions, used by the adapter's
normalisation and listing parameters and tested on their own.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any


def parse_datetime(value: Any) -> datetime:
    """A DAM timestamp as an aware UTC datetime; ValueError when it is not one.

    Accepts ISO 8601 (with or without zone, `Z`), epoch seconds or milliseconds (numbers
    or digit strings), `YYYY-MM-DD HH:MM:SS` and RFC 2822 dates.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, bool) or value is None:
        raise ValueError(f"not a date: {value!r}")
    elif isinstance(value, int | float):
        dt = _from_epoch(float(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty date")
        try:
            dt = _from_epoch(float(text))
        except ValueError:
            dt = _parse_date_text(text)
    else:
        raise ValueError(f"not a date: {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _from_epoch(seconds: float) -> datetime:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    if abs(seconds) > 1e11:  # milliseconds (1e11 s is the year 5138)
        seconds /= 1000.0
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError) as exc:
        raise ValueError(str(exc)) from None


def _parse_date_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M:%S"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"unparsable date {text[:60]!r}") from None


def format_since(since: datetime, fmt: str) -> str:
    """The watermark as the DAM wants it: "iso", "epoch", "epoch_ms" or a strftime pattern.

    Precision is cut downwards (whole seconds), so a DAM filtering with `>=` returns a
    little more, never less.
    """
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    since = since.astimezone(UTC)
    if fmt == "iso":
        return since.strftime("%Y-%m-%dT%H:%M:%SZ")
    if fmt == "epoch":
        return str(int(since.timestamp()))
    if fmt == "epoch_ms":
        return str(int(since.timestamp() * 1000))
    return since.strftime(fmt)


def since_value(since: datetime, fmt: str, template: str | None = None) -> str:
    """The "changed since" parameter's value: the date in `fmt`, placed in `template` (at
    `{since}`) when the DAM wants it inside a larger value such as a search expression."""
    text = format_since(since, fmt)
    return text if template is None else template.replace("{since}", text)
