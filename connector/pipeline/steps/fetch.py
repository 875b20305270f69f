"""The fetch step: stream the DAM's changes into stored chunks, one transform task each.

Also the DAM side of a run's deletions (the deletion feed, staged and checked against the
mass-deletion guard) and the routing of chunks to the `media` queue.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from connector.config.model import Config, SourceConfig
from connector.dam.base import BadRecord, DamAsset, DamError, DamSource
from connector.pipeline.completion import after_task, refused
from connector.pipeline.deletions import (
    apply_deletions,
    check_mass_deletion,
    live_deletion_candidates,
    source_pim_assets,
)
from connector.pipeline.dryrun import PlanStore, plan_deletions, quarantine_effect
from connector.pipeline.errors import MassDeletionError
from connector.pipeline.runs import TERMINAL_STATES, WORK_TTL, RunRecord
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import FETCH_CALLER, PIM_BULK_LIMIT
from connector.pipeline.steps.slices import FetchCheckpoint, FetchSlices
from connector.transform.result import Quarantined
from connector.transform.selectors import SelectorError, asset_view, matches

log = logging.getLogger(__name__)


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


def get_current(dam: DamSource, dam_id: str) -> DamAsset | BadRecord | None:
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


def get_current_many(dam: DamSource, ids: Sequence[str]
                     ) -> dict[str, DamAsset | BadRecord | None]:
    """`get_current` of each id, in `ids`' order; in threads when the adapter allows it
    (`DamSource.concurrent_gets`, bounded by the DAM's fleet-wide budget anyway), so that
    a real-time batch of 100 ids is not 100 DAM round trips one after another. The first
    error is raised, as one after another would."""
    workers = min(len(ids), max(1, int(getattr(dam, "concurrent_gets", 1))))
    if workers <= 1:
        return {dam_id: get_current(dam, dam_id) for dam_id in ids}
    with ThreadPoolExecutor(workers, thread_name_prefix=f"dam-get-{dam.name}") as pool:
        found = list(pool.map(lambda dam_id: get_current(dam, dam_id), ids))
    return dict(zip(ids, found, strict=True))


class ChunkWriter:
    """Buffers normalised assets and stores them as chunks of ≤ chunk_size (memory stays
    bounded by one chunk per route, whatever the DAM's size)."""

    def __init__(
        self, s: Services, record: RunRecord, media: frozenset[str],
        start: FetchCheckpoint | None = None,
    ) -> None:
        self.s = s
        self.record = record
        self.source_config = s.source_config(record.source)
        self.media = media
        self.size = max(1, s.sync.chunk_size)
        self.buffers: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        # a continuation part numbers its chunks on from where the previous part stopped
        self.sequence = start.sequence if start is not None else 0
        self.bad_sequence = start.bad_sequence if start is not None else 0
        self.slices = FetchSlices(s, record.run_id)

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
                self.record.run_id, map(quarantine_effect, entries)
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
        # a replayed fetch (part): this chunk was queued, or even done, by an earlier delivery
        if runs.chunk_done(run_id, chunk_id) or self.slices.chunk_sent(chunk_id):
            return
        runs.store_chunk(run_id, chunk_id, json.dumps({"assets": assets, "media": is_media}))
        runs.transition(run_id, [(a["id"], "seen") for a in assets])
        runs.renew(self.record.source, run_id, self.s.sync.run_lock_ttl)
        self.s.enqueuer.transform(run_id, chunk_id, is_media)
        self.slices.mark_sent(chunk_id)


class SliceClock:
    """When a part of the fetch has read enough: `sync.fetch_slice_seconds` of work, or
    `sync.fetch_slice_pages` pages (a deterministic limit, for tests)."""

    def __init__(self, s: Services) -> None:
        self.deadline = time.monotonic() + s.sync.fetch_slice_seconds
        self.max_pages = s.sync.fetch_slice_pages
        self.pages = 0

    def page_read(self) -> bool:
        """Count one page; True when this part should stop after it."""
        self.pages += 1
        if self.max_pages is not None and self.pages >= self.max_pages:
            return True
        return time.monotonic() >= self.deadline


def fetch(run_id: str, *, part: int = 0, services: Services | None = None) -> RunRecord:
    """Stream the DAM's changes page by page into chunks and queue one transform each.

    In parts (steps/slices.py): after `sync.fetch_slice_seconds` the listing's position is
    saved and part `part + 1` is queued to go on from there, so that no task outlives the
    broker's patience (RabbitMQ's consumer_timeout, the Redis visibility timeout). The
    deletion feed and the run's completion come with the last part.

    A DAM failure (down, auth) ends the run as failed with the reason: the watermark stays
    where it was and the lock is released once the chunks already queued are done.
    """
    s = services or get_services()
    record = s.runs.get(run_id)
    if record.state in TERMINAL_STATES:
        return record
    if record.fetch_done:
        after_task(s, run_id, FETCH_CALLER)
        return s.runs.get(run_id)
    if refused(s, record, FETCH_CALLER, lambda: s.runs.set_fetch_done(run_id)):
        return s.runs.get(run_id)
    slices = FetchSlices(s, run_id)
    checkpoint = slices.load()
    if checkpoint.part != part:  # part N delivered again after N + 1 was queued: its job
        log.info("run %s: fetch part %d is behind the checkpoint (part %d): nothing to do",
                 run_id, part, checkpoint.part)
        return record
    s.runs.mark_running(run_id)
    clock = SliceClock(s)
    try:
        source = s.source(record.source)
        writer = ChunkWriter(s, record, media_families(s, s.source_config(record.source)),
                             checkpoint)
        if record.has_asset_ids:
            following = _fetch_ids(s, record, source, writer, checkpoint, clock)
        else:
            following = None
            for page, token in source.changed_pages(record.since, checkpoint.resume):
                writer.add_bad(page.bad)
                for asset in page.assets:
                    writer.add(asset)
                if token is not None and clock.page_read():
                    following = replace(checkpoint, resume=token)
                    break
        writer.flush()
        if following is not None:
            _continue(s, record, slices, part, following, writer)
            return s.runs.get(run_id)
        if not record.has_asset_ids:
            deleted_since = record.since or record.watermark_before
            if deleted_since is not None:
                _deletion_feed(s, record, source.deleted_since(deleted_since))
        writer.flush()
    except DamError as exc:
        log.warning("run %s: fetch from %s failed: %s", run_id, record.source, exc)
        s.runs.add_error(run_id, f"fetch failed: {type(exc).__name__}: {exc}", fatal=True)
    s.runs.set_fetch_done(run_id)
    after_task(s, run_id, FETCH_CALLER)
    return s.runs.get(run_id)


def _fetch_ids(
    s: Services, record: RunRecord, source: DamSource, writer: ChunkWriter,
    checkpoint: FetchCheckpoint, clock: SliceClock,
) -> FetchCheckpoint | None:
    """A run of explicit ids: each one read from the DAM; the checkpoint of the next part
    when this one has read enough and ids are left, else None."""
    read = checkpoint.id_pages
    size = max(1, s.sync.chunk_size)
    total = int(s.redis.llen(s.runs.key(record.run_id, "ids")))
    for ids in s.runs.asset_ids(record.run_id, page=size, start=read * size):
        gone: list[str] = []
        for dam_id, current in get_current_many(source, ids).items():
            if current is None:
                gone.append(dam_id)
            elif isinstance(current, BadRecord):
                writer.add_bad([current])
            else:
                writer.add(current)
        if gone:  # converge: the DAM no longer has them
            _deletions(s, record, gone)
        read += 1
        if clock.page_read() and read * size < total:
            return replace(checkpoint, id_pages=read)
    return None


def _continue(
    s: Services, record: RunRecord, slices: FetchSlices, part: int,
    following: FetchCheckpoint, writer: ChunkWriter,
) -> None:
    """Save where part `part + 1` starts and queue it; only the delivery that moves the
    checkpoint queues it (a second delivery of this part queues nothing)."""
    following = replace(following, part=part + 1, sequence=writer.sequence,
                        bad_sequence=writer.bad_sequence)
    s.runs.renew(record.source, record.run_id, s.sync.run_lock_ttl)
    if slices.advance(part, following):
        log.info("run %s: fetch part %d read its share, part %d goes on", record.run_id,
                 part, part + 1)
        s.enqueuer.fetch(record.source, record.run_id, part + 1)


def _deletion_feed(s: Services, record: RunRecord, gone: Iterable[str]) -> None:
    """The DAM's deletions since the watermark: staged in Redis, counted against the
    source's mass-deletion guard, then applied ≤100 at a time — or, over the limit, none
    at all and the run fails saying why (a DAM answering a wrong list must not empty the
    PIM; `connector reconcile --apply --allow-mass-deletion` is the way past it)."""
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
    """DAM ids that are gone: the deletion policy (a dry run only plans it)."""
    if record.dry_run:
        plan_deletions(s, record, dam_ids)
        return
    outcome = apply_deletions(record.source, dam_ids, services=s, run_id=record.run_id)
    if outcome.get("errors"):
        for message in outcome["errors"][:5]:
            s.runs.add_error(record.run_id, f"deletion: {message}", fatal=False)
