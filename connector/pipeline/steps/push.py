"""The push step: one batch, one bulk request; hashes, dead letters, retries, links."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from connector.pim.errors import AssetResult, PermanentPimError, PimError, TransientPimError
from connector.pipeline.completion import after_task, open_step
from connector.pipeline.dryrun import dry_run_batch
from connector.pipeline.linking import link_assets
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import (
    PIM_BULK_LIMIT,
    Owner,
    dead_letter_many,
    gave_up_results,
    with_code,
)
from connector.pipeline.stores import PushedState, VersionGate, dam_version
from connector.retry import backoff_delay
from connector.transform.result import TransformedAsset

log = logging.getLogger(__name__)


# A 422 whose text names an attribute or option the PIM does not know: our cached
# structure is stale (someone changed the family), so the next transform must re-read it.
_UNKNOWN_STRUCTURE = re.compile(
    r"(attribute|option)[^.]*?(does not exist|doesn't exist|not exist|unknown|not found)"
    r"|(unknown|non[- ]existent) (attribute|option)",
    re.IGNORECASE,
)


def names_unknown_structure(result: AssetResult | PimError) -> bool:
    texts = [result.message or ""]
    texts += [str(e.get("message") or "") for e in result.errors]
    return any(_UNKNOWN_STRUCTURE.search(t) for t in texts)


def push(run_id: str, batch_id: str, *, services: Services | None = None) -> None:
    """Upsert one batch (≤100 assets, one request). Per asset: created/updated → remember
    the hash; permanent failure → dead letter; transient → the batch is rewritten to the
    failed assets and pushed again after a backoff, up to SyncConfig.max_retries."""
    s = services or get_services()
    caller = f"batch:{batch_id}"
    record = open_step(s, run_id, caller, lambda: s.runs.batch_done(run_id, batch_id),
                       lambda: s.runs.finish_batch(run_id, batch_id))
    if record is None:
        return
    batch = s.runs.load_batch(run_id, batch_id)
    if batch is None and s.runs.batch_done(run_id, batch_id):
        # another delivery of this message finished the batch while we looked: a replay
        after_task(s, run_id, caller)
        return
    if batch is None:
        s.runs.add_error(run_id, f"batch {batch_id} expired before it was pushed", fatal=True)
    else:
        family = batch["family"]
        assets = [TransformedAsset.from_dict(d) for d in batch["items"]]
        attempt = s.runs.next_attempt(run_id, batch_id)
        if record.dry_run:
            dry_run_batch(s, record, family, assets)
        else:
            outcome = push_assets(s, record, family, assets, attempt)
            retry = outcome.retry
            if retry:
                if attempt < s.sync.max_retries:
                    batch["items"] = [a.to_dict() for a in retry]
                    s.runs.rewrite_batch(run_id, batch_id, batch)
                    delay = backoff_delay(
                        attempt, s.sync.backoff_base, s.sync.backoff_max, outcome.retry_after
                    )
                    s.runs.renew(record.source, run_id, s.sync.run_lock_ttl)
                    s.enqueuer.push(run_id, batch_id, delay)
                    return
                dead_letter_many(
                    s, record, family, retry, attempt,
                    gave_up_results(retry, outcome.retry_results),
                )
    s.runs.finish_batch(run_id, batch_id)
    s.runs.renew(record.source, run_id, s.sync.run_lock_ttl)
    after_task(s, run_id, caller)


@dataclass
class PushOutcome:
    """What one bulk request did, asset by asset."""

    created: int = 0
    updated: int = 0
    failed: int = 0
    retry: list[TransformedAsset] = field(default_factory=list)
    retry_after: float | None = None
    retry_results: dict[str, AssetResult] = field(default_factory=dict)
    superseded: int = 0  # dropped: a newer DAM version was already written or claimed


def push_assets(
    s: Services,
    owner: Owner,
    family: str,
    assets: Sequence[TransformedAsset],
    attempt: int,
) -> PushOutcome:
    """One bulk request; records every outcome (hashes, dead letters, run states); the
    transient failures come back in `retry`. Assets whose newer DAM version was already
    written or claimed are dropped first (`superseded`: a late push never goes back in time)."""
    run_id, source = owner.run_id, owner.source
    outcome = PushOutcome()
    allowed = VersionGate(s.redis, s.keys).claim(assets)
    if not all(allowed):
        stale = [a for a, ok in zip(assets, allowed, strict=True) if not ok]
        outcome.superseded = len(stale)
        log.info("%s: %d asset(s) not pushed, a newer DAM version was already written: %s",
                 source, len(stale), ", ".join(a.dam_id for a in stale[:5]))
        if run_id is not None:
            s.runs.transition(run_id, [(a.dam_id, "superseded") for a in stale])
        assets = [a for a, ok in zip(assets, allowed, strict=True) if ok]
        if not assets:
            return outcome
    if run_id is not None:
        s.runs.count(run_id, "requests", max(1, math.ceil(len(assets) / PIM_BULK_LIMIT)))
        s.runs.count(run_id, "sent", len(assets))
    try:
        results = s.client.upsert_assets(family, [a.payload() for a in assets])
    except TransientPimError as exc:
        whole = AssetResult("", exc.status or 503, exc.message)
        outcome.retry = list(assets)
        outcome.retry_after = exc.retry_after
        outcome.retry_results = {a.dam_id: with_code(whole, a.code) for a in assets}
        return outcome
    except PermanentPimError as exc:
        if exc.status == 404 or names_unknown_structure(exc):
            s.cache.invalidate(family)
        failure = AssetResult("", exc.status or 0, exc.message, exc.errors)
        dead_letter_many(
            s, owner, family, assets, attempt,
            {a.dam_id: with_code(failure, a.code) for a in assets},
        )
        outcome.failed = len(assets)
        return outcome
    by_code = {r.code: r for r in results}
    ok_states: list[tuple[str, PushedState]] = []
    transitions: list[tuple[str, str]] = []
    failed: dict[str, AssetResult] = {}
    invalidate = False
    for asset in assets:
        result = by_code.get(asset.code) or AssetResult(
            asset.code, 502, "the PIM response has no line for this asset"
        )
        if result.ok:
            status = "created" if result.created else "updated"
            if result.created:
                outcome.created += 1
            else:
                outcome.updated += 1
            transitions.append((asset.dam_id, status))
            ok_states.append(
                (
                    asset.dam_id,
                    PushedState(
                        code=asset.code,
                        family=family,
                        content_hash=asset.content_hash,
                        status=status,
                        result=result.to_dict(),
                        run_id=run_id,
                    ),
                )
            )
        elif result.transient:
            outcome.retry.append(asset)
            outcome.retry_results[asset.dam_id] = result
            if result.retry_after is not None:
                outcome.retry_after = max(outcome.retry_after or 0.0, result.retry_after)
        else:
            failed[asset.dam_id] = result
            invalidate = invalidate or names_unknown_structure(result)
    if ok_states:
        ok_ids = {dam_id for dam_id, _ in ok_states}
        # compared against the version gate: a newer push that got in meanwhile keeps its
        # hash (and its dead letter, should it have been refused)
        recorded = s.assets.record_many(
            source, ok_states, {a.dam_id: dam_version(a.updated) for a in assets})
        s.dead_letters.remove(source, [d for d in ok_ids if d in recorded])
        if run_id is not None:
            s.runs.transition(run_id, transitions)
        link_assets(s, owner, family, [a for a in assets if a.dam_id in ok_ids])
    if failed:
        if invalidate:
            s.cache.invalidate(family)
        outcome.failed = len(failed)
        dead_letter_many(
            s, owner, family, [a for a in assets if a.dam_id in failed], attempt, failed
        )
    return outcome
