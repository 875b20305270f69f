"""The end of every task of a run: queue the remainder batches, or close the run (once).

`open_step` is the common start of the transform and push steps (a redelivered message
only re-checks completion); `after_task` runs after every task; `gave_up` makes a run end
even when one of its tasks failed for good. See `connector.pipeline.runs` for why the
completion check is duplicate-safe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from connector.pim.errors import AssetResult
from connector.pipeline.fleet import config_mismatch
from connector.pipeline.linking import retry_after_run
from connector.pipeline.runs import TERMINAL_STATES, RunRecord
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import (
    FETCH_CALLER,
    dead_letter_many,
    push_batch_size,
    with_code,
)
from connector.transform.result import TransformedAsset

log = logging.getLogger(__name__)


def open_step(
    s: Services,
    run_id: str,
    caller: str,
    already_done: Callable[[], bool],
    mark_done: Callable[[], None],
) -> RunRecord | None:
    """The run when this step still has work to do; None for a finished run, for a step
    already done (a redelivered message: completion is checked again, nothing redone), or
    for a run started with another config (refused: see `refused`)."""
    record = s.runs.get(run_id)
    if record.state in TERMINAL_STATES:
        return None
    if already_done():
        after_task(s, run_id, caller)
        return None
    if refused(s, record, caller, mark_done):
        return None
    s.runs.mark_running(run_id)
    return record


def refused(s: Services, record: RunRecord, caller: str, mark_done: Callable[[], None]) -> bool:
    """Refuse a task of a run started with another config (`connector.pipeline.fleet`):
    the run fails with the reason, the step is marked done without doing anything (no
    dead letter: the assets did nothing wrong) and the run still ends."""
    message = config_mismatch(s, record)
    if message is None:
        return False
    log.error("%s", message)
    s.runs.add_error(record.run_id, message, fatal=True)
    mark_done()
    after_task(s, record.run_id, caller)
    return True


def after_task(s: Services, run_id: str, caller: str) -> None:
    """Run after every task: queue the remainder batches, or close the run (once)."""
    verdict, batch_ids = s.runs.check_completion(
        run_id, caller, push_batch_size(s)
    )
    if verdict == "push":
        for batch_id in batch_ids:
            s.enqueuer.push(run_id, batch_id)
    elif verdict == "finish":
        finish_run(s, run_id)


def finish_run(s: Services, run_id: str) -> None:
    """The run's end, by the one caller the completion check named its finisher (or the
    watchdog, when that finisher died): pending links, final state, watermark, lock."""
    record = s.runs.get(run_id)
    if record.state in TERMINAL_STATES:
        return
    if config_mismatch(s, record) is None:  # a refusing worker writes nothing
        retry_after_run(s, record)  # the source's pending product links, once per run
    advance = s.redis.hget(s.runs.prefix(run_id), "advance") == b"1"
    finished = s.runs.finalize(
        run_id, overlap=s.sync.watermark_overlap, advance_watermark=advance
    )
    log.info(
        "run %s (%s) %s: %s", run_id, record.source, finished.state,
        json.dumps(finished.report, sort_keys=True),
    )
    tell_alerts(s, record.source, run_id, finished.state, finished.error)


def tell_alerts(s: Services, source: str, run_id: str | None = None, state: str | None = None,
                error: str | None = None) -> None:
    """A failed run, and the dead letters counted since the last message (debounced):
    connector/alerts.py. Called where work ends (a run's finish, a real-time sync). Never
    raises: an alert endpoint never fails a run."""
    if not s.config.alerts.webhooks:
        return
    try:
        if state == "failed" and run_id is not None:
            s.alerts.run_failed(source, run_id, error)
        s.alerts.flush_dead_letters(source, total=s.dead_letters.count(source))
    except Exception:
        log.exception("alerts: could not report run %s", run_id)


def gave_up(kind: str, run_id: str, item_id: str, error: str, *,
            services: Services | None = None, reason: str | None = None) -> None:
    """A task failed for good (retries exhausted, or an unexpected error): make the run
    still end. kind = fetch | chunk | batch. A lost chunk fails the run (its assets were
    not synced, so the watermark must not move); a lost batch dead-letters its assets.
    `reason` replaces the run error written ("fetch failed: <error>" by default)."""
    s = services or get_services()
    try:
        record = s.runs.get(run_id)
    except Exception:  # the run itself is gone: nothing to repair
        return
    if record.state in TERMINAL_STATES:
        return
    if kind == "fetch":
        s.runs.add_error(run_id, reason or f"fetch failed: {error}", fatal=True)
        s.runs.set_fetch_done(run_id)
        after_task(s, run_id, FETCH_CALLER)
    elif kind == "chunk":
        s.runs.add_error(run_id, reason or f"chunk {item_id} failed: {error}", fatal=True)
        s.runs.finish_chunk(run_id, item_id)
        after_task(s, run_id, f"chunk:{item_id}")
    elif kind == "batch":
        batch = s.runs.load_batch(run_id, item_id)
        if batch is not None:
            assets = [TransformedAsset.from_dict(d) for d in batch["items"]]
            failure = AssetResult("", 0, f"push task failed: {error}")
            dead_letter_many(
                s, record, batch["family"], assets, s.sync.max_retries,
                {a.dam_id: with_code(failure, a.code) for a in assets},
            )
        s.runs.add_error(run_id, reason or f"batch {item_id} failed: {error}", fatal=False)
        s.runs.finish_batch(run_id, item_id)
        after_task(s, run_id, f"batch:{item_id}")
