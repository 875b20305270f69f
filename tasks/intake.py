"""Celery tasks of real-time intake: flush coalesced events, sweep forgotten ones.

Thin on purpose: the logic lives in `connector.intake` (no Celery there). `flush` runs with
acks_late + reject_on_worker_lost so a worker killed mid-batch gets the message back; the
batch it had taken is keyed by the task id, so the redelivered task resumes that batch.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Task
from celery.signals import worker_ready

from connector.config import Config, load_config
from connector.config.model import SourceConfig
from connector.intake.flush import flush_attempt, follow_up, retry_countdown
from connector.intake.store import IntakeStore, known_sources
from connector.redis_conn import Keys, get_redis
from connector.retry import transient_errors
from tasks import routing
from tasks.celery_app import app
from tasks.retry import ConfiguredRetryTask

log = logging.getLogger(__name__)

QUEUE = routing.queue_of(routing.FLUSH_TASK)


@functools.cache
def config() -> Config:
    """The process's config (from $CONNECTOR_CONFIG), loaded once."""
    return load_config()


def store_for(source: SourceConfig) -> IntakeStore:
    return IntakeStore(get_redis(), Keys(), source.name, source.realtime)


def schedule_flush(source: str, countdown: float) -> None:
    """Enqueue a flush of `source` in `countdown` seconds (the FlushScheduler in production)."""
    flush.apply_async((source,), countdown=countdown if countdown > 0 else None)


def _sync(source: str, asset_ids: list[str], **kwargs: Any) -> Any:
    from connector.pipeline import sync_assets_by_id  # the pipeline's public entry point

    return sync_assets_by_id(source, asset_ids, **kwargs)


class FlushTask(ConfiguredRetryTask):
    """Celery's automatic retries of a flush: the countdown from connector.intake.flush,
    at most the source's `realtime.max_retries` of them."""

    def retry_countdown(self, retries: int, exc: BaseException | None) -> float:
        return retry_countdown(retries, exc)

    def retry(
        self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
        throw: bool = True, eta: Any = None, countdown: float | None = None,
        max_retries: int | None = None, **options: Any,
    ) -> Any:
        # always the source's limit: Celery keeps a `max_retries` passed once on the task
        # object (`override_max_retries`) and hands it to later calls, other sources' too
        called = self.request.args or [(self.request.kwargs or {}).get("source")]
        if called[0] is not None:
            max_retries = config().source(str(called[0])).realtime.max_retries
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)


@app.task(
    bind=True,
    base=FlushTask,
    name=routing.FLUSH_TASK,
    queue=QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=transient_errors(),
    max_retries=None,  # FlushTask.retry: the source's realtime.max_retries
    ignore_result=True,
)
def flush(self: Task, source: str) -> dict[str, Any]:
    """Take ≤ batch_size pending ids of `source` and sync them (batch id = task id)."""
    return flush_attempt(
        store_for(config().source(source)), self.request.id or "eager", _sync,
        retries=self.request.retries, schedule=schedule_flush,
    ).to_dict()


@app.task(name=routing.SWEEP_TASK, queue=routing.queue_of(routing.SWEEP_TASK),
          ignore_result=True)
def sweep() -> dict[str, int]:
    """Safety net (worker start, and periodically from beat): schedule flushes for ids
    that wait without one — a lost enqueue, a worker that died holding a batch."""
    scheduled = {}
    names = {s.name for s in config().sources} & (known_sources(get_redis(), Keys()) or set())
    for name in sorted(names):
        store = store_for(config().source(name))
        store.recover_expired()
        scheduled[name] = follow_up(store, schedule_flush)
    return scheduled


# The safety net runs from beat too (every routing.SWEEP_EVERY seconds), added here so that
# intake stays self-contained; celeryconfig's own entries (the user's schedules) are left
# untouched.
app.conf.beat_schedule = {
    **(app.conf.beat_schedule or {}),
    routing.SWEEP_ENTRY: {
        "task": routing.SWEEP_TASK,
        "schedule": routing.SWEEP_EVERY,
        "options": {"queue": QUEUE, "expires": routing.SWEEP_EVERY},
    },
}


@worker_ready.connect
def _sweep_on_start(sender: Any = None, **kwargs: Any) -> None:
    """A restarted worker looks for work its predecessor left behind."""
    try:
        sweep.apply_async()
    except Exception:  # never keep a worker from starting
        log.exception("could not enqueue the intake sweep")
