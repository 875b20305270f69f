"""RunStore: every run's state in Redis — lock, record, per-asset states, chunks, batches.

See `connector.pipeline.runs` for why each operation is duplicate-safe.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis

from connector.metrics.recorder import field, hincr_all, metrics_key
from connector.pipeline.errors import UnknownRunError
from connector.pipeline.runs import scripts
from connector.pipeline.runs.record import TERMINAL_STATES, RunRecord, RunState, parse_time, utcnow
from connector.pipeline.runs.report import COUNT_NAMES, RunCounts, final_report, run_metrics
from connector.redis_conn import Keys

# redis-py types each command as `T | Awaitable[T]` (sync and asyncio clients share stubs);
# the connector only uses the synchronous client, so its handles are typed loosely.
SyncRedis = Any

RUN_RECORD_TTL = 30 * 24 * 3600  # run records and reports
WORK_TTL = 2 * 24 * 3600  # chunks, batches, states: must outlive the longest run
RUNS_KEPT_PER_SOURCE = 500
ERRORS_KEPT = 50


def _s(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value


class RunStore:
    """All run state of all sources, in one Redis namespace."""

    def __init__(self, redis_client: redis.Redis, keys: Keys) -> None:
        self.redis: SyncRedis = redis_client
        self.keys = keys
        self._transition = redis_client.register_script(scripts.TRANSITION)
        self._enqueue = redis_client.register_script(scripts.ENQUEUE)
        self._complete = redis_client.register_script(scripts.COMPLETE)
        self._renew = redis_client.register_script(scripts.RENEW)
        self._release = redis_client.register_script(scripts.RELEASE)

    # ------------------------------------------------------------------ keys

    def prefix(self, run_id: str) -> str:
        return self.keys.of("run", run_id)

    def key(self, run_id: str, *parts: str) -> str:
        return self.keys.of("run", run_id, *parts)

    def lock_key(self, source: str) -> str:
        return self.keys.of("lock", "run", source)

    def watermark_key(self, source: str) -> str:
        return self.keys.of("watermark", source)

    def index_key(self, source: str) -> str:
        return self.keys.of("runs", source)

    # ------------------------------------------------------------------ lock

    def acquire(self, source: str, run_id: str, ttl: int) -> str | None:
        """Take the source's lock for `run_id`; None when taken, else the holder's run id."""
        if self.redis.set(self.lock_key(source), run_id, nx=True, ex=ttl):
            return None
        holder = _s(self.redis.get(self.lock_key(source)))
        if holder is None:  # expired in between: one more try
            if self.redis.set(self.lock_key(source), run_id, nx=True, ex=ttl):
                return None
            holder = _s(self.redis.get(self.lock_key(source))) or "?"
        return holder

    def hand_over(self, source: str, token: str, run_id: str, ttl: int) -> str | None:
        """The lock held under `token` passes to `run_id` with no gap between them (a
        reconcile → its re-queue run); None when done, else the holder. An expired lock is
        simply taken."""
        key = self.lock_key(source)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                current = _s(pipe.get(key))
                if current is None:
                    pipe.unwatch()
                    return self.acquire(source, run_id, ttl)
                if current != token:
                    pipe.unwatch()
                    return current
                pipe.multi()
                pipe.set(key, run_id, ex=ttl)
                pipe.execute()
                return None
            except redis.WatchError:
                return self.holder(source) or "?"

    def renew(self, source: str, run_id: str, ttl: int) -> bool:
        return bool(self._renew(keys=[self.lock_key(source)], args=[run_id, ttl]))

    def release(self, source: str, run_id: str) -> bool:
        return bool(self._release(keys=[self.lock_key(source)], args=[run_id]))

    def holder(self, source: str) -> str | None:
        return _s(self.redis.get(self.lock_key(source)))

    # ------------------------------------------------------------------ watermark

    def watermark(self, source: str) -> datetime | None:
        return parse_time(_s(self.redis.get(self.watermark_key(source))))

    def set_watermark(self, source: str, moment: datetime) -> None:
        self.redis.set(self.watermark_key(source), moment.astimezone(UTC).isoformat())

    # ------------------------------------------------------------------ records

    @staticmethod
    def new_run_id() -> str:
        return utcnow().strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)

    def create(
        self,
        run_id: str,
        source: str,
        trigger: str,
        *,
        full: bool,
        since: datetime | None,
        asset_ids: Iterable[str] | None,
        force: bool,
        dry_run: bool,
        watermark: datetime | None,
        config_hash: str | None = None,
        config_path: str | None = None,
    ) -> RunRecord:
        """Write the run record (state queued), index it, and store its explicit ids.
        `config_hash`/`config_path`: the config it is started with (workers compare)."""
        now = utcnow()
        fields = {
            "source": source,
            "trigger": trigger,
            "state": RunState.QUEUED,
            "started_at": now.isoformat(),
            "full": "1" if full else "0",
            "since": since.astimezone(UTC).isoformat() if since else "",
            "asset_ids": "1" if asset_ids is not None else "0",
            "force": "1" if force else "0",
            "dry_run": "1" if dry_run else "0",
            "watermark_before": watermark.isoformat() if watermark else "",
            "config_hash": config_hash or "",
            "config_path": config_path or "",
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.prefix(run_id), mapping=fields)
        pipe.expire(self.prefix(run_id), RUN_RECORD_TTL)
        pipe.zadd(self.index_key(source), {run_id: now.timestamp()})
        pipe.zremrangebyrank(self.index_key(source), 0, -RUNS_KEPT_PER_SOURCE - 1)
        pipe.hincrby(metrics_key(self.keys), field("runs_started", source, trigger), 1)
        pipe.execute()
        if asset_ids is not None:  # streamed in slices: the list may be long
            ids_key = self.key(run_id, "ids")
            page: list[str] = []
            for dam_id in asset_ids:
                page.append(dam_id)
                if len(page) >= 1000:
                    self.redis.rpush(ids_key, *page)
                    page = []
            if page:
                self.redis.rpush(ids_key, *page)
            self.redis.expire(ids_key, WORK_TTL)
        return self.get(run_id)

    def get(self, run_id: str) -> RunRecord:
        raw = self.redis.hgetall(self.prefix(run_id))
        if not raw:
            raise UnknownRunError(f"no run {run_id!r} (unknown or expired)")
        return RunRecord.from_hash(run_id, raw)

    def exists(self, run_id: str) -> bool:
        return bool(self.redis.exists(self.prefix(run_id)))

    def set_fields(self, run_id: str, **values: str) -> None:
        self.redis.hset(self.prefix(run_id), mapping=values)

    def mark_running(self, run_id: str) -> None:
        self.redis.hsetnx(self.prefix(run_id), "running_at", utcnow().isoformat())
        # queued → running only; a terminal state is never overwritten
        if _s(self.redis.hget(self.prefix(run_id), "state")) == RunState.QUEUED:
            self.redis.hset(self.prefix(run_id), "state", RunState.RUNNING)

    def add_error(self, run_id: str, message: str, *, fatal: bool) -> None:
        """Note a problem of the run; `fatal` makes the run end as failed."""
        pipe = self.redis.pipeline()
        pipe.rpush(self.key(run_id, "errors"), message[:2000])
        pipe.ltrim(self.key(run_id, "errors"), -ERRORS_KEPT, -1)
        pipe.expire(self.key(run_id, "errors"), RUN_RECORD_TTL)
        if fatal:
            pipe.hsetnx(self.prefix(run_id), "error", message[:2000])
        pipe.execute()

    def errors(self, run_id: str) -> list[str]:
        return [e.decode() for e in self.redis.lrange(self.key(run_id, "errors"), 0, -1)]

    def run_ids(self, source: str, limit: int = 20) -> list[str]:
        return [r.decode() for r in self.redis.zrevrange(self.index_key(source), 0, limit - 1)]

    def asset_ids(self, run_id: str, page: int = 1000, start: int = 0) -> Iterator[list[str]]:
        """The run's explicit asset ids from index `start`, in pages (never the whole list
        in memory)."""
        while True:
            ids = self.redis.lrange(self.key(run_id, "ids"), start, start + page - 1)
            if not ids:
                return
            yield [i.decode() for i in ids]
            start += page

    # ------------------------------------------------------------------ per-asset states

    def transition(self, run_id: str, pairs: Iterable[tuple[str, str]]) -> int:
        """Move assets to states (only forward); counters follow. Returns how many moved."""
        args: list[str] = []
        for member, state in pairs:
            args += [member, state]
        if not args:
            return 0
        return int(
            self._transition(
                keys=[self.key(run_id, "st"), self.key(run_id, "n")], args=[WORK_TTL, *args]
            )
        )

    def state_of(self, run_id: str, member: str) -> str | None:
        return _s(self.redis.hget(self.key(run_id, "st"), member))

    def states_of(self, run_id: str, members: Sequence[str]) -> dict[str, str]:
        """member → state, for the members that have one (one round trip)."""
        if not members:
            return {}
        raws = self.redis.hmget(self.key(run_id, "st"), list(members))
        return {m: str(_s(r)) for m, r in zip(members, raws, strict=True) if r is not None}

    def count(self, run_id: str, name: str, amount: int = 1) -> None:
        """Plain counters (requests, bytes): they count what happened, replays included."""
        self.redis.hincrby(self.key(run_id, "n"), name, amount)

    def counts(self, run_id: str) -> RunCounts:
        """The run's counters: every name of COUNT_NAMES (0 when never moved), and more."""
        raw = self.redis.hgetall(self.key(run_id, "n"))
        out: dict[str, Any] = dict.fromkeys(COUNT_NAMES, 0)
        out.update({k.decode(): int(v) for k, v in raw.items()})
        return cast(RunCounts, out)

    # ------------------------------------------------------------------ chunks

    def store_chunk(self, run_id: str, chunk_id: str, body: str) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self.key(run_id, "c", chunk_id), body, ex=WORK_TTL)
        pipe.sadd(self.key(run_id, "chunks"), chunk_id)
        pipe.expire(self.key(run_id, "chunks"), WORK_TTL)
        pipe.execute()

    def load_chunk(self, run_id: str, chunk_id: str) -> str | None:
        return _s(self.redis.get(self.key(run_id, "c", chunk_id)))

    def chunk_done(self, run_id: str, chunk_id: str) -> bool:
        return bool(self.redis.sismember(self.key(run_id, "chunks_done"), chunk_id))

    def finish_chunk(self, run_id: str, chunk_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.sadd(self.key(run_id, "chunks_done"), chunk_id)
        pipe.expire(self.key(run_id, "chunks_done"), WORK_TTL)
        pipe.delete(self.key(run_id, "c", chunk_id))
        pipe.execute()

    def enqueue_pending(
        self, run_id: str, chunk_id: str, items: Iterable[tuple[str, str, str]], batch_size: int
    ) -> list[str]:
        """Append (dam id, family, payload JSON) to the family buffers; returns the batch ids
        to push: new full batches plus those this chunk cut earlier and that are not done
        (a replayed chunk re-announces them, in case it crashed before enqueuing them)."""
        args: list[str] = [self.prefix(run_id), str(batch_size), str(WORK_TTL)]
        for member, family, payload in items:
            args += [member, family, payload]
        self._enqueue(
            keys=[
                self.key(run_id, "st"),
                self.key(run_id, "n"),
                self.key(run_id, "fams"),
                self.key(run_id, "batches"),
                self.key(run_id, "cb", chunk_id),
            ],
            args=args,
        )
        mine = {b.decode() for b in self.redis.smembers(self.key(run_id, "cb", chunk_id))}
        done = self._batches_done(run_id, mine)
        return sorted(mine - done, key=_batch_order)

    def _batches_done(self, run_id: str, batch_ids: set[str]) -> set[str]:
        if not batch_ids:
            return set()
        ordered = list(batch_ids)
        flags = self.redis.smismember(self.key(run_id, "batches_done"), ordered)
        return {b for b, f in zip(ordered, flags, strict=True) if f}

    # ------------------------------------------------------------------ batches

    def load_batch(self, run_id: str, batch_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key(run_id, "b", batch_id))
        return json.loads(raw) if raw else None

    def rewrite_batch(self, run_id: str, batch_id: str, batch: dict[str, Any]) -> None:
        self.redis.set(self.key(run_id, "b", batch_id), json.dumps(batch), ex=WORK_TTL)

    def next_attempt(self, run_id: str, batch_id: str) -> int:
        """1 for the first push of a batch, then 2, 3, ... (counts redeliveries too)."""
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(run_id, "attempts"), batch_id, 1)
        pipe.expire(self.key(run_id, "attempts"), WORK_TTL)
        return int(pipe.execute()[0])

    def batch_done(self, run_id: str, batch_id: str) -> bool:
        return bool(self.redis.sismember(self.key(run_id, "batches_done"), batch_id))

    def finish_batch(self, run_id: str, batch_id: str) -> None:
        pipe = self.redis.pipeline()
        pipe.sadd(self.key(run_id, "batches_done"), batch_id)
        pipe.expire(self.key(run_id, "batches_done"), WORK_TTL)
        pipe.delete(self.key(run_id, "b", batch_id))
        pipe.execute()

    # ------------------------------------------------------------------ completion

    def set_fetch_done(self, run_id: str) -> None:
        self.redis.hset(self.prefix(run_id), "fetch_done", "1")

    def check_completion(self, run_id: str, caller: str, batch_size: int) -> tuple[str, list[str]]:
        """('wait'|'push'|'finish'|'done', batch ids to push). See the module docstring."""
        answer = self._complete(
            keys=[
                self.prefix(run_id),
                self.key(run_id, "chunks"),
                self.key(run_id, "chunks_done"),
                self.key(run_id, "batches"),
                self.key(run_id, "batches_done"),
                self.key(run_id, "fams"),
                self.key(run_id, "flushb"),
            ],
            args=[self.prefix(run_id), caller, batch_size, WORK_TTL],
        )
        words = [_s(a) or "" for a in answer]
        return words[0], sorted(words[1:], key=_batch_order)

    def progress(self, run_id: str) -> dict[str, int]:
        pipe = self.redis.pipeline()
        for name in ("chunks", "chunks_done", "batches", "batches_done"):
            pipe.scard(self.key(run_id, name))
        chunks, chunks_done, batches, batches_done = pipe.execute()
        return {
            "chunks_total": int(chunks),
            "chunks_done": int(chunks_done),
            "batches_total": int(batches),
            "batches_done": int(batches_done),
        }

    def finalize(
        self, run_id: str, *, overlap: float, advance_watermark: bool
    ) -> RunRecord:
        """Close the run once (idempotent): state, report, watermark, lock."""
        record = self.get(run_id)
        if record.state in TERMINAL_STATES:
            self.release(record.source, run_id)
            return record
        finished = utcnow()
        failed = record.error is not None
        report = final_report(self, record, finished)
        fields = {
            "state": RunState.FAILED if failed else RunState.SUCCEEDED,
            "finished_at": finished.isoformat(),
            "report": json.dumps(report),
        }
        if not failed and advance_watermark:
            candidate = record.started_at - timedelta(seconds=overlap)
            current = self.watermark(record.source)
            new = candidate if current is None or candidate > current else current
            self.set_watermark(record.source, new)
            fields["watermark_after"] = new.isoformat()
        pipe = self.redis.pipeline()  # MULTI: the final state and its metrics, or neither
        pipe.hset(self.prefix(run_id), mapping=fields)
        hincr_all(pipe, run_metrics(self.keys, record, str(fields["state"]), report))
        pipe.execute()
        self.release(record.source, run_id)
        self._cleanup(run_id)
        return self.get(run_id)

    def _cleanup(self, run_id: str) -> None:
        """Drop the bulky per-run work keys early; counts and states expire on their own."""
        fams = [f.decode() for f in self.redis.smembers(self.key(run_id, "fams"))]
        pipe = self.redis.pipeline()
        for fam in fams:
            pipe.delete(self.key(run_id, "pend", fam))
        pipe.delete(self.key(run_id, "ids"))
        pipe.expire(self.key(run_id, "st"), 6 * 3600)
        pipe.execute()


def _batch_order(batch_id: str) -> tuple[int, str]:
    digits = batch_id.lstrip("b")
    return (int(digits) if digits.isdigit() else 0, batch_id)
