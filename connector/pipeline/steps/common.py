"""What the steps share: the PIM's bulk limit, who owns a push, and dead-lettering.

Kept apart from the steps so that completion (`connector.pipeline.completion`) can
dead-letter a lost batch without importing the push step, which calls completion back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from connector.pim.errors import AssetResult
from connector.pipeline.runs import RunRecord, utcnow
from connector.pipeline.services import Services
from connector.pipeline.stores import DeadLetter, PushedState
from connector.transform.result import TransformedAsset

#: Akeneo refuses more than 100 items per bulk request (413)
PIM_BULK_LIMIT = 100
#: the completion caller identity of a run's fetch (chunks and batches: chunk:/batch:<id>)
FETCH_CALLER = "fetch"


@dataclass(frozen=True)
class Context:
    """Who a push belongs to: a run, or (run_id None) a real-time sync outside any run."""

    source: str
    run_id: str | None = None


Owner = RunRecord | Context


def push_batch_size(s: Services) -> int:
    """Assets per push batch: the configured size, within the PIM's bulk limit."""
    return min(PIM_BULK_LIMIT, max(1, s.sync.push_batch_size))


def with_code(result: AssetResult, code: str) -> AssetResult:
    """One asset's copy of a whole-request answer (a failed bulk call has no line per asset)."""
    return AssetResult(code, result.status_code, result.message, result.errors)


def gave_up_results(
    assets: Sequence[TransformedAsset], last: dict[str, AssetResult]
) -> dict[str, AssetResult]:
    """Dead-letter results for assets whose retries ran out: the last PIM answer, said so."""
    out: dict[str, AssetResult] = {}
    for a in assets:
        result = last.get(a.dam_id) or AssetResult(a.code, 503, "transient PIM failure")
        message = f"gave up after repeated transient PIM failures: {result.message or ''}"
        out[a.dam_id] = AssetResult(a.code, result.status_code, message.strip(), result.errors)
    return out


def dead_letter_many(
    s: Services,
    record: Owner,
    family: str,
    assets: Sequence[TransformedAsset],
    attempts: int,
    last_errors: dict[str, AssetResult],
) -> None:
    """Dead-letter `assets` with their last PIM answer; their hash is cleared (state
    `failed`), so the next run pushes them again instead of calling them unchanged."""
    now = utcnow().isoformat()
    before = s.assets.get_many(record.source, [a.dam_id for a in assets])
    for asset in assets:
        result = last_errors.get(asset.dam_id) or AssetResult(asset.code, 0, "unknown failure")
        previous = before.get(asset.dam_id)
        s.dead_letters.add(
            record.source,
            DeadLetter(
                dam_id=asset.dam_id,
                code=asset.code,
                family=family,
                status=result.status_code,
                message=result.message or "",
                errors=result.errors,
                attempts=attempts,
                run_id=record.run_id,
                at=now,
                values=asset.values,
            ),
        )
        s.assets.record(
            record.source,
            asset.dam_id,
            PushedState(
                code=asset.code,
                family=family,
                content_hash=None,  # never "unchanged" until a push succeeds
                status="failed",
                result=result.to_dict(),
                run_id=record.run_id,
                at=now,
                # a refused first push leaves nothing in the PIM: not a deletion candidate
                in_pim=previous is not None and previous.live,
            ),
        )
    if record.run_id is not None:
        s.runs.transition(record.run_id, [(a.dam_id, "failed") for a in assets])
