"""The transform step: one stored chunk → quarantine, skips, `unchanged`, push batches."""

from __future__ import annotations

import json
from collections.abc import Sequence

from connector.dam.base import DamAsset
from connector.pipeline.completion import after_task, open_step
from connector.pipeline.dryrun import PlanStore, plan_chunk, quarantine_effect
from connector.pipeline.resume import transform_resumable
from connector.pipeline.runs import RunRecord
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import push_batch_size
from connector.transform.result import Quarantined, Skipped, TransformedAsset


def transform(run_id: str, chunk_id: str, *, services: Services | None = None) -> None:
    """Transform one chunk: quarantine, skip, `unchanged` (same content hash as the last
    successful push, unless the run forces), and the rest into the family buffers."""
    s = services or get_services()
    caller = f"chunk:{chunk_id}"
    record = open_step(s, run_id, caller, lambda: s.runs.chunk_done(run_id, chunk_id),
                       lambda: s.runs.finish_chunk(run_id, chunk_id))
    if record is None:
        return
    body = s.runs.load_chunk(run_id, chunk_id)
    if body is None:
        s.runs.add_error(run_id, f"chunk {chunk_id} expired before it was transformed", fatal=True)
    else:
        assets = [DamAsset.from_dict(d) for d in json.loads(body)["assets"]]
        transformer = s.transformer(record.source)
        halted: Exception | None = None
        if record.dry_run:
            results = plan_chunk(s, record, transformer, assets)
        else:
            # skips what an earlier attempt staged; a DAM failure is the asset's dead letter
            results, halted = transform_resumable(s, record, transformer, assets)
        batch_ids = _stage(s, record, chunk_id, results)
        for batch_id in batch_ids:
            s.enqueuer.push(run_id, batch_id)
        if halted is not None:
            raise halted  # the DAM looks down: the task is retried, this progress is kept
    s.runs.finish_chunk(run_id, chunk_id)
    s.runs.renew(record.source, run_id, s.sync.run_lock_ttl)
    after_task(s, run_id, caller)


def _stage(
    s: Services,
    record: RunRecord,
    chunk_id: str,
    results: Sequence[TransformedAsset | Quarantined | Skipped],
) -> list[str]:
    source = record.source
    pairs: list[tuple[str, str]] = []
    quarantined: list[Quarantined] = []
    transformed: list[TransformedAsset] = []
    for result in results:
        if isinstance(result, TransformedAsset):
            transformed.append(result)
        elif isinstance(result, Quarantined):
            quarantined.append(result)
            pairs.append((result.dam_id or f"{chunk_id}:noid:{len(quarantined)}", "quarantined"))
        else:
            pairs.append((result.dam_id, "skipped"))
    if quarantined and record.dry_run:  # reported with the run, the store is left alone
        PlanStore(s.redis, s.keys).record(record.run_id, map(quarantine_effect, quarantined))
    elif quarantined:
        s.quarantine.add_many(source, quarantined, run_id=record.run_id)
    if transformed and not record.dry_run and s.quarantine.count(source):
        s.quarantine.remove_many(source, [t.dam_id for t in transformed])
    hashes = {} if record.force else s.assets.hashes(source, [t.dam_id for t in transformed])
    items: list[tuple[str, str, str]] = []
    for asset in transformed:
        if hashes.get(asset.dam_id) == asset.content_hash:
            pairs.append((asset.dam_id, "unchanged"))
        else:
            items.append((asset.dam_id, asset.family, json.dumps(asset.to_dict())))
    s.runs.transition(record.run_id, pairs)
    return s.runs.enqueue_pending(
        record.run_id, chunk_id, items, push_batch_size(s)
    )
