"""The three steps of a run — fetch, transform, push — and the run's start and end.

Each function is the whole body of one Celery task (tasks/pipeline.py) and is safe to run
twice: see `connector.pipeline.runs` for the duplicate-safe bookkeeping.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connector.config.model import Config, SourceConfig
from connector.dam.base import BadRecord, DamAsset, DamError
from connector.pim.errors import AssetResult, PermanentPimError, PimError, TransientPimError
from connector.pipeline.linking import link_assets, retry_after_run
from connector.pipeline.plan import PlanStore
from connector.pipeline.resume import transform_resumable
from connector.pipeline.runs import TERMINAL_STATES, RunRecord, StartResult, utcnow
from connector.pipeline.services import Services, get_services
from connector.pipeline.stores import DeadLetter, PushedState, VersionGate
from connector.transform.codes import asset_code
from connector.transform.result import Quarantined, Skipped, TransformedAsset
from connector.transform.selectors import SelectorError, asset_view, matches

log = logging.getLogger(__name__)

PIM_BULK_LIMIT = 100
FETCH_CALLER = "fetch"


@dataclass(frozen=True)
class Context:
    """Who a push belongs to: a run, or (run_id None) a real-time sync outside any run."""

    source: str
    run_id: str | None = None


Owner = RunRecord | Context

# A 422 whose text names an attribute or option the PIM does not know: our cached
# structure is stale (someone changed the family), so the next transform must re-read it.
_UNKNOWN_STRUCTURE = re.compile(
    r"(attribute|option)[^.]*?(does not exist|doesn't exist|not exist|unknown|not found)"
    r"|(unknown|non[- ]existent) (attribute|option)",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------- start


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
) -> StartResult:
    """Take the source's lock, create the run record and (by default) queue its fetch.

    Busy source → `StartResult(busy=True, holder=<run id>)`; nothing is created. The
    watermark only advances after runs that covered everything since the old watermark:
    not after dry runs, runs for explicit asset ids, or runs `since` a later moment.
    """
    s = services or get_services()
    s.source_config(source)  # unknown source → clear error before anything is written
    run_id = s.runs.new_run_id()
    holder = s.runs.acquire(source, run_id, s.sync.run_lock_ttl)
    if holder is not None:
        return StartResult(
            None, busy=True, holder=holder, message=f"source {source} is busy with run {holder}"
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
    )
    s.runs.set_fields(run_id, advance="1" if advance else "0")
    if enqueue:
        try:
            s.enqueuer.fetch(source, run_id)
        except Exception as exc:
            s.runs.add_error(run_id, f"could not queue the fetch: {exc}", fatal=True)
            s.runs.set_fetch_done(run_id)
            _after_task(s, run_id, FETCH_CALLER)
            raise
    return StartResult(run_id, message=f"run {run_id} started for source {source}")


def start_and_fetch(
    source: str, trigger: str = "schedule", *, services: Services | None = None, **kw: Any
) -> StartResult:
    """Scheduled entry point: start a run and do its fetch in this task (no extra hop).

    A second beat (or a manual sync) finds the source locked and gets `busy`: this is
    what keeps a standby/duplicate beat from running a source twice.
    """
    s = services or get_services()
    result = start_run(source, trigger, services=s, enqueue=False, **kw)
    if result.started and result.run_id is not None:
        fetch(result.run_id, services=s)
    else:
        log.info("%s", result.message)
    return result


# ---------------------------------------------------------------------- classification


def product_family_of(config: Config, source: SourceConfig, asset: DamAsset) -> str | None:
    """The family a DAM asset goes to, or None when it is not a product asset.

    Same rules as the Transformer's selection (global rule, first matching family, the
    family's own product rule), without building any values: for routing and reconcile.
    """
    try:
        view = asset_view(asset)
        if not matches(config.product_asset, view):
            return None
        for family in config.families_of(source):
            if matches(family.match, view):
                return family.name if matches(family.product_asset, view) else None
    except SelectorError:
        return None
    return None


def media_families(s: Services, source: SourceConfig) -> frozenset[str]:
    """Families of `source` with a mapped media_file attribute (their transforms download
    and upload binaries, so they go to the `media` queue). Empty when the PIM structure is
    not readable right now: routing is an optimisation, never a reason to fail."""
    found: set[str] = set()
    for family in s.config.families_of(source):
        try:
            structure = s.cache.family(family.name)
        except Exception:  # routing must not fail the fetch
            continue
        for mapping in family.mapping:
            attribute = structure.attribute(mapping.attribute)
            if attribute is not None and attribute.type == "media_file":
                found.add(family.name)
    return frozenset(found)


# ---------------------------------------------------------------------- fetch


def get_current(dam: Any, dam_id: str) -> DamAsset | BadRecord | None:
    """The DAM's current record of one id: an asset, a BadRecord (the adapter could not
    normalise it: quarantine, do not fail the run), or None when it no longer exists."""
    try:
        found: DamAsset | None = dam.get(dam_id)
        return found
    except DamError as exc:
        bad = getattr(exc, "bad", None)
        if isinstance(bad, BadRecord):
            return bad
        raise


class _ChunkWriter:
    """Buffers normalised assets and stores them as chunks of ≤ chunk_size (memory stays
    bounded by one chunk per route, whatever the DAM's size)."""

    def __init__(self, s: Services, record: RunRecord, media: frozenset[str]) -> None:
        self.s = s
        self.record = record
        self.source_config = s.source_config(record.source)
        self.media = media
        self.size = max(1, s.sync.chunk_size)
        self.buffers: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        self.sequence = 0
        self.bad_sequence = 0

    def add(self, asset: DamAsset) -> None:
        is_media = bool(self.media) and (
            product_family_of(self.s.config, self.source_config, asset) in self.media
        )
        buffer = self.buffers[is_media]
        buffer.append(asset.to_dict())
        if len(buffer) >= self.size:
            self._emit(is_media)

    def add_bad(self, bad: Iterable[BadRecord]) -> None:
        from connector.transform.transformer import Transformer

        entries: list[Quarantined] = []
        pairs: list[tuple[str, str]] = []
        for record in bad:
            entries.append(Transformer.quarantine_bad_record(record))
            member = record.record_id or f"bad:{self.bad_sequence}"
            self.bad_sequence += 1
            pairs += [(member, "seen"), (member, "quarantined")]
        if entries and self.record.dry_run:  # a dry run reports, the store is left alone
            PlanStore(self.s.redis, self.s.keys).record(
                self.record.run_id, map(_quarantine_effect, entries)
            )
            self.s.runs.transition(self.record.run_id, pairs)
        elif entries:
            self.s.quarantine.add_many(self.record.source, entries, run_id=self.record.run_id)
            self.s.runs.transition(self.record.run_id, pairs)

    def flush(self) -> None:
        for is_media in (False, True):
            if self.buffers[is_media]:
                self._emit(is_media)

    def _emit(self, is_media: bool) -> None:
        assets = self.buffers[is_media]
        self.buffers[is_media] = []
        chunk_id = f"c{self.sequence}"
        self.sequence += 1
        run_id = self.record.run_id
        runs = self.s.runs
        if runs.chunk_done(run_id, chunk_id):  # a replayed fetch: this chunk is behind us
            return
        runs.store_chunk(run_id, chunk_id, json.dumps({"assets": assets, "media": is_media}))
        runs.transition(run_id, [(a["id"], "seen") for a in assets])
        runs.renew(self.record.source, run_id, self.s.sync.run_lock_ttl)
        self.s.enqueuer.transform(run_id, chunk_id, is_media)


def fetch(run_id: str, *, services: Services | None = None) -> RunRecord:
    """Stream the DAM's changes page by page into chunks and queue one transform each.

    A DAM failure (down, auth) ends the run as failed with the reason: the watermark stays
    where it was and the lock is released once the chunks already queued are done.
    """
    s = services or get_services()
    record = s.runs.get(run_id)
    if record.state in TERMINAL_STATES:
        return record
    if record.fetch_done:
        _after_task(s, run_id, FETCH_CALLER)
        return s.runs.get(run_id)
    s.runs.mark_running(run_id)
    try:
        source = s.source(record.source)
        writer = _ChunkWriter(s, record, media_families(s, s.source_config(record.source)))
        if record.has_asset_ids:
            for ids in s.runs.asset_ids(run_id, page=max(1, s.sync.chunk_size)):
                gone: list[str] = []
                for dam_id in ids:
                    current = get_current(source, dam_id)
                    if current is None:
                        gone.append(dam_id)
                    elif isinstance(current, BadRecord):
                        writer.add_bad([current])
                    else:
                        writer.add(current)
                if gone:  # converge: the DAM no longer has them
                    _deletions(s, record, gone)
        else:
            for page in source.changed_since(record.since):
                writer.add_bad(page.bad)
                for asset in page.assets:
                    writer.add(asset)
            writer.flush()
            deleted_since = record.since or record.watermark_before
            if deleted_since is not None:
                _deletion_feed(s, record, source.deleted_since(deleted_since))
        writer.flush()
    except DamError as exc:
        log.warning("run %s: fetch from %s failed: %s", run_id, record.source, exc)
        s.runs.add_error(run_id, f"fetch failed: {type(exc).__name__}: {exc}", fatal=True)
    s.runs.set_fetch_done(run_id)
    _after_task(s, run_id, FETCH_CALLER)
    return s.runs.get(run_id)


def _quarantine_effect(entry: Quarantined) -> dict[str, Any]:
    where = f"field {entry.field}: " if entry.field else ""
    return {"effect": "quarantine", "dam_id": entry.dam_id, "family": entry.family,
            "field": entry.field, "reason": entry.reason,
            "text": f"would quarantine DAM {entry.dam_id}: {where}{entry.reason}"}


def _plan_deletions(s: Services, record: RunRecord, dam_ids: list[str]) -> None:
    """A dry run's deletions: what the source's deletion policy would do, reported (with
    the run's counts and planned side effects), never applied."""
    policy = s.source_config(record.source).deletion_policy
    ids = list(dict.fromkeys(dam_ids))
    if policy.action == "ignore":
        s.runs.transition(record.run_id, [(f"del:{d}", "deletion_ignored") for d in ids])
        return
    known = s.assets.get_many(record.source, ids)
    prefix = s.source_config(record.source).code_prefix
    effects: list[dict[str, Any]] = []
    for dam_id in ids:
        state = known.get(dam_id)
        code = state.code if state is not None else asset_code(dam_id, prefix)
        target = f"{state.family}/{code}" if state is not None else code
        verb = "delete" if policy.action == "delete" else "flag"
        text = f"would {verb} {target} (DAM {dam_id} is gone)"
        if policy.action == "flag":
            text += f": {policy.attribute} = {policy.value!r}"
        if state is None:
            text += " if the PIM has it"
        effects.append({"effect": "delete", "dam_id": dam_id, "action": policy.action,
                        "family": state.family if state else None, "code": code,
                        "text": text})
    PlanStore(s.redis, s.keys).record(record.run_id, effects)
    s.runs.transition(record.run_id, [(f"del:{d}", "deleted") for d in ids])


def _deletion_feed(s: Services, record: RunRecord, gone: Iterable[str]) -> None:
    """The DAM's deletions since the watermark: staged in Redis, counted against the
    source's mass-deletion guard, then applied ≤100 at a time — or, over the limit, none
    at all and the run fails saying why (a DAM answering a wrong list must not empty the
    PIM; `connector reconcile --apply --allow-mass-deletion` is the way past it)."""
    from connector.pipeline.deletions import (
        check_mass_deletion,
        live_deletion_candidates,
        source_pim_assets,
    )
    from connector.pipeline.errors import MassDeletionError
    from connector.pipeline.runs import WORK_TTL

    key = s.runs.key(record.run_id, "gone")
    s.redis.delete(key)  # a replayed fetch stages the feed again
    page: list[str] = []
    candidates = 0
    for dam_id in gone:
        page.append(dam_id)
        if len(page) >= 1000:
            candidates += live_deletion_candidates(s, record.source, page)
            s.redis.rpush(key, *page)
            page = []
    if page:
        candidates += live_deletion_candidates(s, record.source, page)
        s.redis.rpush(key, *page)
    s.redis.expire(key, WORK_TTL)
    try:
        check_mass_deletion(
            s, record.source, "sync", candidates,
            lambda stop: source_pim_assets(s, record.source, stop),
        )
    except MassDeletionError as exc:
        log.warning("run %s: %s", record.run_id, exc)
        s.runs.add_error(record.run_id, str(exc), fatal=not record.dry_run)
        s.redis.delete(key)
        return
    start = 0
    while True:
        ids = [i.decode() for i in s.redis.lrange(key, start, start + PIM_BULK_LIMIT - 1)]
        if not ids:
            break
        _deletions(s, record, ids)
        start += PIM_BULK_LIMIT
    s.redis.delete(key)


def _deletions(s: Services, record: RunRecord, dam_ids: list[str]) -> None:
    from connector.pipeline.deletions import apply_deletions

    if record.dry_run:
        _plan_deletions(s, record, dam_ids)
        return
    outcome = apply_deletions(record.source, dam_ids, services=s, run_id=record.run_id)
    if outcome.get("errors"):
        for message in outcome["errors"][:5]:
            s.runs.add_error(record.run_id, f"deletion: {message}", fatal=False)


# ---------------------------------------------------------------------- transform


def _open_step(
    s: Services, run_id: str, caller: str, already_done: Callable[[], bool]
) -> RunRecord | None:
    """The run when this step still has work to do; None for a finished run, or for a step
    already done (a redelivered message: completion is checked again, nothing redone)."""
    record = s.runs.get(run_id)
    if record.state in TERMINAL_STATES:
        return None
    if already_done():
        _after_task(s, run_id, caller)
        return None
    s.runs.mark_running(run_id)
    return record


def transform(run_id: str, chunk_id: str, *, services: Services | None = None) -> None:
    """Transform one chunk: quarantine, skip, `unchanged` (same content hash as the last
    successful push, unless the run forces), and the rest into the family buffers."""
    s = services or get_services()
    caller = f"chunk:{chunk_id}"
    record = _open_step(s, run_id, caller, lambda: s.runs.chunk_done(run_id, chunk_id))
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
            results = _plan_chunk(s, record, transformer, assets)
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
    _after_task(s, run_id, caller)


def _plan_chunk(
    s: Services, record: RunRecord, transformer: Any, assets: Sequence[DamAsset]
) -> list[TransformedAsset | Quarantined | Skipped]:
    """A dry run's transform: plan only (no option created, no file uploaded, nothing
    recorded) and keep the planned side effects with the run for its report."""
    from connector.transform.transformer import PlannedAsset

    results: list[TransformedAsset | Quarantined | Skipped] = []
    effects: list[dict[str, Any]] = []
    for asset in assets:
        planned = transformer.plan(asset)
        if isinstance(planned, PlannedAsset):
            effects += planned.effects()
            planned.close()
            results.append(planned.asset)
        else:
            results.append(planned)
    PlanStore(s.redis, s.keys).record(record.run_id, effects)
    return results


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
        PlanStore(s.redis, s.keys).record(record.run_id, map(_quarantine_effect, quarantined))
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
        record.run_id, chunk_id, items, min(PIM_BULK_LIMIT, max(1, s.sync.push_batch_size))
    )


