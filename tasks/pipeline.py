"""Thin Celery tasks of the sync pipeline: each body is one call into connector.pipeline.

Retry policy (connector/retry.py): only transient failures (`transient_errors()`: PIM
429/5xx/timeouts, DAM transient errors, Redis connection problems) are retried by Celery's
`autoretry_for`, with exponential backoff + jitter from the user config
(`sync.backoff_base`, `sync.backoff_max`; a longer Retry-After of the DAM or the PIM
wins), capped well below the broker's visibility timeout. Per-asset PIM retries
are not Celery retries: `push` rewrites its batch to the failed assets and queues itself
again with a countdown.
A task that fails for good (retries exhausted, soft time limit, a bug) reports to
`connector.pipeline.gave_up` so that its run still ends (failed) and releases its lock; one
the pool killed at its hard time limit (Celery calls `on_failure` in the worker's main
process with TimeLimitExceeded) reports to `pipeline.hard_time_limit_exceeded`: the run
fails at once with that reason instead of reading `abandoned` once its lock expires.

acks_late + reject_on_worker_lost (celeryconfig): a killed worker's task is redelivered;
every body is idempotent. Arguments are ids only: no payloads, no secrets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import TimeLimitExceeded

import celeryconfig
from connector import pipeline
from connector.pipeline.resume import task_retry_countdown
from connector.retry import backoff_delay, is_redis_outage, retrying, transient_errors
from tasks import routing
from tasks.celery_app import app
from tasks.retry import COUNTDOWN_MAX, ConfiguredRetryTask

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_POLICY: dict[str, Any] = {
    "autoretry_for": transient_errors(),
    # Celery's own backoff is off: `SyncRetryTask.retry_countdown` takes the countdown from
    # `sync.backoff_*`; retry_backoff_max stays the hard ceiling of any countdown
    "retry_backoff": False,
    "retry_backoff_max": COUNTDOWN_MAX,
    "retry_jitter": True,
    "max_retries": 8,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


#: seconds a pipeline step waits, in-process, for an unreachable Redis to come back
REDIS_PATIENCE = 120.0
#: first and longest wait, in seconds, between two runs of a step while Redis is away
REDIS_RETRY_FIRST = 0.5
REDIS_RETRY_MAX = 5.0


def patiently(body: Callable[[], T], patience: float = REDIS_PATIENCE) -> T:
    """Run a step body; while Redis is unreachable, wait and run it again (bodies are
    idempotent). Why not Celery's retry: it publishes a new message, which cannot be done
    while Redis (also the broker) is down; Celery then rejects the message without requeue
    and the run waits for it until the broker's visibility timeout (hours)."""

    def note(failures: int, exc: BaseException, delay: float | None) -> None:
        log.warning("Redis unreachable (%s); this step runs again in %.1fs",
                    type(exc).__name__, delay or 0.0)

    return retrying(
        body,
        retry_if=is_redis_outage,
        wait=lambda n, exc: backoff_delay(n, REDIS_RETRY_FIRST, REDIS_RETRY_MAX, jitter=False),
        patience=patience,
        on_retry=note,
    )


class SyncRetryTask(ConfiguredRetryTask):
    """Automatic retries wait what the user config says (`sync.backoff_*`), not Celery's
    default backoff."""

    def retry_countdown(self, retries: int, exc: BaseException | None) -> float:
        return task_retry_countdown(retries, exc)


