"""What a run reports: its counts (live, or final once it ended) and the report's shape.

One place builds both: the final report the finisher stores with the run, and the live
counts `run_report` shows while it runs. Their JSON is pinned by tests and read by people
and scripts: keep the field names and their order.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from connector.pipeline.dryrun import PlanStore

if TYPE_CHECKING:  # the store and the record import this module
    from connector.pipeline.runs.record import RunRecord, RunState
    from connector.pipeline.runs.store import RunStore, SyncRedis
    from connector.redis_conn import Keys

# Counter names of a run report (one per final asset state, plus request statistics).
COUNT_NAMES = (
    "seen",
    "skipped",
    "quarantined",
    "unchanged",
    "pending",
    "created",
    "updated",
    "failed",
    "superseded",
    "deleted",
    "deletion_ignored",
    "deletion_failed",
    "requests",
    "sent",
)


class RunCounts(TypedDict, total=False):
    """A run's counts: per-asset final states, requests, progress, errors, dry-run plan.

    `pending` only while the run is live; `duration` only in the final report; the
    `would_*` fields and `planned` only for dry runs.
    """

    seen: int
    skipped: int
    quarantined: int
    unchanged: int
    pending: int
    created: int
    updated: int
    failed: int
    superseded: int
    deleted: int
    deletion_ignored: int
    deletion_failed: int
    requests: int
    sent: int
    dead_lettered: int
    mean_assets_per_request: float
    duration: float
    errors: list[str]
    chunks_total: int
    chunks_done: int
    batches_total: int
    batches_done: int
    dry_run: bool
    would_create: int
    would_update: int
    would_create_options: int
    would_upload: int
    would_delete: int
    would_quarantine: int
    planned: list[dict[str, Any]]


class RunReport(TypedDict):
    """`run_report` / `list_runs`: the run record in JSON form, and its counts."""

    run_id: str
    source: str
    trigger: str
    state: RunState
    started_at: str | None
    finished_at: str | None
    duration: float | None
    full: bool
    since: str | None
    dry_run: bool
    force: bool
    asset_ids: bool
    error: str | None
    watermark_before: str | None
    watermark_after: str | None
    config_path: str | None
    config_hash: str | None
    counts: NotRequired[RunCounts]


def _mean(counts: RunCounts) -> float:
    requests = counts.get("requests", 0)
    return round(counts.get("sent", 0) / requests, 2) if requests else 0.0


def dry_run_summary(
    redis_client: SyncRedis, keys: Keys, run_id: str, counts: Mapping[str, Any]
) -> RunCounts:
    """The report fields of a dry run: what it would do, in the words of a person."""
    plans = PlanStore(redis_client, keys)
    out = RunCounts(
        dry_run=True,
        would_create=int(counts.get("created") or 0),
        would_update=int(counts.get("updated") or 0),
    )
    out.update(cast(RunCounts, plans.counts(run_id)))
    out["planned"] = plans.sample(run_id)
    return out


def final_report(runs: RunStore, record: RunRecord, finished: datetime) -> RunCounts:
    """The report the finisher stores with the run (no `pending`, with `duration`)."""
    run_id = record.run_id
    counts = runs.counts(run_id)
    report = cast(RunCounts, dict(counts))
    report.pop("pending", None)
    report["dead_lettered"] = counts.get("failed", 0)
    report["mean_assets_per_request"] = _mean(counts)
    report["duration"] = round((finished - record.started_at).total_seconds(), 3)
    report["errors"] = runs.errors(run_id)[-10:]
    report.update(cast(RunCounts, runs.progress(run_id)))
    if record.dry_run:  # what it would have done (nothing was written)
        report.update(dry_run_summary(runs.redis, runs.keys, run_id, counts))
    return report


def live_counts(runs: RunStore, record: RunRecord) -> RunCounts:
    """The counts of a run that has no final report yet (it is still running)."""
    run_id = record.run_id
    counts = runs.counts(run_id)
    counts["dead_lettered"] = counts.get("failed", 0)
    counts["mean_assets_per_request"] = _mean(counts)
    counts.update(cast(RunCounts, runs.progress(run_id)))
    counts["errors"] = runs.errors(run_id)[-10:]
    if record.dry_run:
        counts.update(dry_run_summary(runs.redis, runs.keys, run_id, counts))
    return counts


#: run report count → `outcome` label of connector_assets_total
ASSET_OUTCOMES = {
    "created": "created",
    "updated": "updated",
    "unchanged": "unchanged",
    "quarantined": "quarantined",
    "dead_lettered": "dead_lettered",
    "superseded": "superseded",
    "deleted": "deleted",
}
#: upper bounds (seconds) of the run duration histogram's buckets
DURATION_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)


def run_metrics(
    keys: Keys, record: RunRecord, state: str, report: RunCounts
) -> list[tuple[tuple[str, str], float]]:
    """What a finished run adds to the fleet-wide metrics hash (connector.metrics): its
    final state, its duration, and (real runs only) its assets by outcome, taken from the
    very report stored with it, so the two always agree."""
    from connector.metrics.recorder import field, metrics_key

    key, source = metrics_key(keys), record.source
    duration = float(report.get("duration") or 0.0)
    bound = next((repr(b) for b in DURATION_BUCKETS if duration <= b), "+Inf")
    out = [
        ((key, field("runs_finished", source, state)), 1.0),
        ((key, field("run_duration_bucket", source, bound)), 1.0),
        ((key, field("run_duration_count", source)), 1.0),
        ((key, field("run_duration_sum", source)), duration),
    ]
    if not record.dry_run:
        counts = cast(Mapping[str, Any], report)
        for name, outcome in ASSET_OUTCOMES.items():
            value = int(counts.get(name) or 0)
            if value:
                out.append(((key, field("assets", source, outcome)), float(value)))
    return out
