"""Direct product linking (`product_link.mode: direct`): the connector writes each pushed
asset's code into its products' asset-collection attribute.

Why it is more than a PATCH: Akeneo's product PATCH replaces the whole collection array,
so a link is a read-merge-write of the product. Three things make that safe:

- Serialised per product, fleet-wide: the read-merge-write of a product happens under a
  short Redis lock on its identifier (random token, TTL, renewed just before the write,
  released only by its holder), so concurrent push processes never overwrite each
  other's codes. Still one product read per ≤100 products and one NDJSON PATCH per ≤100
  lines.
- Remembered: the identifiers each asset was linked to are kept per source
  (`links:linked:<source>`), so when an asset's product reference changes the previous
  product is unlinked (`product_link.unlink_previous`, on by default).
- Never dropped: a link (or unlink) that could not be made — product not found yet, a
  PATCH line refused, the PIM unreachable, the lock busy — waits in
  `links:pending:<source>` and is retried at the end of every run of that source and by
  the reconcile, until it succeeds. `connector links pending` lists them.

Dry runs never come here.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from connector.config.model import ProductLinkConfig
from connector.pim.errors import PimError
from connector.pipeline.runs import SyncRedis, utcnow
from connector.pipeline.services import Services, get_services
from connector.redis_conn import Keys
from connector.transform.result import TransformedAsset

log = logging.getLogger(__name__)

PIM_BULK_LIMIT = 100
#: seconds a product lock lives without renewal (covers one read and one write, budget
#: waits included); a crashed holder's lock frees itself after this
LOCK_TTL = 120.0
#: seconds a linker waits for products another process is linking, then leaves it pending
LOCK_WAIT = 60.0
LOCK_POLL = 0.02
#: pending entries retried per round (each round: ≤100 products per read and per write)
RETRY_PAGE = 500
NOTES_KEPT = 20
OK_STATUSES = frozenset({200, 201, 204})

Action = Literal["link", "unlink"]


class LinkOwner(Protocol):
    """Who the linking is done for: a run (run_id set) or a real-time sync (run_id None)."""

    @property
    def source(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...


@dataclass(frozen=True)
class SourceOnly:
    """An owner outside any run (the reconcile, a CLI retry): notes go to the log."""

    source: str
    run_id: str | None = None


@dataclass(frozen=True)
class LinkOp:
    """Put (`link`) or take out (`unlink`) one asset code in one product's collection."""

    family: str
    attribute: str
    identifier: str
    code: str
    dam_id: str
    action: Action = "link"

    def field(self) -> str:
        """The pending-store field: one intent per (attribute, product, asset), the latest
        one wins (an unlink replaces a pending link of the same asset and product)."""
        return json.dumps([self.attribute, self.identifier, self.code], separators=(",", ":"))


@dataclass
class PendingLink:
    """A link or unlink not made yet, and why."""

    family: str
    attribute: str
    identifier: str
    code: str
    dam_id: str
    action: Action
    reason: str
    since: str
    last_try: str
    attempts: int = 1

    def op(self) -> LinkOp:
        return LinkOp(self.family, self.attribute, self.identifier, self.code, self.dam_id,
                      self.action)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> PendingLink:
        return cls(**json.loads(raw))


# ---------------------------------------------------------------------- Redis state

_CAS_HDEL = """
local n = 0
for i = 1, #ARGV, 2 do
  local expected = ARGV[i + 1]
  if expected == '' or redis.call('HGET', KEYS[1], ARGV[i]) == expected then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
"""

_ACQUIRE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return 0 end
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

_RENEW = """
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[1] then return 0 end
end
for i = 1, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
"""

_RELEASE = """
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then n = n + redis.call('DEL', KEYS[i]) end
end
return n
"""