class PipelineTask(SyncRetryTask):
    """Reports a final failure to the pipeline so the run is not left hanging."""

    #: which `gave_up` kind this task is (fetch | chunk | batch), None = nothing to repair
    pipeline_kind: str | None = None

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        kind = self.pipeline_kind
        if kind is None:
            return
        params = dict(kwargs)
        names = {"fetch": ("source", "run_id"), "chunk": ("run_id", "chunk_id"),
                 "batch": ("run_id", "batch_id")}[kind]
        params.update(zip(names, args, strict=False))
        run_id = params.get("run_id")
        item = params.get(names[1]) if kind != "fetch" else "fetch"
        if isinstance(exc, TimeLimitExceeded):  # killed: no run id when it started the run
            try:
                pipeline.hard_time_limit_exceeded(
                    kind, float(exc.args[0] if exc.args else self.time_limit or 0),
                    task_id=task_id, run_id=str(run_id) if run_id else None,
                    item_id=str(item), part=int(params.get("part") or 0),
                )
            except Exception:
                log.exception("could not fail the run of %s[%s]", self.name, task_id)
            return
        if not run_id:
            return
        try:
            pipeline.gave_up(kind, str(run_id), str(item), f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("could not record the failure of %s for run %s", self.name, run_id)


@app.task(
    base=PipelineTask, bind=True, name=routing.FETCH_TASK,
    soft_time_limit=celeryconfig.FETCH_SOFT_TIME_LIMIT, time_limit=celeryconfig.FETCH_TIME_LIMIT,
    pipeline_kind="fetch", **RETRY_POLICY,
)
def fetch_changed_assets(
    self: PipelineTask,
    source: str,
    run_id: str | None = None,
    trigger: str = "schedule",
    full: bool = False,
    part: int = 0,
) -> dict[str, Any]:
    """Fetch step of `run_id` (its part `part`: a long fetch goes on in a new task every
    `sync.fetch_slice_seconds`); without a run id (beat), start a run of `source` and
    fetch it here, in this same task (one hop, `pipeline.start_and_fetch`)."""
    if run_id is None:
        started: list[str] = []

        def adopt(new_run_id: str) -> None:
            # a retry, or the final failure, of this task concerns the run started here:
            # Celery re-sends (and reports) the request's kwargs, so the run id goes there
            started.append(new_run_id)
            self.request.kwargs = {**(self.request.kwargs or {}), "run_id": new_run_id}
            # killed at its hard time limit, this process says nothing: the worker's main
            # process (`on_failure`) finds the run from the task id
            pipeline.remember_task_run(self.request.id, new_run_id)

        try:
            return pipeline.start_and_fetch(
                source, trigger, full=full, on_started=adopt
            ).to_dict()
        except Exception as exc:
            if not started or not is_redis_outage(exc):
                raise
            run_id = started[0]  # Redis went away during the fetch: wait for it, as below
    fetch_run = run_id
    state = patiently(lambda: pipeline.fetch(fetch_run, part=part).state)
    return {"run_id": fetch_run, "part": part, "state": state}


@app.task(
    base=PipelineTask, bind=True, name=routing.TRANSFORM_TASK, pipeline_kind="chunk",
    **RETRY_POLICY,
)
def transform_chunk(self: PipelineTask, run_id: str, chunk_id: str) -> None:
    patiently(lambda: pipeline.transform(run_id, chunk_id))


@app.task(
    base=PipelineTask, bind=True, name=routing.PUSH_TASK, pipeline_kind="batch",
    **RETRY_POLICY,
)
def push_batch(self: PipelineTask, run_id: str, batch_id: str) -> None:
    patiently(lambda: pipeline.push(run_id, batch_id))


class ReconcileTask(SyncRetryTask):
    """Killed at its hard time limit, a reconcile's source lock is released at once."""

    def on_failure(
        self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        if not isinstance(exc, TimeLimitExceeded):
            return  # any other failure ran the body's `finally`: the lock is released
        try:
            pipeline.reconcile_time_limit_exceeded(
                task_id, float(exc.args[0] if exc.args else self.time_limit or 0))
        except Exception:
            log.exception("could not release the lock of %s[%s]", self.name, task_id)


@app.task(
    base=ReconcileTask, bind=True, name=routing.RECONCILE_TASK,
    soft_time_limit=celeryconfig.RECONCILE_SOFT_TIME_LIMIT,
    time_limit=celeryconfig.RECONCILE_TIME_LIMIT, **RETRY_POLICY,
)
def reconcile_source(self: Task, source: str, apply: bool = False) -> dict[str, Any]:
    """A scheduled reconcile of a busy source is skipped (the next one comes), like a sync."""
    task_id = self.request.id or "eager"
    try:
        return pipeline.reconcile(
            source, apply=apply,
            on_locked=lambda token: pipeline.remember_task_lock(task_id, source, token))
    except pipeline.SourceBusyError as exc:
        log.info("%s", exc)
        return {"source": source, "busy": True, "holder": exc.holder, "message": str(exc)}


@app.task(name=routing.FRESHNESS_TASK)
def check_freshness() -> dict[str, float]:
    """From beat (when `alerts.freshness_seconds` is set): the sources over the threshold,
    each told by the alerts at most once per debounce window (connector/alerts.py)."""
    services = pipeline.get_services()
    return services.alerts.check_freshness(services.config.sources)


@app.task(name=routing.WATCH_TASK, ignore_result=True)
def watch_runs() -> list[dict[str, Any]]:
    """From beat (every minute): runs whose progress stopped for `sync.stall_after` get
    their unfinished steps queued again (connector/pipeline/watchdog.py)."""
    return [r.to_dict() for r in pipeline.watch_runs()]


@app.task(base=SyncRetryTask, bind=True, name=routing.SYNC_IDS_TASK,
          **RETRY_POLICY)
def sync_asset_ids(
    self: Task,
    source: str,
    asset_ids: list[str],
    deleted_ids: list[str] | None = None,
    trigger: str = "webhook",
) -> dict[str, Any]:
    """Real-time sync of ≤100 ids (intake); retried while the PIM is unavailable."""
    return pipeline.sync_assets_by_id(source, asset_ids, deleted_ids or (), trigger)


class CeleryEnqueuer:
    """`connector.pipeline.Enqueuer` on top of this app (installed by tasks.wiring)."""

    def fetch(self, source: str, run_id: str, part: int = 0) -> None:
        kwargs: dict[str, Any] = {"source": source, "run_id": run_id}
        if part:  # a continuation: ids and a number only, nothing secret
            kwargs["part"] = part
        fetch_changed_assets.apply_async(kwargs=kwargs,
                                         queue=routing.queue_of(routing.FETCH_TASK))

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        transform_chunk.apply_async((run_id, chunk_id), queue=routing.transform_queue(media))

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        push_batch.apply_async((run_id, batch_id), queue=routing.queue_of(routing.PUSH_TASK),
                               countdown=countdown if countdown > 0 else None)