# ---------------------------------------------------------------------- push


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter; the PIM's Retry-After wins when longer. Capped at
    `cap` so that no countdown comes near the broker's visibility timeout."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


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
    record = _open_step(s, run_id, caller, lambda: s.runs.batch_done(run_id, batch_id))
    if record is None:
        return
    batch = s.runs.load_batch(run_id, batch_id)
    if batch is None:
        s.runs.add_error(run_id, f"batch {batch_id} expired before it was pushed", fatal=True)
    else:
        family = batch["family"]
        assets = [TransformedAsset.from_dict(d) for d in batch["items"]]
        attempt = s.runs.next_attempt(run_id, batch_id)
        if record.dry_run:
            _dry_run_batch(s, record, family, assets)
        else:
            outcome = _push_assets(s, record, family, assets, attempt)
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
                _dead_letter_many(
                    s, record, family, retry, attempt,
                    _gave_up_results(retry, outcome.retry_results),
                )
    s.runs.finish_batch(run_id, batch_id)
    s.runs.renew(record.source, run_id, s.sync.run_lock_ttl)
    _after_task(s, run_id, caller)


def _gave_up_results(
    assets: Sequence[TransformedAsset], last: dict[str, AssetResult]
) -> dict[str, AssetResult]:
    """Dead-letter results for assets whose retries ran out: the last PIM answer, said so."""
    out: dict[str, AssetResult] = {}
    for a in assets:
        result = last.get(a.dam_id) or AssetResult(a.code, 503, "transient PIM failure")
        message = f"gave up after repeated transient PIM failures: {result.message or ''}"
        out[a.dam_id] = AssetResult(a.code, result.status_code, message.strip(), result.errors)
    return out


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


