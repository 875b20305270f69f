"""Per-source memory of what was pushed (hashes, code ↔ dam id, last result) and the
dead-letter store. Both are Redis hashes keyed by DAM id, so every write is idempotent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from connector.pipeline.runs import SyncRedis, utcnow
from connector.redis_conn import Keys
from connector.transform.result import TransformedAsset


@dataclass
class PushedState:
    """What the connector last did with one DAM asset in the PIM."""

    code: str
    family: str
    content_hash: str | None          # of the last *successful* push; None = never succeeded
    status: str                       # created | updated | failed | deleted | flagged
    result: dict[str, Any] = field(default_factory=dict)  # AssetResult.to_dict() or reason
    run_id: str | None = None
    at: str = ""
    # for status `failed`: whether the PIM holds (an earlier version of) the asset. States
    # written before this field existed read as True: the deletion guard then counts them.
    in_pim: bool = True

    @property
    def live(self) -> bool:
        """The PIM holds this asset (what the mass-deletion guard counts)."""
        if self.status in ("deleted", "flagged"):
            return False
        return self.status != "failed" or self.in_pim

    def to_json(self) -> str:
        """Written once per pushed asset: the fields by hand, not `asdict` (which
        deep-copies `result`); same keys, same order."""
        return json.dumps({
            "code": self.code, "family": self.family, "content_hash": self.content_hash,
            "status": self.status, "result": self.result, "run_id": self.run_id,
            "at": self.at, "in_pim": self.in_pim,
        })

    @classmethod
    def from_json(cls, raw: bytes | str) -> PushedState:
        return cls(**json.loads(raw))


# KEYS: asset:<source>, code:<source>, version; ARGV: (dam id, code, version or "", state
# json, the same without its hash) quintuples → 1 (recorded) or 0 (superseded) each.
# Superseded: the newer push's state stays; with none yet, the hashless state is written
# (never "unchanged", so the next sync pushes again); a `failed` state that says the PIM
# holds nothing is corrected (this push put the asset there). The code always maps.
_RECORD = """
local out = {}
for i = 1, #ARGV, 5 do
  local dam_id, code, mine = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local newest = mine and tonumber(redis.call('HGET', KEYS[3], code))
  if newest and newest > mine then
    local raw = redis.call('HGET', KEYS[1], dam_id)
    if not raw then
      redis.call('HSET', KEYS[1], dam_id, ARGV[i + 4])
    elseif string.find(raw, '"status": "failed"', 1, true) then
      local fixed, n = string.gsub(raw, '"in_pim": false}$', '"in_pim": true}')
      if n > 0 then redis.call('HSET', KEYS[1], dam_id, fixed) end
    end
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[1], dam_id, ARGV[i + 3])
    out[#out + 1] = 1
  end
  redis.call('HSET', KEYS[2], code, dam_id)
end
return out
"""


class AssetStateStore:
    """`asset:<source>` (dam id → PushedState) and `code:<source>` (PIM code → dam id)."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self.redis: SyncRedis = redis_client
        self.keys = keys
        self._record = self.redis.register_script(_RECORD)

    def _key(self, source: str) -> str:
        return self.keys.of("asset", source)

    def _codes(self, source: str) -> str:
        return self.keys.of("code", source)

    def get(self, source: str, dam_id: str) -> PushedState | None:
        raw = self.redis.hget(self._key(source), dam_id)
        return PushedState.from_json(raw) if raw else None

    def get_many(self, source: str, dam_ids: Sequence[str]) -> dict[str, PushedState]:
        if not dam_ids:
            return {}
        raws = self.redis.hmget(self._key(source), list(dam_ids))
        return {d: PushedState.from_json(r) for d, r in zip(dam_ids, raws, strict=True) if r}

    def hashes(self, source: str, dam_ids: Sequence[str]) -> dict[str, str]:
        """dam id → content hash of the last successful push (absent when none)."""
        return {
            d: s.content_hash for d, s in self.get_many(source, dam_ids).items() if s.content_hash
        }

    def record(self, source: str, dam_id: str, state: PushedState) -> None:
        state.at = state.at or utcnow().isoformat()
        pipe = self.redis.pipeline()
        pipe.hset(self._key(source), dam_id, state.to_json())
        pipe.hset(self._codes(source), state.code, dam_id)
        pipe.execute()

    def record_many(
        self,
        source: str,
        states: Iterable[tuple[str, PushedState]],
        versions: Mapping[str, int | None] | None = None,
    ) -> set[str]:
        """Record successful pushes (dam id → state, with the DAM version pushed, dam id →
        version) in one Lua script, compared against the version gate: a state whose
        version is older than the newest the gate admitted for its code is superseded (a
        newer push reached or is reaching the PIM), so its content hash is not stored and
        the newer push's state stays. Returns the dam ids recorded as their last push.

        Why atomic: a newer push can record between our PIM answer and this write; checking
        then writing in two round trips would still leave the older hash behind."""
        now = utcnow().isoformat()
        args: list[str | int] = []
        for dam_id, state in states:
            state.at = state.at or now
            version = (versions or {}).get(dam_id)
            hashless = json.loads(state.to_json())
            hashless["content_hash"] = None
            args += [dam_id, state.code, "" if version is None else version,
                     state.to_json(), json.dumps(hashless)]
        if not args:
            return set()
        answers = self._record(
            keys=[self._key(source), self._codes(source), self.keys.of("version")], args=args)
        ids = args[0::5]
        return {str(d) for d, ok in zip(ids, answers, strict=True) if int(ok)}

    def dam_id_of(self, source: str, code: str) -> str | None:
        raw = self.redis.hget(self._codes(source), code)
        return raw.decode() if raw else None


# KEYS: the version hash; ARGV: (code, version) pairs → 1 (go ahead) or 0 (superseded) each
_CLAIM = """
local out = {}
for i = 1, #ARGV, 2 do
  local code, mine = ARGV[i], tonumber(ARGV[i + 1])
  local newest = tonumber(redis.call('HGET', KEYS[1], code))
  if newest and newest > mine then
    out[#out + 1] = 0
  else
    if (not newest) or mine > newest then redis.call('HSET', KEYS[1], code, ARGV[i + 1]) end
    out[#out + 1] = 1
  end
end
return out
"""


def dam_version(updated: datetime | None) -> int | None:
    """A DAM modification time as whole microseconds since the epoch (naive = UTC), exact
    in a Lua number; None when the DAM gave no time."""
    if updated is None:
        return None
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return (updated - _EPOCH) // timedelta(microseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class VersionGate:
    """`version` (PIM asset code → newest DAM version written or claimed for it).

    Why: a push that arrives late (its run abandoned when its lock expired, a stalled
    worker, a slow real-time flush) must not write an older DAM version over a newer one.
    `claim` checks and claims every asset of a batch in one Lua script, before the PIM
    request: an asset whose newer version was already claimed is dropped (superseded);
    equal versions go through (retries, redeliveries, forced re-pushes); assets without a
    DAM time are never dropped. Keyed by code, so sources reading one DAM share the gate.
    A request already in flight when a newer version is claimed can still land after it;
    its hash is then not stored (`AssetStateStore.record_many` compares with the gate).
    """

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self.redis: SyncRedis = redis_client
        self.key = keys.of("version")
        self._claim = self.redis.register_script(_CLAIM)

    def claim(self, assets: Sequence[TransformedAsset]) -> list[bool]:
        """Per asset, in order: True = push it, False = a newer version was written."""
        args: list[str | int] = []
        for asset in assets:
            version = dam_version(asset.updated)
            if version is not None:
                args += [asset.code, version]
        answers = iter(self._claim(keys=[self.key], args=args) if args else [])
        return [asset.updated is None or bool(int(next(answers))) for asset in assets]


@dataclass
class DeadLetter:
    """An asset the PIM refused (permanently, or after every retry).

    kind "push": the asset's values were refused; kind "deletion": the deletion policy's
    DELETE (or flag) was refused, so the PIM still holds an asset the DAM no longer has;
    kind "dam": the DAM kept failing to serve the asset (its binary) after every retry,
    so nothing was written (not the record's fault: no quarantine).
    A retry re-reads the DAM either way: pushed when it is back, the policy again when not.
    """

    dam_id: str
    code: str
    family: str
    status: int | None
    message: str
    errors: list[dict[str, Any]]
    attempts: int
    run_id: str | None
    at: str
    values: dict[str, Any] = field(default_factory=dict)
    kind: str = "push"                # push | deletion | dam (entries from before kinds: push)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        return cls(**json.loads(raw))


class DeadLetterStore:
    """`dead:<source>`: dam id → DeadLetter. A later successful push removes the entry.

    `on_new(source)` is called for an id the store did not hold yet (the alerts count
    new dead letters this way, connector/alerts.py)."""

    def __init__(self, redis_client: redis.Redis, keys: Keys,
                 on_new: Callable[[str], None] | None = None) -> None:
        self.redis: SyncRedis = redis_client
        self.keys = keys
        self.on_new = on_new

    def _key(self, source: str) -> str:
        return self.keys.of("dead", source)

    def add(self, source: str, letter: DeadLetter) -> None:
        added = self.redis.hset(self._key(source), letter.dam_id, letter.to_json())
        if added and self.on_new is not None:
            self.on_new(source)

    def get(self, source: str, dam_id: str) -> DeadLetter | None:
        raw = self.redis.hget(self._key(source), dam_id)
        return DeadLetter.from_json(raw) if raw else None

    def remove(self, source: str, dam_ids: Iterable[str]) -> int:
        ids = list(dam_ids)
        return int(self.redis.hdel(self._key(source), *ids)) if ids else 0

    def count(self, source: str) -> int:
        return int(self.redis.hlen(self._key(source)))

    def iter(self, source: str) -> Iterator[DeadLetter]:
        for _, raw in self.redis.hscan_iter(self._key(source), count=500):
            yield DeadLetter.from_json(raw)

    def list(self, source: str, limit: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for letter in self.iter(source):
            out.append(letter)
            if len(out) >= limit:
                break
        return out

    def ids(self, source: str) -> Iterator[str]:
        for dam_id, _ in self.redis.hscan_iter(self._key(source), count=1000):
            yield dam_id.decode()
