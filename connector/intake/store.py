"""Redis state of real-time intake for one source: the event log, coalescing sets, batches.

Kept whole (~460 lines, ~100 of them Lua): the key layout below, the scripts that move
entries between those keys and the methods that call them are one contract, read together.

Keys (all through `Keys`, `<s>` = source name):
  intake:log:<s>            stream, one entry per accepted delivery (audit trail, capped)
  intake:pending:<s>        zset asset id → first-seen time: what the next flush takes
  intake:deleted:<s>        set of pending ids whose latest event is a deletion
  intake:records:<s>        hash asset id → latest full record carried by an event
  intake:delivery:<s>:<id>  delivery ids already recorded (SET NX with TTL)
  intake:guard:<s>          one delayed flush per window (SET NX PX)
  intake:guardnow:<s>       one immediate flush while a full batch waits
  intake:batch:<s>:<b>      hash asset id → "u:<score>" / "d:<score>" of an in-flight batch
  intake:batchrec:<s>:<b>   records travelling with batch <b>
  intake:batches:<s>        zset batch id → lease deadline (heartbeat extends it)
  intake:parked:<s>         stream of messages that could not be read, with the reason
  intake:failed:<s>         hash asset id → why its flush failed for good
  intake:metrics            hash of counters "<name>|<source>|<label>"
  intake:sources            set of sources that ever recorded an event

Every transition is one Lua script, so a crash between two commands cannot lose an event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from connector.config.model import RealtimeConfig
from connector.intake.events import Event
from connector.redis_conn import Keys

PARKED_MAXLEN = 10_000
PARKED_RAW_MAX = 64 * 1024

# schedule codes returned by RECORD / ENSURE
NO_FLUSH = 0
FLUSH_LATER = 1
FLUSH_NOW = 2

_ENSURE = """
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then
  if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return {n, 2} end
elseif n > 0 then
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {n, 1} end
end
return {n, 0}
"""

# KEYS: log pending deleted records dedupe guard guardnow metrics sources
# ARGV: source via dedupe_ttl now maxlen events_json batch_size window_ms now_ms
#       label n (action id record)*n
_RECORD = """
local via = ARGV[2]
local label = '|' .. ARGV[1] .. '|' .. via
redis.call('HINCRBY', KEYS[8], 'received' .. label, 1)
if tonumber(ARGV[3]) > 0 then
  if not redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[3]) then
    redis.call('HINCRBY', KEYS[8], 'duplicate' .. label, 1)
    return {0, redis.call('ZCARD', KEYS[2]), 0}
  end
end
local n = tonumber(ARGV[11])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*',
           'via', via, 'delivery', ARGV[10], 'events', ARGV[6], 'at', ARGV[4])
