"""Crontab text validation at config load, with messages that name the faulty field.

Why not `celery.schedules.crontab` here: `connector/` stays free of Celery, and this check
must run in every process that loads the config (`connector check`, the CLI, the intake web
app), not only in beat. Celery's own parser still builds the schedule (`celeryconfig.py`
turns each validated 5-field text into a `crontab`); this module only refuses, with the key
path and a plain message, the texts it would refuse, and accepts the same syntax subset:
values, ranges, lists, `*` and `/step`, day-of-week names `sun`..`sat`. A test
(tests/test_config.py) holds the two in agreement.
"""

from __future__ import annotations

import re

_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {}),
    (
        "day of week",
        0,
        6,
        {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
    ),
)
_CRON_ITEM = re.compile(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?")


def crontab_errors(text: str) -> list[str]:
    """Problems with a 5-field crontab ("minute hour day-of-month month day-of-week")."""
    parts = text.split()
    if len(parts) != 5:
        return [
            "must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        ]
    errors: list[str] = []
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if match is None:
                errors.append(f'{name}: "{item}" is not a value, range, list or */step')
                continue
            step = match.group(2)
            if step is not None and int(step) < 1:
                errors.append(f'{name}: step in "{item}" must be at least 1')
            elif step is not None and "-" not in match.group(1) and match.group(1) != "*":
                # Celery (like cron) steps through `*` or a range only; "5/10" would
                # pass here and stop beat at start.
                errors.append(f'{name}: a step needs * or a range before it, not "{item}"')
            if match.group(1) == "*":
                continue
            for bound in match.group(1).split("-"):
                number = names.get(bound.lower()) if not bound.isdigit() else int(bound)
                if number is None:
                    errors.append(f'{name}: "{bound}" is not a number')
                elif not low <= number <= high:
                    errors.append(f"{name}: {number} is out of range {low}-{high}")
    return errors