def _push_assets(
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
        outcome.retry_results = {a.dam_id: _with_code(whole, a.code) for a in assets}
        return outcome
    except PermanentPimError as exc:
        if exc.status == 404 or names_unknown_structure(exc):
            s.cache.invalidate(family)
        failure = AssetResult("", exc.status or 0, exc.message, exc.errors)
        _dead_letter_many(
            s, owner, family, assets, attempt,
            {a.dam_id: _with_code(failure, a.code) for a in assets},
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
        s.assets.record_many(source, ok_states)
        s.dead_letters.remove(source, list(ok_ids))
        if run_id is not None:
            s.runs.transition(run_id, transitions)
        link_assets(s, owner, family, [a for a in assets if a.dam_id in ok_ids])
    if failed:
        if invalidate:
            s.cache.invalidate(family)
        outcome.failed = len(failed)
        _dead_letter_many(
            s, owner, family, [a for a in assets if a.dam_id in failed], attempt, failed
        )
    return outcome


def _with_code(result: AssetResult, code: str) -> AssetResult:
    return AssetResult(code, result.status_code, result.message, result.errors)


def _dead_letter_many(
    s: Services,
    record: Owner,
    family: str,
    assets: Sequence[TransformedAsset],
    attempts: int,
    last_errors: dict[str, AssetResult],
) -> None:
    now = utcnow().isoformat()
    for asset in assets:
        result = last_errors.get(asset.dam_id) or AssetResult(asset.code, 0, "unknown failure")
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
            ),
        )
    if record.run_id is not None:
        s.runs.transition(record.run_id, [(a.dam_id, "failed") for a in assets])


