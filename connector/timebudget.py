"""The one time budget of the Celery deployment: task time limits, the visibility timeout,
and the longest countdown anything may ask for.

Why one place: with the Redis transport, a message a worker holds unacknowledged (a task
running, or waiting for its countdown/ETA) is handed to a second worker once the
visibility timeout passes, while the first still has it. So a countdown plus the longest
task limit must stay below the visibility timeout. celeryconfig.py and the task
decorators (tasks/pipeline.py) read the limits from here, and the config loader refuses a
countdown the user sets (`sync.backoff_max`, a source's `realtime.window`) that would not
fit (`countdown_problem`). Plain numbers: no Celery import, so the connector can check.

RabbitMQ closes the channel of a message unacknowledged for `consumer_timeout` (30 min by
default) and redelivers it: every task limit but reconcile's stays under it (the fetch
goes on in slices, connector/pipeline/steps/slices.py).
"""

from __future__ import annotations

TASK_SOFT_TIME_LIMIT = 300          # transform / push / intake
TASK_TIME_LIMIT = 360
# the fetch goes on in a new task every `sync.fetch_slice_seconds` (≤ 600, default 240;
# connector/pipeline/steps/slices.py): a part is a slice plus one slow DAM page at most
FETCH_SOFT_TIME_LIMIT = 900
FETCH_TIME_LIMIT = 960
RECONCILE_SOFT_TIME_LIMIT = 3300    # reconcile still reads the whole DAM in one task
RECONCILE_TIME_LIMIT = 3600
#: the longest hard limit of any task, and which task has it
LONGEST_TASK_LIMIT = max(TASK_TIME_LIMIT, FETCH_TIME_LIMIT, RECONCILE_TIME_LIMIT)
LONGEST_TASK = "reconcile"
#: hard ceiling of a Celery task retry's countdown (tasks/retry.py), whatever Retry-After
#: a server sent; `sync.backoff_max`'s default is the same
COUNTDOWN_MAX = 300
VISIBILITY_TIMEOUT = 2 * 3600       # broker and result backend (celeryconfig.py)


def countdown_budget() -> int:
    """Seconds a countdown may last: the visibility timeout minus the longest task limit."""
    return VISIBILITY_TIMEOUT - LONGEST_TASK_LIMIT


def countdown_problem(seconds: float) -> str | None:
    """Why a countdown of `seconds` does not fit the budget (None when it does); the
    config loader prefixes the key path."""
    if seconds <= countdown_budget():
        return None
    return (
        f"{seconds:g} s must stay below the broker's visibility timeout "
        f"{VISIBILITY_TIMEOUT} s minus the longest task limit {LONGEST_TASK_LIMIT} s "
        f"({LONGEST_TASK}): at most {countdown_budget()} s"
    )