for i = 0, n - 1 do
  local action = ARGV[12 + i * 3]
  local id = ARGV[13 + i * 3]
  local rec = ARGV[14 + i * 3]
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], id)
  if action == 'delete' then
    redis.call('SADD', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
  else
    redis.call('SREM', KEYS[3], id)
    if rec ~= '' then redis.call('HSET', KEYS[4], id, rec) end
  end
end
redis.call('HINCRBY', KEYS[8], 'accepted' .. label, 1)
redis.call('HINCRBY', KEYS[8], 'events' .. label, n)
redis.call('SADD', KEYS[9], ARGV[1])
local pending = redis.call('ZCARD', KEYS[2])
if pending >= tonumber(ARGV[7]) then
  if redis.call('SET', KEYS[7], '1', 'NX', 'PX', ARGV[9]) then return {1, pending, 2} end
elseif pending > 0 then
  if redis.call('SET', KEYS[6], '1', 'NX', 'PX', ARGV[8]) then return {1, pending, 1} end
end
return {1, pending, 0}
"""

# KEYS: pending deleted records batch batchrec batches guardnow
# ARGV: batch_id limit deadline
_TAKE = """
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
  return redis.call('HGETALL', KEYS[4])
end
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
if #ids == 0 then return {} end
for i = 1, #ids, 2 do
  local id, score = ids[i], ids[i + 1]
  local action = 'u'
  if redis.call('SREM', KEYS[2], id) == 1 then action = 'd' end
  redis.call('HSET', KEYS[4], id, action .. ':' .. score)
  local rec = redis.call('HGET', KEYS[3], id)
  if rec then
    redis.call('HSET', KEYS[5], id, rec)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('DEL', KEYS[7])
return redis.call('HGETALL', KEYS[4])
"""

# KEYS: pending deleted records batches
# ARGV: now batch_prefix batchrec_prefix
_RECOVER = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1])
local restored = 0
for _, b in ipairs(expired) do
  local bkey = ARGV[2] .. b
  local rkey = ARGV[3] .. b
  local entries = redis.call('HGETALL', bkey)
  for i = 1, #entries, 2 do
    local id, val = entries[i], entries[i + 1]
    if not redis.call('ZSCORE', KEYS[1], id) then
      redis.call('ZADD', KEYS[1], string.sub(val, 3), id)
      if string.sub(val, 1, 1) == 'd' then redis.call('SADD', KEYS[2], id) end
      local rec = redis.call('HGET', rkey, id)
      if rec then redis.call('HSETNX', KEYS[3], id, rec) end
      restored = restored + 1
    end
  end
  redis.call('DEL', bkey, rkey)
  redis.call('ZREM', KEYS[4], b)
end
return restored
"""


@dataclass
class RecordResult:
    accepted: bool            # False: a repeated delivery id, nothing recorded
    pending: int              # assets now waiting for a flush
    schedule: int             # NO_FLUSH / FLUSH_LATER / FLUSH_NOW


@dataclass
class Batch:
    """Assets taken by one flush; `upserts`/`deletes` are disjoint."""

    id: str
    upserts: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.upserts) + len(self.deletes)


