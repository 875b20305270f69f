"""A task killed by its hard time limit: its run fails at once, with that reason.

Why: the pool kills the task's process (SIGKILL), so nothing in the task body runs; left
alone, the run would keep its lock until the lock's TTL (`sync.run_lock_ttl`, an hour by
default) and only then read `abandoned`. The worker's main process, which did the
killing, calls `hard_time_limit_exceeded` (tasks/pipeline.py) and the run ends `failed`
like any run whose task gave up (`completion.gave_up`): the watermark stays, the lock is
released once the tasks already queued are done.

A scheduled fetch is sent without a run id: it starts its run itself, in the process that
gets killed. `remember_task_run` writes the task's run id to Redis as soon as the run
exists, so that the main process finds it.

A reconcile has no run, but holds its source's lock (a sync of the source waits for it);
killed, it would keep it until the lock's TTL. `remember_task_lock` notes the lock token
it took, and `reconcile_time_limit_exceeded` releases the lock if that token still holds
it (not when its re-queue run took it over).
"""

from __future__ import annotations

import json
import logging

from connector.pipeline.completion import gave_up
from connector.pipeline.runs import TERMINAL_STATES
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.slices import FetchSlices

log = logging.getLogger(__name__)

#: seconds the task → run note is kept: longer than any task's hard limit
TASK_RUN_TTL = 2 * 3600


def _task_key(s: Services, task_id: str) -> str:
    return s.keys.of("task-run", task_id)


def _lock_key(s: Services, task_id: str) -> str:
    return s.keys.of("task-lock", task_id)


def remember_task_lock(task_id: str, source: str, token: str, *,
                       services: Services | None = None) -> None:
    """The task `task_id` holds `source`'s lock under `token` (a reconcile)."""
    s = services or get_services()
    s.redis.set(_lock_key(s, task_id), json.dumps([source, token]), ex=TASK_RUN_TTL)


def reconcile_time_limit_exceeded(task_id: str, limit: float, *,
                                  services: Services | None = None) -> str | None:
    """Release the source lock of a reconcile its hard time limit of `limit` seconds
    killed; idempotent. Returns the reason logged, None when it held no lock any more."""
    s = services or get_services()
    raw = s.redis.get(_lock_key(s, task_id))
    if raw is None:
        return None
    source, token = json.loads(raw)
    if not s.runs.release(source, token):
        return None  # released already, expired, or handed over to its re-queue run
    reason = (f"reconcile of {source} exceeded its hard time limit of {limit:g} s: "
              f"its lock is released, nothing it had not applied yet was applied")
    log.error("%s", reason)
    return reason


def remember_task_run(task_id: str, run_id: str, *, services: Services | None = None) -> None:
    """The task `task_id` works for run `run_id` (a task that started its own run)."""
    s = services or get_services()
    s.redis.set(_task_key(s, task_id), run_id, ex=TASK_RUN_TTL)


def hard_time_limit_exceeded(
    kind: str,
    limit: float,
    *,
    task_id: str,
    run_id: str | None = None,
    item_id: str | None = None,
    part: int = 0,
    services: Services | None = None,
) -> str | None:
    """Fail the run of a task of `kind` (fetch | chunk | batch) that its hard time limit
    of `limit` seconds killed; idempotent. The run id comes from the task's arguments, or
    else from `remember_task_run`. Returns the reason written, None when there was no run
    to fail (finished already, never started, or a fetch part its continuation replaced)."""
    s = services or get_services()
    if run_id is None:
        raw = s.redis.get(_task_key(s, task_id))
        if raw is None:
            log.info("task %s exceeded its hard time limit before it started a run", task_id)
            return None
        run_id = raw.decode() if isinstance(raw, bytes) else str(raw)
    if not s.runs.exists(run_id) or s.runs.get(run_id).state in TERMINAL_STATES:
        return None
    what = {"fetch": "fetch", "chunk": f"chunk {item_id}", "batch": f"batch {item_id}"}[kind]
    if kind == "fetch" and part < FetchSlices(s, run_id).load().part:
        return None  # a stale copy of an earlier part: the continuation owns the listing
    reason = f"{what} of run {run_id} exceeded its hard time limit of {limit:g} s"
    log.error("%s", reason)
    gave_up(kind, run_id, item_id or kind, reason, services=s, reason=reason)
    return reason
