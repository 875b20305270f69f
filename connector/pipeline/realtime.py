"""Real-time sync of a few DAM ids inside the calling process (webhook / queue intake).

The caller is a Celery task holding ≤100 ids. Each id's *current* record is read from
the DAM (so late or reordered events converge on the latest state), transformed, and
pushed in ≤100-asset bulk requests; ids the DAM no longer has, and `deleted_ids`, get the
deletion policy. Hashes, dead letters and quarantine are recorded exactly as in a run.
When the PIM is unavailable (whole request or some lines transient) `SyncUnavailableError`
is raised after everything else was recorded: the caller's task retries, and the retry
re-pushes only what failed (the rest is `unchanged` by then).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connector.dam.base import BadRecord, DamAsset
from connector.pipeline.completion import tell_alerts
from connector.pipeline.deletions import apply_deletions
from connector.pipeline.errors import SyncUnavailableError
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import PIM_BULK_LIMIT, Context
from connector.pipeline.steps.fetch import get_current_many
from connector.pipeline.steps.push import push_assets
from connector.transform.result import Quarantined, Skipped, TransformedAsset


def sync_assets_by_id(
    source: str,
    asset_ids: Iterable[str],
    deleted_ids: Iterable[str] = (),
    trigger: str = "webhook",
    *,
    records: Mapping[str, Any] | None = None,
    force: bool = False,
    services: Services | None = None,
) -> dict[str, Any]:
    """Fetch, transform and push these DAM ids now; returns counts.

    `records` (id → raw DAM record carried by the event) are used only for sources that
    cannot read one asset back (a REST source without `get_path`); otherwise the DAM's
    current record wins, so that events arriving late or out of order converge.

    Counts: seen, skipped, quarantined, unchanged, created, updated, failed (dead-lettered),
    superseded (a newer DAM version was already written: not pushed),
    deleted, requests, plus `trigger` and `errors` (deletion problems).
    """
    s = services or get_services()
    s.source_config(source)
    owner = Context(source)
    counts: dict[str, Any] = {"trigger": trigger, "seen": 0, "skipped": 0, "quarantined": 0,
                              "unchanged": 0, "created": 0, "updated": 0, "failed": 0,
                              "superseded": 0,
                              "deleted": 0, "requests": 0, "errors": []}
    dam = s.source(source)
    transformer = s.transformer(source)
    gone = list(dict.fromkeys(deleted_ids))
    results: list[TransformedAsset | Quarantined | Skipped] = []
    use_records = bool(records) and not _can_get(s, source) and hasattr(dam, "normalise")
    wanted = [d for d in dict.fromkeys(asset_ids) if d not in gone]
    carried = {d for d in wanted if use_records and records is not None and d in records}
    # the DAM's current records, read at once (in threads where the adapter allows)
    read = get_current_many(dam, [d for d in wanted if d not in carried])
    for dam_id in wanted:
        current: DamAsset | BadRecord | None
        if dam_id in carried and records is not None:
            current = dam.normalise(records[dam_id])  # type: ignore[attr-defined]
        else:
            current = read[dam_id]
        if current is None:
            gone.append(dam_id)
            continue
        counts["seen"] += 1
        if isinstance(current, BadRecord):
            from connector.transform.transformer import Transformer

            results.append(Transformer.quarantine_bad_record(current))
        else:
            results.append(transformer.transform(current))

    quarantined = [r for r in results if isinstance(r, Quarantined)]
    transformed = [r for r in results if isinstance(r, TransformedAsset)]
    counts["skipped"] = sum(1 for r in results if isinstance(r, Skipped))
    counts["quarantined"] = len(quarantined)
    if quarantined:
        s.quarantine.add_many(source, quarantined)
    if transformed and s.quarantine.count(source):
        s.quarantine.remove_many(source, [t.dam_id for t in transformed])
    hashes = {} if force else s.assets.hashes(source, [t.dam_id for t in transformed])
    by_family: dict[str, list[TransformedAsset]] = {}
    for item in transformed:
        if hashes.get(item.dam_id) == item.content_hash:
            counts["unchanged"] += 1
        else:
            by_family.setdefault(item.family, []).append(item)

    retry_after: float | None = None
    waiting = 0
    reasons: list[str] = []
    for family, assets in by_family.items():
        for i in range(0, len(assets), PIM_BULK_LIMIT):
            chunk = assets[i : i + PIM_BULK_LIMIT]
            outcome = push_assets(s, owner, family, chunk, 1)
            counts["requests"] += int(outcome.superseded < len(chunk))  # none if all dropped
            counts["created"] += outcome.created
            counts["updated"] += outcome.updated
            counts["failed"] += outcome.failed
            counts["superseded"] += outcome.superseded
            if outcome.retry:
                waiting += len(outcome.retry)
                if outcome.retry_after is not None:
                    retry_after = max(retry_after or 0.0, outcome.retry_after)
                reasons += [r.message or str(r.status_code)
                            for r in list(outcome.retry_results.values())[:1]]

    if gone:
        deletion = apply_deletions(source, gone, services=s)
        counts["deleted"] = deletion["deleted"] + deletion["flagged"] + deletion["not_found"]
        counts["deletion_failed"] = deletion["failed"]  # dead letters of kind deletion
        counts["errors"] = deletion["errors"]
    if counts["failed"] or counts.get("deletion_failed"):
        tell_alerts(s, source)  # new dead letters, debounced (connector/alerts.py)
    if waiting:
        raise SyncUnavailableError(
            f"the PIM could not take {waiting} asset(s) of {source} now: "
            + "; ".join(reasons[:3]),
            retry_after=retry_after,
            counts={k: v for k, v in counts.items() if isinstance(v, int)},
        )
    return counts


def _can_get(s: Services, source: str) -> bool:
    config = s.source_config(source)
    return not (config.type == "rest" and config.rest is not None and not config.rest.get_path)