# ---------------------------------------------------------------------- product links
# Direct linking lives in connector.pipeline.linking (serialised per product, pending
# links retried, previous products unlinked).


# ---------------------------------------------------------------------- dry run


def _comparable(values: dict[str, Any]) -> dict[str, dict[tuple[Any, Any], Any]]:
    out: dict[str, dict[tuple[Any, Any], Any]] = {}
    for attribute, entries in (values or {}).items():
        for entry in entries or []:
            data = entry.get("data")
            if isinstance(data, list):
                data = sorted(data, key=str)
            out.setdefault(attribute, {})[(entry.get("locale"), entry.get("channel"))] = data
    return out


def value_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    """Value-level differences our PATCH would make (attributes we do not send are kept
    by the PIM's merge, so only ours are compared)."""
    mine, pim = _comparable(ours), _comparable(theirs)
    diffs: list[dict[str, Any]] = []
    for attribute, entries in sorted(mine.items()):
        for (locale, channel), data in entries.items():
            before = pim.get(attribute, {}).get((locale, channel))
            if before != data:
                diffs.append(
                    {"attribute": attribute, "locale": locale, "channel": channel,
                     "pim": before, "dam": data}
                )
    return diffs


DIFFS_KEPT = 1000


def _dry_run_batch(
    s: Services, record: RunRecord, family: str, assets: Sequence[TransformedAsset]
) -> None:
    transitions: list[tuple[str, str]] = []
    diff_key = s.runs.key(record.run_id, "diff")
    for asset in assets:
        existing = s.client.get_asset(family, asset.code)
        if existing is None:
            transitions.append((asset.dam_id, "created"))
            diff: dict[str, Any] = {"action": "create", "code": asset.code, "family": family}
        else:
            diffs = value_differences(asset.values, existing.get("values") or {})
            transitions.append((asset.dam_id, "updated" if diffs else "unchanged"))
            diff = {"action": "update" if diffs else "none", "code": asset.code,
                    "family": family, "differences": diffs}
        if diff["action"] != "none" and s.redis.hlen(diff_key) < DIFFS_KEPT:
            s.redis.hset(diff_key, asset.dam_id, json.dumps(diff))
            s.redis.expire(diff_key, 7 * 24 * 3600)
    s.runs.transition(record.run_id, transitions)


