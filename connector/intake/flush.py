"""One flush: take ≤ batch_size coalesced ids, hand them to the pipeline, then let go.

The batch key stays in Redis until the pipeline returned, so a worker killed mid-batch
loses nothing: the same task redelivered (same batch id) resumes the batch, and any later
flush puts batches whose lease ran out (no heartbeat) back into pending.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis

from connector import retry
from connector.intake.store import FLUSH_NOW, NO_FLUSH, Batch, IntakeStore
from connector.retry import is_transient
from connector.timebudget import COUNTDOWN_MAX

log = logging.getLogger(__name__)

SyncAssetsById = Callable[..., Any]
"""`connector.pipeline.sync_assets_by_id(source, asset_ids, deleted_ids=..., trigger=...)`."""

FlushScheduler = Callable[[str, float], None]
"""Enqueue a flush of `source` after `countdown` seconds (a Celery task in production)."""

#: a flush retried after a transient failure waits 2 s doubling (with jitter) up to 5 min;
#: a longer Retry-After of the PIM or the DAM wins, up to that too
RETRY_BACKOFF_BASE = 2.0
RETRY_BACKOFF_MAX = float(COUNTDOWN_MAX)  # connector/timebudget.py


@dataclass
class FlushOutcome:
    source: str
    batch_id: str
    upserts: int = 0
    deletes: int = 0
    pushed: int = 0
    failed: int = 0
    recovered: int = 0
    follow_up: int = NO_FLUSH

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Heartbeat:
    """Extends a batch's lease while the pipeline works on it (a daemon thread)."""

    def __init__(self, store: IntakeStore, batch_id: str) -> None:
        self.store = store
        self.batch_id = batch_id
        self.interval = max(0.05, store.realtime.batch_lease / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intake-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.batch_id)
            except redis.RedisError:  # the lease simply runs out; recovery handles it
                log.warning("intake heartbeat failed for batch %s", self.batch_id)


def call_sync(sync: SyncAssetsById, source: str, batch: Batch, trigger: str) -> Any:
    """Call the pipeline; records travel only when it declares a `records` parameter."""
    kwargs: dict[str, Any] = {"deleted_ids": list(batch.deletes), "trigger": trigger}
    if batch.records and _accepts(sync, "records"):
        kwargs["records"] = dict(batch.records)
    return sync(source, list(batch.upserts), **kwargs)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _counts(result: Any, batch: Batch) -> tuple[int, int]:
    """(pushed, failed) from whatever the pipeline returned; all pushed when it says nothing."""
    def pick(*names: str) -> int | None:
        for name in names:
            value = result.get(name) if isinstance(result, Mapping) else getattr(result, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, (list, tuple, set, dict)):
                return len(value)
        return None

    if isinstance(result, Mapping) and "created" in result:  # sync_assets_by_id's counts
        done = sum(int(result.get(k) or 0) for k in ("created", "updated", "deleted"))
        return done, int(result.get("failed") or 0)
    pushed = pick("pushed", "succeeded", "ok")
    failed = pick("failed")
    if pushed is None:
        pushed = max(0, len(batch) - (failed or 0))
    return pushed, failed or 0


def flush_source(
    store: IntakeStore,
    batch_id: str,
    sync: SyncAssetsById,
    *,
    trigger: str = "webhook",
    schedule: FlushScheduler | None = None,
) -> FlushOutcome:
    """Flush one batch of `store.source`.

    Raises the pipeline's transient error unchanged with the batch kept (retry with the
    same `batch_id` to resume it). A permanent error parks the batch's ids in the failed
    hash (the scheduled poll reconciles them) and is re-raised after that.
    """
    outcome = FlushOutcome(store.source, batch_id)
    outcome.recovered = store.recover_expired()
    batch = store.take_batch(batch_id)
    if batch is not None:
        outcome.upserts, outcome.deletes = len(batch.upserts), len(batch.deletes)
        try:
            with Heartbeat(store, batch_id):
                result = call_sync(sync, store.source, batch, trigger)
        except Exception as exc:
            if is_transient(exc):
                raise
            store.fail(batch, f"{type(exc).__name__}: {exc}")
            log.error(
                "intake flush of %s failed for good (%d assets parked): %s",
                store.source,
                len(batch),
                type(exc).__name__,
            )
            raise
        store.complete(batch_id)
        outcome.pushed, outcome.failed = _counts(result, batch)
        store.count("pushed", outcome.pushed)
        if outcome.failed:
            store.count("failed", outcome.failed)
    outcome.follow_up = follow_up(store, schedule)
    return outcome


def flush_attempt(
    store: IntakeStore,
    batch_id: str,
    sync: SyncAssetsById,
    *,
    retries: int,
    schedule: FlushScheduler | None = None,
) -> FlushOutcome:
    """`flush_source` as try number `retries` + 1 of a flush task retried on transient
    errors, up to the source's `realtime.max_retries`. The error of the last try still
    propagates, but only once the batch's ids are parked in the failed hash (the scheduled
    poll reconciles them) and the next flush is scheduled for what else is pending."""
    try:
        return flush_source(store, batch_id, sync, schedule=schedule)
    except Exception as exc:
        if is_transient(exc) and retries >= store.realtime.max_retries:
            batch = store.get_batch(batch_id)
            if batch is not None:
                store.fail(batch, f"gave up after {retries} retries: {type(exc).__name__}")
            follow_up(store, schedule)
        raise


def retry_countdown(retries: int, exc: BaseException | None) -> float:
    """Seconds before a flush task's retry number `retries` + 1 after `exc`."""
    return retry.retry_countdown(retries, exc, RETRY_BACKOFF_BASE, RETRY_BACKOFF_MAX)


def follow_up(store: IntakeStore, schedule: FlushScheduler | None) -> int:
    """Schedule the next flush for what is still pending, or for a batch whose lease runs out."""
    code = store.ensure_flush()
    if schedule is not None:
        if code == FLUSH_NOW:
            schedule(store.source, 0.0)
        elif code != NO_FLUSH:
            schedule(store.source, store.realtime.window)
        else:
            expiry = store.next_lease_expiry()
            if expiry is not None and store.redis.set(
                store.key("guardrecover", store.source),
                "1",
                nx=True,
                px=max(1, int((expiry + 0.5) * 1000)),
            ):
                schedule(store.source, expiry + 0.5)
    return code

