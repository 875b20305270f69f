"""Read-side and operator actions for the CLI: reports, runs, dead letters (explain:
`connector.pipeline.explain`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from connector.pipeline.errors import SyncUnavailableError, UnknownRunError
from connector.pipeline.realtime import sync_assets_by_id
from connector.pipeline.runs import TERMINAL_STATES, RunRecord, RunReport, RunState
from connector.pipeline.runs.report import live_counts
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import PIM_BULK_LIMIT
from connector.pipeline.steps.start import start_run


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _record_dict(s: Services, record: RunRecord) -> RunReport:
    state = record.state
    if state not in TERMINAL_STATES and s.runs.holder(record.source) != record.run_id:
        state = RunState.ABANDONED  # its lock expired without a finisher (all workers died)
    return {
        "run_id": record.run_id,
        "source": record.source,
        "trigger": record.trigger,
        "state": state,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "duration": record.duration,
        "full": record.full,
        "since": _iso(record.since),
        "dry_run": record.dry_run,
        "force": record.force,
        "asset_ids": record.has_asset_ids,
        "error": record.error,
        "watermark_before": _iso(record.watermark_before),
        "watermark_after": _iso(record.watermark_after),
        "config_path": record.config_path,
        "config_hash": record.config_hash,
    }


def run_report(run_id: str, *, services: Services | None = None) -> RunReport:
    """State, counts and progress of one run (live while it runs, final report after)."""
    s = services or get_services()
    record = s.runs.get(run_id)
    out = _record_dict(s, record)
    if out["state"] == RunState.ABANDONED:
        # the finisher writes the final state before it releases the lock: a run that ended
        # between the two reads above is not abandoned, so read it once more
        record = s.runs.get(run_id)
        out = _record_dict(s, record)
    if record.report:
        out["counts"] = record.report
    else:
        out["counts"] = live_counts(s.runs, record)
    return out


def list_runs(
    source: str, limit: int = 20, *, services: Services | None = None
) -> list[RunReport]:
    """Newest first: when, duration, counts, state, error."""
    s = services or get_services()
    out = []
    for run_id in s.runs.run_ids(source, limit):
        try:
            out.append(run_report(run_id, services=s))
        except UnknownRunError:
            continue
    return out


def watermark(source: str, *, services: Services | None = None) -> datetime | None:
    s = services or get_services()
    return s.runs.watermark(source)


def set_watermark(
    source: str, moment: datetime | None, *, services: Services | None = None
) -> None:
    """Move (or with None, erase: next run is a full one) a source's watermark by hand."""
    s = services or get_services()
    s.source_config(source)
    if moment is None:
        s.redis.delete(s.runs.watermark_key(source))
    else:
        s.runs.set_watermark(source, moment)


def lock_holder(source: str, *, services: Services | None = None) -> str | None:
    """The run id holding the source's lock, or None."""
    s = services or get_services()
    return s.runs.holder(source)


def source_status(source: str, *, services: Services | None = None) -> dict[str, Any]:
    s = services or get_services()
    s.source_config(source)
    runs = list_runs(source, 1, services=s)
    return {
        "source": source,
        "watermark": _iso(s.runs.watermark(source)),
        "lock_holder": s.runs.holder(source),
        "last_run": runs[0] if runs else None,
        "dead_letters": s.dead_letters.count(source),
        "quarantined": s.quarantine.count(source),
    }


def dead_letters(
    source: str, limit: int = 100, *, services: Services | None = None
) -> list[dict[str, Any]]:
    s = services or get_services()
    return [vars(letter) for letter in s.dead_letters.list(source, limit)]


def retry_dead_letters(
    source: str,
    dam_ids: Iterable[str] | None = None,
    *,
    inline: bool = False,
    services: Services | None = None,
) -> dict[str, Any]:
    """Re-fetch dead-lettered assets from the DAM and push them again (all, or `dam_ids`).

    Default: a run for those ids (returns its StartResult; busy if the source is). With
    inline=True the push happens here, ≤100 at a time, and the counts come back; a PIM
    still unavailable is reported in `errors` (the entries stay dead-lettered).
    """
    s = services or get_services()
    ids: Iterable[str] = dam_ids if dam_ids is not None else s.dead_letters.ids(source)
    if not inline:
        return start_run(source, "retry", asset_ids=ids, force=True, services=s).to_dict()
    totals: dict[str, Any] = {"retried": 0, "created": 0, "updated": 0, "failed": 0,
                              "deleted": 0, "deletion_failed": 0, "quarantined": 0,
                              "errors": []}
    page: list[str] = []

    def flush() -> None:
        totals["retried"] += len(page)
        try:
            counts = sync_assets_by_id(source, page, trigger="retry", force=True, services=s)
        except SyncUnavailableError as exc:
            counts = exc.counts
            totals["errors"].append(str(exc))
        for name in ("created", "updated", "failed", "deleted", "deletion_failed",
                     "quarantined"):
            totals[name] += int(counts.get(name, 0))

    for dam_id in list(ids):
        page.append(dam_id)
        if len(page) >= PIM_BULK_LIMIT:
            flush()
            page = []
    if page:
        flush()
    return totals


def quarantine(
    source: str, limit: int = 100, *, services: Services | None = None
) -> list[dict[str, Any]]:
    s = services or get_services()
    found: list[dict[str, Any]] = s.quarantine.list(source, limit=limit)
    return found


def dry_run_differences(
    run_id: str, *, services: Services | None = None
) -> list[dict[str, Any]]:
    """Per asset, what a dry run would have done (create / value-level updates)."""
    s = services or get_services()
    raw = s.redis.hgetall(s.runs.key(run_id, "diff"))
    return [dict(json.loads(v), dam_id=k.decode()) for k, v in sorted(raw.items())]