# ---------------------------------------------------------------------- completion


def _after_task(s: Services, run_id: str, caller: str) -> None:
    """Run after every task: queue the remainder batches, or close the run (once)."""
    verdict, batch_ids = s.runs.check_completion(
        run_id, caller, min(PIM_BULK_LIMIT, max(1, s.sync.push_batch_size))
    )
    if verdict == "push":
        for batch_id in batch_ids:
            s.enqueuer.push(run_id, batch_id)
    elif verdict == "finish":
        record = s.runs.get(run_id)
        retry_after_run(s, record)  # the source's pending product links, once per run
        advance = s.redis.hget(s.runs.prefix(run_id), "advance") == b"1"
        finished = s.runs.finalize(
            run_id, overlap=s.sync.watermark_overlap, advance_watermark=advance
        )
        log.info(
            "run %s (%s) %s: %s", run_id, record.source, finished.state,
            json.dumps(finished.report, sort_keys=True),
        )


def gave_up(kind: str, run_id: str, item_id: str, error: str, *,
            services: Services | None = None) -> None:
    """A task failed for good (retries exhausted, or an unexpected error): make the run
    still end. kind = fetch | chunk | batch. A lost chunk fails the run (its assets were
    not synced, so the watermark must not move); a lost batch dead-letters its assets."""
    s = services or get_services()
    try:
        record = s.runs.get(run_id)
    except Exception:  # the run itself is gone: nothing to repair
        return
    if record.state in TERMINAL_STATES:
        return
    if kind == "fetch":
        s.runs.add_error(run_id, f"fetch failed: {error}", fatal=True)
        s.runs.set_fetch_done(run_id)
        _after_task(s, run_id, FETCH_CALLER)
    elif kind == "chunk":
        s.runs.add_error(run_id, f"chunk {item_id} failed: {error}", fatal=True)
        s.runs.finish_chunk(run_id, item_id)
        _after_task(s, run_id, f"chunk:{item_id}")
    elif kind == "batch":
        batch = s.runs.load_batch(run_id, item_id)
        if batch is not None:
            assets = [TransformedAsset.from_dict(d) for d in batch["items"]]
            failure = AssetResult("", 0, f"push task failed: {error}")
            _dead_letter_many(
                s, record, batch["family"], assets, s.sync.max_retries,
                {a.dam_id: _with_code(failure, a.code) for a in assets},
            )
        s.runs.add_error(run_id, f"batch {item_id} failed: {error}", fatal=False)
        s.runs.finish_batch(run_id, item_id)
        _after_task(s, run_id, f"batch:{item_id}")
