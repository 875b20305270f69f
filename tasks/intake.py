"""Celery tasks of real-time intake: flush coalesced events, sweep forgotten ones.

Thin on purpose: the logic lives in `connector.intake` (no Celery there). `flush` runs with
acks_late + reject_on_worker_lost so a worker killed mid-batch gets the message back; the
batch it had taken is keyed by the task id, so the redelivered task resumes that batch.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

from celery import Task
from celery.signals import worker_ready

from connector.config import Config, load_config
from connector.config.model import SourceConfig
from connector.intake.flush import flush_source, follow_up, is_transient
from connector.intake.store import IntakeStore, known_sources
from connector.redis_conn import Keys, get_redis
from tasks import routing
from tasks.celery_app import app

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


@app.task(
    bind=True,
    name=routing.FLUSH_TASK,
    queue=QUEUE,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded by the source's realtime.max_retries below
    ignore_result=True,
)
def flush(self: Task, source: str) -> dict[str, Any]:
    """Take ≤ batch_size pending ids of `source` and sync them (batch id = task id)."""
    source_cfg = config().source(source)
    store = store_for(source_cfg)
    batch_id = self.request.id or "eager"
    try:
        outcome = flush_source(store, batch_id, _sync, schedule=schedule_flush)
    except Exception as exc:
        if not is_transient(exc):
            raise  # flush_source parked the ids in the failed hash
        retries = self.request.retries
        if retries >= source_cfg.realtime.max_retries:
            batch = store.get_batch(batch_id)
            if batch is not None:
                store.fail(batch, f"gave up after {retries} retries: {type(exc).__name__}")
            follow_up(store, schedule_flush)
            raise
        retry_after = getattr(exc, "retry_after", None)
        delay = min(300.0, 2.0 * 2**retries) * (0.5 + random.random() / 2)
        if retry_after:
            delay = max(delay, float(retry_after))
        raise self.retry(exc=exc, countdown=delay) from exc
    return outcome.to_dict()


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
