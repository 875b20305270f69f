"""Linking's Redis state: pending links, previously linked products, product locks.

A link intent is a `LinkOp`; one not made yet is a `PendingLink` (kept per source until
it succeeds). The product locks are shared by every source: they guard the PIM's
products, not our state. See `connector.pipeline.linking` for why each exists.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from connector.pipeline.runs import SyncRedis, utcnow
from connector.redis_conn import Keys

#: seconds a product lock lives without renewal (covers one read and one write, budget
#: waits included); a crashed holder's lock frees itself after this
LOCK_TTL = 120.0
#: seconds a linker waits for products another process is linking, then leaves it pending
LOCK_WAIT = 60.0
LOCK_POLL = 0.02
#: pending entries retried per round (each round: ≤100 products per read and per write)
RETRY_PAGE = 500

Action = Literal["link", "unlink"]


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
