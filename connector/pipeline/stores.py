"""Per-source memory of what was pushed (hashes, code ↔ dam id, last result) and the
dead-letter store. Both are Redis hashes keyed by DAM id, so every write is idempotent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from connector.pipeline.runs import SyncRedis, utcnow
from connector.redis_conn import Keys


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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> PushedState:
        return cls(**json.loads(raw))


class AssetStateStore:
    """`asset:<source>` (dam id → PushedState) and `code:<source>` (PIM code → dam id)."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self.redis: SyncRedis = redis_client
        self.keys = keys

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

    def record_many(self, source: str, states: Iterable[tuple[str, PushedState]]) -> None:
        pipe = self.redis.pipeline()
        now = utcnow().isoformat()
        n = 0
        for dam_id, state in states:
            state.at = state.at or now
            pipe.hset(self._key(source), dam_id, state.to_json())
            pipe.hset(self._codes(source), state.code, dam_id)
            n += 1
        if n:
            pipe.execute()

    def forget_hash(self, source: str, dam_id: str) -> None:
        """Next run pushes this asset again (after a deletion, or when the PIM lost it)."""
        state = self.get(source, dam_id)
        if state is not None:
            state.content_hash = None
            self.record(source, dam_id, state)

    def dam_id_of(self, source: str, code: str) -> str | None:
        raw = self.redis.hget(self._codes(source), code)
        return raw.decode() if raw else None


@dataclass
class DeadLetter:
    """An asset the PIM refused (permanently, or after every retry)."""

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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        return cls(**json.loads(raw))


class DeadLetterStore:
    """`dead:<source>`: dam id → DeadLetter. A later successful push removes the entry."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self.redis: SyncRedis = redis_client
        self.keys = keys

    def _key(self, source: str) -> str:
        return self.keys.of("dead", source)

    def add(self, source: str, letter: DeadLetter) -> None:
        self.redis.hset(self._key(source), letter.dam_id, letter.to_json())

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