class LinkState:
    """Pending links and previously linked identifiers of each source, plus the product
    locks (shared by every source: they guard the PIM's products, not our state)."""

    def __init__(self, redis_client: SyncRedis, keys: Keys) -> None:
        self.redis = redis_client
        self.keys = keys
        self._cas_hdel = redis_client.register_script(_CAS_HDEL)
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._renew = redis_client.register_script(_RENEW)
        self._release = redis_client.register_script(_RELEASE)

    # -- pending

    def pending_key(self, source: str) -> str:
        return self.keys.of("links", "pending", source)

    def put_pending(self, source: str, failed: Sequence[tuple[LinkOp, str]]) -> None:
        """Record failed ops (keeping when each was first pending and counting tries)."""
        if not failed:
            return
        key = self.pending_key(source)
        fields = [op.field() for op, _ in failed]
        known = self.redis.hmget(key, fields)
        now = utcnow().isoformat()
        mapping: dict[str, str] = {}
        for (op, reason), field_, raw in zip(failed, fields, known, strict=True):
            before = PendingLink.from_json(raw) if raw else None
            same = before is not None and before.action == op.action
            mapping[field_] = PendingLink(
                op.family, op.attribute, op.identifier, op.code, op.dam_id, op.action,
                reason[:500], since=before.since if same and before else now, last_try=now,
                attempts=(before.attempts + 1) if same and before else 1,
            ).to_json()
        self.redis.hset(key, mapping=mapping)

    def drop_pending(
        self, source: str, ops: Iterable[LinkOp], expected: dict[str, str] | None = None
    ) -> None:
        """Forget pending entries of `ops` (done or superseded); with `expected` (field →
        the value read before), only entries nobody changed in between."""
        args: list[str] = []
        for op in ops:
            field_ = op.field()
            args += [field_, (expected or {}).get(field_, "")]
        for i in range(0, len(args), 1000):
            self._cas_hdel(keys=[self.pending_key(source)], args=args[i : i + 1000])

    def pending_count(self, source: str) -> int:
        return int(self.redis.hlen(self.pending_key(source)))

    def scan_pending(
        self, source: str, page: int = RETRY_PAGE
    ) -> Iterator[list[tuple[str, PendingLink]]]:
        """Pending entries a page at a time (HSCAN: never the whole hash in one reply)."""
        cursor = 0
        while True:
            cursor, items = self.redis.hscan(self.pending_key(source), cursor=cursor,
                                             count=page)
            batch: list[tuple[str, PendingLink]] = []
            for field_, raw in items.items():
                name = field_.decode() if isinstance(field_, bytes) else str(field_)
                batch.append((name, PendingLink.from_json(raw)))
            if batch:
                yield batch
            if cursor == 0:
                return

    # -- previously linked

    def linked_key(self, source: str) -> str:
        return self.keys.of("links", "linked", source)

    def previous(self, source: str, dam_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """dam id → {"attribute", "code", "identifiers"} of its last linking."""
        if not dam_ids:
            return {}
        raws = self.redis.hmget(self.linked_key(source), list(dam_ids))
        return {d: json.loads(r) for d, r in zip(dam_ids, raws, strict=True) if r}

    def remember(
        self, source: str, linked: dict[str, tuple[str, str, tuple[str, ...]]]
    ) -> None:
        """dam id → (attribute, asset code, identifiers) wanted now (linked, or pending)."""
        gone = [d for d, (_, _, ids) in linked.items() if not ids]
        keep = {
            d: json.dumps({"attribute": attribute, "code": code, "identifiers": list(ids)})
            for d, (attribute, code, ids) in linked.items() if ids
        }
        pipe = self.redis.pipeline()
        if keep:
            pipe.hset(self.linked_key(source), mapping=keep)
        if gone:
            pipe.hdel(self.linked_key(source), *gone)
        if keep or gone:
            pipe.execute()

    # -- product locks

    def lock_keys(self, identifiers: Sequence[str]) -> list[str]:
        return [self.keys.of("links", "lock", i) for i in identifiers]

    def acquire(self, keys: list[str], token: str, wait: float = LOCK_WAIT) -> bool:
        """All of `keys` or none (no deadlock between linkers of overlapping products)."""
        deadline = time.monotonic() + wait
        ttl_ms = str(int(LOCK_TTL * 1000))
        while True:
            if self._acquire(keys=keys, args=[token, ttl_ms]) == 1:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(LOCK_POLL * (1 + random.random()))

    def renew(self, keys: list[str], token: str) -> bool:
        """Still ours? Then good for another LOCK_TTL (called just before the write)."""
        return bool(self._renew(keys=keys, args=[token, str(int(LOCK_TTL * 1000))]))

    def release(self, keys: list[str], token: str) -> None:
        self._release(keys=keys, args=[token])


# ---------------------------------------------------------------------- linking


def link_assets(
    s: Services, owner: LinkOwner, family: str, assets: Sequence[TransformedAsset]
) -> None:
    """Link freshly pushed assets to their products (direct mode only); unlink the
    products they no longer name. Failures are notes and pending links, never asset
    failures: the assets themselves are in the PIM."""
    link = _direct_link(s, family)
    if link is None or not assets:
        return
    attribute = str(link.product_attribute)
    state = LinkState(s.redis, s.keys)
    source = owner.source
    before = state.previous(source, [a.dam_id for a in assets])
    ops: list[LinkOp] = []
    forgotten: list[LinkOp] = []
    now: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for asset in assets:
        wanted = asset.product_identifiers
        for identifier in wanted:
            ops.append(LinkOp(family, attribute, identifier, asset.code, asset.dam_id))
        old = before.get(asset.dam_id) or {}
        old_attribute = str(old.get("attribute") or attribute)
        old_code = str(old.get("code") or asset.code)
        for identifier in old.get("identifiers") or []:
            if identifier in wanted and (old_attribute, old_code) == (attribute, asset.code):
                continue
            gone = LinkOp(family, old_attribute, identifier, old_code, asset.dam_id, "unlink")
            (ops if link.unlink_previous else forgotten).append(gone)
        if wanted or old:
            now[asset.dam_id] = (attribute, asset.code, wanted)
    if forgotten:
        state.drop_pending(source, forgotten)  # a pending link nobody wants any more
    if ops:
        done, failed = _apply(s, state, ops)
        state.drop_pending(source, done)
        state.put_pending(source, failed)
        _note_failures(s, owner, failed)
    state.remember(source, now)


def retry_pending(s: Services, owner: LinkOwner) -> dict[str, int]:
    """Try every pending link of the owner's source again (end of a run, reconcile).

    Entries whose family no longer links directly (config changed) or whose asset was
    deleted from the PIM are dropped: nobody wants them any more.
    """
    source = owner.source
    state = LinkState(s.redis, s.keys)
    counts = {"retried": 0, "done": 0, "pending": 0, "dropped": 0}
    if state.pending_count(source) == 0:
        return counts
    seen: set[str] = set()
    failures: list[tuple[LinkOp, str]] = []
    for page in state.scan_pending(source):
        page = [(f, p) for f, p in page if f not in seen]  # HSCAN may repeat an entry
        seen.update(f for f, _ in page)
        states = s.assets.get_many(source, sorted({p.dam_id for _, p in page}))
        ops: list[LinkOp] = []
        drop: list[LinkOp] = []
        read: dict[str, str] = {}
        for field_, entry in page:
            link = _direct_link(s, entry.family)
            pushed = states.get(entry.dam_id)
            deleted = pushed is not None and pushed.status == "deleted"
            if link is None or link.product_attribute != entry.attribute or (
                deleted and entry.action == "link"
            ):
                drop.append(entry.op())
            else:
                ops.append(entry.op())
            read[field_] = entry.to_json()
        counts["dropped"] += len(drop)
        state.drop_pending(source, drop, expected=read)
        if not ops:
            continue
        counts["retried"] += len(ops)
        done, failed = _apply(s, state, ops)
        counts["done"] += len(done)
        counts["pending"] += len(failed)
        state.drop_pending(source, done, expected=read)
        state.put_pending(source, failed)
        failures += failed
    if counts["retried"]:
        log.info("%s: pending product links retried: %s", source, json.dumps(counts))
    _note_failures(s, owner, failures, retry=True)
    return counts


def retry_after_run(s: Services, record: LinkOwner, dry_run: bool = False) -> None:
    """End of a run: the source's pending links get another try (never in a dry run).
    A failure here is a note: the links stay pending and the run ends as it would."""
    if dry_run or getattr(record, "dry_run", False):
        return
    try:
        retry_pending(s, record)
    except Exception as exc:  # PIM or Redis trouble: the next run tries again
        log.warning("%s: pending product links not retried: %s", record.source, exc)
        if record.run_id is not None:
            try:
                s.runs.add_error(record.run_id, f"pending product links not retried: {exc}",
                                 fatal=False)
            except Exception:
                log.debug("could not note the failed retry", exc_info=True)


def pending_links(
    source: str, limit: int | None = None, *, services: Services | None = None
) -> list[dict[str, Any]]:
    """The source's pending links (oldest first): product, asset, action, why, since."""
    s = services or get_services()
    s.source_config(source)  # unknown source → a clear error
    state = LinkState(s.redis, s.keys)
    entries = [asdict(p) for page in state.scan_pending(source) for _, p in page]
    entries.sort(key=lambda e: (e["since"], e["identifier"], e["code"]))
    return entries if limit is None else entries[:limit]


def _direct_link(s: Services, family: str) -> ProductLinkConfig | None:
    try:
        link = s.config.family(family).product_link
    except KeyError:
        return None
    if link.mode != "direct" or not link.product_attribute:
        return None
    return link


def _apply(
    s: Services, state: LinkState, ops: Sequence[LinkOp]
) -> tuple[list[LinkOp], list[tuple[LinkOp, str]]]:
    """Make `ops` in the PIM: per attribute, ≤100 products at a time, each group under the
    products' locks. Returns the ops done and the ops still to do (with the reason)."""
    done: list[LinkOp] = []
    failed: list[tuple[LinkOp, str]] = []
    grouped: dict[str, dict[str, list[LinkOp]]] = {}
    for op in ops:
        grouped.setdefault(op.attribute, {}).setdefault(op.identifier, []).append(op)
    for attribute, by_product in grouped.items():
        identifiers = sorted(by_product)
        for i in range(0, len(identifiers), PIM_BULK_LIMIT):
            chunk = {p: by_product[p] for p in identifiers[i : i + PIM_BULK_LIMIT]}
            ok, not_ok = _apply_chunk(s, state, attribute, chunk)
            done += ok
            failed += not_ok
    return done, failed


def _apply_chunk(
    s: Services, state: LinkState, attribute: str, by_product: dict[str, list[LinkOp]]
) -> tuple[list[LinkOp], list[tuple[LinkOp, str]]]:
    """One locked read-merge-write of ≤100 products."""
    every = [op for ops in by_product.values() for op in ops]
    keys = state.lock_keys(list(by_product))
    token = uuid.uuid4().hex
    if not state.acquire(keys, token):
        why = f"the product was being linked by another process for over {LOCK_WAIT:g}s"
        return [], [(op, why) for op in every]
    done: list[LinkOp] = []
    failed: list[tuple[LinkOp, str]] = []
    try:
        products = s.client.get_products(list(by_product))
        lines: list[dict[str, Any]] = []
        written: list[str] = []
        for identifier, ops in by_product.items():
            product = products.get(identifier)
            if product is None:
                for op in ops:
                    if op.action == "unlink":
                        done.append(op)  # nothing to take out of a product that is not there
                    else:
                        failed.append((op, f"product {identifier!r} not found"))
                continue
            current = _collection(product, attribute)
            removed = {op.code for op in ops if op.action == "unlink"}
            merged = [c for c in current if c not in removed]
            merged += [op.code for op in ops if op.action == "link" and op.code not in merged]
            if merged == current:
                done += ops
                continue
            written.append(identifier)
            lines.append({"identifier": identifier,
                          "values": {attribute: [{"locale": None, "scope": None,
                                                  "data": merged}]}})
        if lines:
            if not state.renew(keys, token):
                why = f"the product lock expired before the write (over {LOCK_TTL:g}s)"
                failed += [(op, why) for p in written for op in by_product[p]]
                return done, failed
            results = s.client.patch_products(lines)
            for identifier, (status, message) in _statuses(written, results).items():
                if status in OK_STATUSES:
                    done += by_product[identifier]
                else:
                    why = f"the PIM refused the product write: {status} {message}".strip()
                    failed += [(op, why) for op in by_product[identifier]]
    except PimError as exc:
        return [], [(op, f"product linking failed: {exc}") for op in every]
    finally:
        state.release(keys, token)
    return done, failed


def _collection(product: dict[str, Any], attribute: str) -> list[str]:
    """The product's non-localised, non-scoped codes of `attribute` (empty when none)."""
    for value in (product.get("values") or {}).get(attribute) or []:
        if value.get("locale") is None and value.get("scope") is None:
            return [str(c) for c in value.get("data") or []]
    return []


def _statuses(
    identifiers: list[str], results: list[dict[str, Any]]
) -> dict[str, tuple[int, str]]:
    """identifier → (status, message) of its PATCH line (by identifier, else line number);
    a line the PIM did not answer counts as refused."""
    out: dict[str, tuple[int, str]] = {
        i: (0, "no answer for this product in the PIM's response") for i in identifiers
    }
    for result in results:
        identifier = result.get("identifier")
        if not isinstance(identifier, str):
            line = result.get("line")
            if isinstance(line, int) and 1 <= line <= len(identifiers):
                identifier = identifiers[line - 1]
        if isinstance(identifier, str) and identifier in out:
            out[identifier] = (int(result.get("status_code") or 0),
                               str(result.get("message") or ""))
    return out


def _note_failures(
    s: Services, owner: LinkOwner, failed: Sequence[tuple[LinkOp, str]], retry: bool = False
) -> None:
    """Failed links are pending, not lost: say so once per product and reason (capped)."""
    if not failed:
        return
    reasons: dict[tuple[str, str], int] = {}
    for op, why in failed:
        key = (op.identifier, why)
        reasons[key] = reasons.get(key, 0) + 1
    lines = [
        f"{n} product link(s) to {identifier!r} pending: {why}"
        for (identifier, why), n in list(reasons.items())[:NOTES_KEPT]
    ]
    if len(reasons) > NOTES_KEPT:
        lines.append(f"... and {len(reasons) - NOTES_KEPT} more products with pending links")
    prefix = "still pending after a retry: " if retry else ""
    for line in lines:
        if owner.run_id is not None:
            s.runs.add_error(owner.run_id, prefix + line, fatal=False)
        else:
            log.warning("%s: %s%s", owner.source, prefix, line)


__all__ = [
    "LinkOp",
    "LinkState",
    "PendingLink",
    "SourceOnly",
    "link_assets",
    "pending_links",
    "retry_after_run",
    "retry_pending",
]
