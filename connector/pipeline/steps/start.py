"""Start a run: the source's lock, the run record, and the queued (or inline) fetch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from connector.pipeline.completion import after_task
from connector.pipeline.errors import busy_with
from connector.pipeline.runs import StartResult
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import FETCH_CALLER
from connector.pipeline.steps.fetch import fetch

log = logging.getLogger(__name__)


def start_run(
    source: str,
    trigger: str = "manual",
    full: bool = False,
    since: datetime | None = None,
    asset_ids: Iterable[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    *,
    services: Services | None = None,
    enqueue: bool = True,
    lock_token: str | None = None,
) -> StartResult:
    """Take the source's lock, create the run record and (by default) queue its fetch.

    Busy source → `StartResult(busy=True, holder=<run id>)`; nothing is created. The
    watermark only advances after runs that covered everything since the old watermark:
    not after dry runs, runs for explicit asset ids, or runs `since` a later moment.
    `lock_token`: the caller holds the source's lock under it (a reconcile re-queuing what
    it found missing), and the run takes the lock over instead of competing for it.
    """
    s = services or get_services()
    s.source_config(source)  # unknown source → clear error before anything is written
    run_id = s.runs.new_run_id()
    if lock_token is None:
        holder = s.runs.acquire(source, run_id, s.sync.run_lock_ttl)
    else:
        holder = s.runs.hand_over(source, lock_token, run_id, s.sync.run_lock_ttl)
    if holder is not None:
        return StartResult(
            None, busy=True, holder=holder,
            message=f"source {source} is busy with {busy_with(holder)}",
        )
    watermark = s.runs.watermark(source)
    effective_since = None if full else (since or watermark)
    advance = (
        asset_ids is None
        and not dry_run
        and (since is None or (watermark is not None and since <= watermark))
    )
    s.runs.create(
        run_id,
        source,
        trigger,
        full=full,
        since=effective_since,
        asset_ids=asset_ids,
        force=force,
        dry_run=dry_run,
        watermark=watermark,
        config_hash=s.config_hash,
        config_path=s.config.path,
    )
    s.runs.set_fields(run_id, advance="1" if advance else "0")
    if enqueue:
        try:
            s.enqueuer.fetch(source, run_id)
        except Exception as exc:
            s.runs.add_error(run_id, f"could not queue the fetch: {exc}", fatal=True)
            s.runs.set_fetch_done(run_id)
            after_task(s, run_id, FETCH_CALLER)
            raise
    return StartResult(run_id, message=f"run {run_id} started for source {source}")


def start_and_fetch(
    source: str,
    trigger: str = "schedule",
    *,
    services: Services | None = None,
    on_started: Callable[[str], None] | None = None,
    **kw: Any,
) -> StartResult:
    """Scheduled entry point: start a run and do its fetch in this task (no extra hop).

    A second beat (or a manual sync) finds the source locked and gets `busy`: this is
    what keeps a standby/duplicate beat from running a source twice. `on_started(run_id)`
    is called before the fetch, so that the task can retry (or close) that run if the
    fetch fails, instead of starting another.
    """
    s = services or get_services()
    result = start_run(source, trigger, services=s, enqueue=False, **kw)
    if result.started and result.run_id is not None:
        if on_started is not None:
            on_started(result.run_id)
        fetch(result.run_id, services=s)
    else:
        log.info("%s", result.message)
    return result