class IntakeStore:
    """Redis state of one source's intake (see the module docstring for the keys)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        source: str,
        realtime: RealtimeConfig | None = None,
    ) -> None:
        self.redis = client
        self.keys = keys
        self.source = source
        self.realtime = realtime or RealtimeConfig()
        self._record = client.register_script(_RECORD)
        self._ensure = client.register_script(_ENSURE)
        self._take = client.register_script(_TAKE)
        self._recover = client.register_script(_RECOVER)

    # ------------------------------------------------------------ key names
    def key(self, *parts: str) -> str:
        return self.keys.of("intake", *parts)

    @property
    def log_key(self) -> str:
        return self.key("log", self.source)

    @property
    def pending_key(self) -> str:
        return self.key("pending", self.source)

    @property
    def deleted_key(self) -> str:
        return self.key("deleted", self.source)

    @property
    def records_key(self) -> str:
        return self.key("records", self.source)

    @property
    def batches_key(self) -> str:
        return self.key("batches", self.source)

    @property
    def parked_key(self) -> str:
        return self.key("parked", self.source)

    @property
    def failed_key(self) -> str:
        return self.key("failed", self.source)

    @property
    def metrics_key(self) -> str:
        return self.keys.of("intake", "metrics")

    @property
    def sources_key(self) -> str:
        return self.keys.of("intake", "sources")

    def batch_key(self, batch_id: str) -> str:
        return self.key("batch", self.source, batch_id)

    def batchrec_key(self, batch_id: str) -> str:
        return self.key("batchrec", self.source, batch_id)

    # ------------------------------------------------------------ recording
    def record(
        self,
        events: Sequence[Event],
        *,
        via: str,
        delivery_id: str | None = None,
        dedupe_ttl: int = 0,
        now: float | None = None,
    ) -> RecordResult:
        """Append `events` (one delivery) atomically; a repeated delivery id records nothing."""
        now = time.time() if now is None else now
        use_dedupe = bool(delivery_id) and dedupe_ttl > 0
        dedupe_key = self.key("delivery", self.source, delivery_id or "-")
        log_entry = json.dumps([[e.action, e.asset_id] for e in events], separators=(",", ":"))
        args: list[Any] = [
            self.source,
            via,
            dedupe_ttl if use_dedupe else 0,
            repr(now),
            self.realtime.log_maxlen,
            log_entry,
            self.realtime.batch_size,
            max(1, int(self.realtime.window * 1000)),
            max(1, min(1000, int(self.realtime.window * 1000))),
            delivery_id or "",
            len(events),
        ]
        for e in events:
            rec = json.dumps(e.record, separators=(",", ":")) if e.record is not None else ""
            args.extend((e.action, e.asset_id, rec))
        keys = [
            self.log_key,
            self.pending_key,
            self.deleted_key,
            self.records_key,
            dedupe_key,
            self.key("guard", self.source),
            self.key("guardnow", self.source),
            self.metrics_key,
            self.sources_key,
        ]
        accepted, pending, schedule = self._record(keys=keys, args=args)
        return RecordResult(bool(accepted), int(pending), int(schedule))

    def ensure_flush(self) -> int:
        """Claim the right to schedule a flush for what is pending (FLUSH_NOW/LATER) or not."""
        window_ms = max(1, int(self.realtime.window * 1000))
        _, code = self._ensure(
            keys=[
                self.pending_key,
                self.key("guard", self.source),
                self.key("guardnow", self.source),
            ],
            args=[self.realtime.batch_size, window_ms, min(1000, window_ms)],
        )
        return int(code)

    def count(self, name: str, by: int = 1, *labels: str) -> None:
        """Bump a fleet-wide counter, e.g. `count("pushed", 12)` after a flush."""
        self.redis.hincrby(self.metrics_key, "|".join((name, self.source, *labels)), by)

    def reject(self, via: str, reason: str) -> None:
        """Count a refused delivery in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.metrics_key, f"received|{self.source}|{via}", 1)
        pipe.hincrby(self.metrics_key, f"rejected|{self.source}|{via}|{reason}", 1)
        pipe.execute()

    def ignore(self, via: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.metrics_key, f"received|{self.source}|{via}", 1)
        pipe.hincrby(self.metrics_key, f"ignored|{self.source}|{via}", 1)
        pipe.execute()

    def park(
        self, via: str, reason: str, raw: bytes | str, meta: dict[str, str] | None = None
    ) -> None:
        """Keep an unreadable message with its reason (so it can be inspected), then count it."""
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        fields: dict[str, Any] = {
            "via": via,
            "reason": reason,
            "at": repr(time.time()),
            "raw": data[:PARKED_RAW_MAX],
            **(meta or {}),
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.xadd(self.parked_key, cast(Any, fields), maxlen=PARKED_MAXLEN, approximate=True)
        pipe.hincrby(self.metrics_key, f"received|{self.source}|{via}", 1)
        pipe.hincrby(self.metrics_key, f"rejected|{self.source}|{via}|malformed", 1)
        pipe.sadd(self.sources_key, self.source)
        pipe.execute()

    def parked(self, count: int = 100) -> list[dict[str, str]]:
        out = []
        for entry_id, fields in cast(list[Any], self.redis.xrange(self.parked_key, count=count)):
            item = {_s(k): _s(v) for k, v in fields.items()}
            item["id"] = _s(entry_id)
            out.append(item)
        return out

    # ------------------------------------------------------------ flushing
    def take_batch(self, batch_id: str, limit: int | None = None) -> Batch | None:
        """Move ≤ `limit` pending ids into batch `batch_id` (or resume that batch if it exists)."""
        limit = limit or self.realtime.batch_size
        deadline = time.time() + self.realtime.batch_lease
        flat = self._take(
            keys=[
                self.pending_key,
                self.deleted_key,
                self.records_key,
                self.batch_key(batch_id),
                self.batchrec_key(batch_id),
                self.batches_key,
                self.key("guardnow", self.source),
            ],
            args=[batch_id, limit, repr(deadline)],
        )
        if not flat:
            return None
        return self._batch_from(batch_id, flat)

    def get_batch(self, batch_id: str) -> Batch | None:
        """Batch `batch_id` as it stands (None: completed, failed or recovered)."""
        entries = cast(dict[bytes, bytes], self.redis.hgetall(self.batch_key(batch_id)))
        flat = [x for pair in entries.items() for x in pair]
        return self._batch_from(batch_id, flat) if flat else None

    def _batch_from(self, batch_id: str, flat: list[Any]) -> Batch:
        batch = Batch(batch_id)
        entries = sorted(
            ((_s(flat[i]), _s(flat[i + 1])) for i in range(0, len(flat), 2)),
            key=lambda kv: float(kv[1][2:]),
        )
        for asset_id, value in entries:
            (batch.deletes if value.startswith("d") else batch.upserts).append(asset_id)
        recs = cast(dict[bytes, bytes], self.redis.hgetall(self.batchrec_key(batch_id)))
        for rec_id, rec in recs.items():
            try:
                batch.records[_s(rec_id)] = json.loads(rec)
            except ValueError:
                continue
        return batch

    def heartbeat(self, batch_id: str) -> None:
        """Extend the lease of a live batch (only if it still exists)."""
        deadline = time.time() + self.realtime.batch_lease
        self.redis.zadd(self.batches_key, {batch_id: deadline}, xx=True)

    def complete(self, batch_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.batch_key(batch_id), self.batchrec_key(batch_id))
        pipe.zrem(self.batches_key, batch_id)
        pipe.execute()

    def fail(self, batch: Batch, reason: str) -> None:
        """Give up on a batch: its ids go to the failed hash (the poll reconciles them)."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=True)
        for asset_id in (*batch.upserts, *batch.deletes):
            action = "delete" if asset_id in batch.deletes else "upsert"
            pipe.hset(
                self.failed_key,
                asset_id,
                json.dumps({"action": action, "reason": reason[:500], "at": now}),
            )
        pipe.delete(self.batch_key(batch.id), self.batchrec_key(batch.id))
        pipe.zrem(self.batches_key, batch.id)
        pipe.hincrby(self.metrics_key, f"failed|{self.source}|", len(batch))
        pipe.execute()

    def failed(self) -> dict[str, dict[str, Any]]:
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.failed_key))
        return {_s(k): json.loads(v) for k, v in raw.items()}

    def recover_expired(self, now: float | None = None) -> int:
        """Put the ids of batches whose lease ran out back to pending (newer events win)."""
        now = time.time() if now is None else now
        return int(
            self._recover(
                keys=[self.pending_key, self.deleted_key, self.records_key, self.batches_key],
                args=[
                    repr(now),
                    self.key("batch", self.source, ""),
                    self.key("batchrec", self.source, ""),
                ],
            )
        )

    def next_lease_expiry(self) -> float | None:
        """Seconds until the oldest in-flight batch's lease runs out (None: no batch)."""
        first = cast(list[Any], self.redis.zrange(self.batches_key, 0, 0, withscores=True))
        if not first:
            return None
        return max(0.0, float(first[0][1]) - time.time())

    # ------------------------------------------------------------ inspection
    def pending_count(self) -> int:
        return int(cast(int, self.redis.zcard(self.pending_key)))

    def pending_ids(self) -> list[str]:
        return [_s(x) for x in cast(list[bytes], self.redis.zrange(self.pending_key, 0, -1))]

    def deleted_ids(self) -> set[str]:
        return {_s(x) for x in cast(set[bytes], self.redis.smembers(self.deleted_key))}

    def in_flight_count(self) -> int:
        total = 0
        for b in cast(list[bytes], self.redis.zrange(self.batches_key, 0, -1)):
            total += int(cast(int, self.redis.hlen(self.batch_key(_s(b)))))
        return total

    def log_length(self) -> int:
        return int(cast(int, self.redis.xlen(self.log_key)))


def known_sources(client: redis.Redis, keys: Keys) -> set[str]:
    members = cast(set[bytes], client.smembers(keys.of("intake", "sources")))
    return {_s(s) for s in members}


def read_counters(client: redis.Redis, keys: Keys) -> dict[str, int]:
    raw = cast(dict[bytes, bytes], client.hgetall(keys.of("intake", "metrics")))
    return {_s(k): int(v) for k, v in raw.items()}


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
