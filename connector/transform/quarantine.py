"""Quarantined records, kept in Redis so that people can see and fix them.

One Redis hash per source (``Keys.of("quarantine", <source>)``), field = DAM id, value =
JSON ``{dam_id, source, reason, field, family, details, run_id, time}``. A new quarantine
of the same record replaces the old entry (the latest reason is the one that matters).
Entries live `ttl` seconds (SyncConfig.quarantine_ttl): every entry carries its time and
expired entries are dropped when read; the hash key itself expires `ttl` after the last
write. Records without a DAM id are stored under ``_noid_<hash of the entry>``.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any, cast

import redis

from connector.redis_conn import Keys
from connector.transform.result import Quarantined

DEFAULT_TTL = 30 * 24 * 3600


class QuarantineStore:
    def __init__(
        self, redis_client: redis.Redis, keys: Keys | None = None, ttl: int = DEFAULT_TTL
    ) -> None:
        self.redis = redis_client
        self.keys = keys or Keys()
        self.ttl = ttl

    def _key(self, source: str) -> str:
        return self.keys.of("quarantine", source)

    def _sources_key(self) -> str:
        return self.keys.of("quarantine-sources")

    @staticmethod
    def entry_id(q: Quarantined) -> str:
        """The hash field of an entry: its DAM id, or a stable stand-in when it has none."""
        if q.dam_id:
            return q.dam_id
        body = json.dumps(
            {"reason": q.reason, "field": q.field, "details": q.details},
            sort_keys=True,
            default=repr,
        )
        return "_noid_" + hashlib.sha256(body.encode()).hexdigest()[:16]

    def add(self, source: str, q: Quarantined, run_id: str | None = None) -> str:
        """Store (or replace) the entry of `q`; returns its id."""
        return self.add_many(source, [q], run_id)[0]

    def add_many(
        self, source: str, items: Sequence[Quarantined], run_id: str | None = None
    ) -> builtins.list[str]:
        if not items:
            return []
        now = time.time()
        mapping: dict[str, str] = {}
        for q in items:
            entry = q.to_dict()
            entry["source"] = source
            entry["run_id"] = run_id
            entry["time"] = now
            mapping[self.entry_id(q)] = json.dumps(entry, default=repr)
        key = self._key(source)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl)
        pipe.sadd(self._sources_key(), source)
        pipe.execute()
        return list(mapping)

    def _decode(self, raw: Any) -> dict[str, Any] | None:
        try:
            entry = json.loads(raw)
        except (TypeError, ValueError):
            return None
        if not isinstance(entry, dict):
            return None
        if time.time() - float(entry.get("time") or 0) > self.ttl:
            return None
        return entry

    def get(self, source: str, dam_id: str) -> dict[str, Any] | None:
        """The entry of one record, or None (never quarantined, removed or expired)."""
        raw = self.redis.hget(self._key(source), dam_id)
        return None if raw is None else self._decode(raw)

    def list(self, source: str, limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Entries of `source`, oldest first; expired entries are dropped on the way."""
        key = self._key(source)
        entries: builtins.list[dict[str, Any]] = []
        expired: builtins.list[Any] = []
        for field, raw in self.redis.hscan_iter(key, count=500):
            entry = self._decode(raw)
            if entry is None:
                expired.append(field)
            else:
                entries.append(entry)
        if expired:
            self.redis.hdel(key, *expired)
        entries.sort(key=lambda e: (e.get("time") or 0, str(e.get("dam_id"))))
        return entries[:limit] if limit is not None else entries

    def remove(self, source: str, dam_id: str) -> bool:
        """Forget one record (it was fixed or deleted); False when it was not there."""
        return bool(self.redis.hdel(self._key(source), dam_id))

    def remove_many(self, source: str, dam_ids: Sequence[str]) -> int:
        return cast(int, self.redis.hdel(self._key(source), *dam_ids)) if dam_ids else 0

    def count(self, source: str) -> int:
        """Entries stored for `source` (expired ones included until the next `list`)."""
        return cast(int, self.redis.hlen(self._key(source)))

    def counts(self) -> dict[str, int]:
        """Per source, how many records are quarantined."""
        sources = sorted(
            s.decode() if isinstance(s, bytes) else str(s)
            for s in self.redis.smembers(self._sources_key())  # type: ignore[union-attr]
        )
        return {s: self.count(s) for s in sources}

    def reasons(self, source: str) -> dict[str, int]:
        """How many entries per reason (for reports)."""
        tally: dict[str, int] = {}
        for entry in self.list(source):
            reason = str(entry.get("reason"))
            tally[reason] = tally.get(reason, 0) + 1
        return tally
