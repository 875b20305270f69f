"""Runs that stopped moving: what they still have to do, queued again.

Why: acks_late, `reject_on_worker_lost` and the broker's visibility timeout redeliver the
message of a task whose worker died, except in one gap. The Redis transport moves a
message from its queue to its table of unacknowledged messages in two steps (a pop, then
a write); a worker killed between the two loses the message for good (kombu#1836,
celery#7950). A run whose chunk, batch or fetch part was lost that way would stay
`running` until its lock expires and then read `abandoned`, its assets never pushed and
its watermark never moved.

A run's work waits in Redis, not in messages: the stored chunks, the cut batches, the
fetch checkpoint (connector.pipeline.runs, steps/slices.py); and every step is
idempotent. So the remedy is to queue the run's unfinished steps again:

- `watch_runs` (beat, every `schedule.WATCH_EVERY` seconds) compares each open run's progress
  signature (chunks and batches cut and done, counters, fetch part) with the one it saw
  before; a run whose signature has not moved for `sync.stall_after` seconds (default
  15 min: longer than the longest retry countdown plus a task's time limit, so a run
  that merely waits is left alone) is resumed, then watched again from that moment.
  A resume that brought no progress (no worker consumes the queues) is followed by the
  next one only after twice the wait, up to MAX_BACKOFF times `stall_after`: a fleet
  whose workers are away for hours does not find a pile of copies when it comes back;
- `resume_run` (also `connector resume RUN_ID`) queues the fetch part the checkpoint
  names when the fetch is not done, a transform for every chunk not done, a push for
  every batch not done; when nothing is left but the run's end (its finisher died), it
  ends the run. A run whose source lock another run took meanwhile is closed as failed:
  two runs of one source never go on at the same time.

A step queued again while its first message still runs (a threshold set too low) costs
duplicate work, never wrong data: the steps are duplicate-safe by design.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from connector.metrics.recorder import field as metric_field
from connector.metrics.recorder import metrics_key
from connector.pipeline.completion import after_task, finish_run
from connector.pipeline.runs import TERMINAL_STATES
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.slices import FetchSlices

log = logging.getLogger(__name__)

#: the newest runs of each source that are looked at (older ones are long over)
WATCHED_RUNS = 5
#: the caller name the watchdog uses in the completion check
WATCHDOG_CALLER = "watchdog"
#: a run resumed n times in a row without progress waits stall_after x 2^n (at most this
#: many times stall_after) before the next resume
MAX_BACKOFF = 16


@dataclass
class Resumed:
    """What resuming one run did."""

    run_id: str
    source: str
    reason: str
    fetch_part: int | None = None           # the fetch part queued again
    chunks: list[str] = field(default_factory=list)   # transforms queued again
    batches: list[str] = field(default_factory=list)  # pushes queued again
    ended: bool = False                     # nothing was left but the end: ended now
    closed: str | None = None               # closed as failed instead (why)

    @property
    def queued(self) -> int:
        return len(self.chunks) + len(self.batches) + (self.fetch_part is not None)

    def summary(self) -> str:
        if self.closed:
            return f"closed: {self.closed}"
        if self.ended:
            return "nothing left to do but its end: ended"
        parts = []
        if self.fetch_part is not None:
            parts.append(f"fetch part {self.fetch_part}")
        if self.chunks:
            parts.append(f"{len(self.chunks)} chunk(s)")
        if self.batches:
            parts.append(f"{len(self.batches)} batch(es)")
        return "queued again: " + (", ".join(parts) or "nothing (completion checked)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary()}


def progress_signature(s: Services, run_id: str) -> str:
    """A digest of everything a working run moves: its state, the chunks and batches cut
    and done, its counters, the fetch checkpoint and whether the fetch is done."""
    runs = s.runs
    pipe = s.redis.pipeline(transaction=False)
    pipe.hmget(runs.prefix(run_id), "state", "fetch_done", "flushed", "finisher")
    for name in ("chunks", "chunks_done", "batches", "batches_done"):
        pipe.scard(runs.key(run_id, name))
    pipe.hgetall(runs.key(run_id, "n"))
    pipe.get(runs.key(run_id, "fetch_checkpoint"))
    pipe.hgetall(runs.key(run_id, "attempts"))
    values = pipe.execute()
    counters = sorted((k.decode(), int(v)) for k, v in values[5].items())
    attempts = sorted((k.decode(), int(v)) for k, v in values[7].items())
    flat = [
        [v.decode() if isinstance(v, bytes) else v for v in values[0]],
        values[1:5], counters, values[6].decode() if values[6] else None, attempts,
    ]
    return hashlib.sha256(json.dumps(flat).encode()).hexdigest()[:32]


def watch_runs(
    *, services: Services | None = None, now: float | None = None
) -> list[Resumed]:
    """Resume every open run whose progress has not moved for `sync.stall_after`
    seconds (see the module docstring). Returns what was resumed."""
    s = services or get_services()
    moment = time.time() if now is None else now
    stall_after = s.sync.stall_after
    resumed: list[Resumed] = []
    for source in s.config.sources:
        for run_id in s.runs.run_ids(source.name, limit=WATCHED_RUNS):
            try:
                record = s.runs.get(run_id)
            except Exception:  # expired between the index and the record
                continue
            if record.state in TERMINAL_STATES:
                continue
            signature = progress_signature(s, run_id)
            prefix = s.runs.prefix(run_id)
            seen_sig, seen_at, quiet_resumes = s.redis.hmget(
                prefix, "watch_sig", "watch_at", "watch_resumes")
            if seen_sig is None or seen_sig.decode() != signature or seen_at is None:
                # it moved (or is seen for the first time): watched from now, no backoff
                s.redis.hset(prefix, mapping={"watch_sig": signature, "watch_at": repr(moment),
                                              "watch_resumes": 0})
                continue
            still = moment - float(seen_at)
            resumes = int(quiet_resumes or 0)
            if still < stall_after * min(2 ** resumes, MAX_BACKOFF):
                continue
            outcome = resume_run(
                run_id, reason=f"no progress for {still:.0f} s (sync.stall_after "
                f"{stall_after:g} s)", services=s, by="watchdog",
            )
            # watched again from now; a resume that brought no progress is followed by the
            # next one only after twice the wait (workers away: no pile of copies)
            s.redis.hset(prefix, mapping={
                "watch_sig": progress_signature(s, run_id), "watch_at": repr(moment),
                "watch_resumes": resumes + 1})
            resumed.append(outcome)
    return resumed


def resume_run(run_id: str, *, reason: str = "asked by an operator",
               services: Services | None = None, by: str = "operator") -> Resumed:
    """Queue again what run `run_id` has not done (see the module docstring); `by`
    (operator | watchdog) labels the `connector_runs_resumed_total` metric."""
    s = services or get_services()
    record = s.runs.get(run_id)
    out = Resumed(run_id, record.source, reason)
    if record.state in TERMINAL_STATES:
        out.closed = f"the run is already over ({record.state})"
        return out
    holder = s.runs.holder(record.source)
    if holder is None:
        holder = s.runs.acquire(record.source, run_id, s.sync.run_lock_ttl)
    elif holder == run_id:
        s.runs.renew(record.source, run_id, s.sync.run_lock_ttl)
        holder = None
    if holder is not None:
        out.closed = (f"run {run_id} stalled ({reason}) and its source lock is held by "
                      f"{holder}: closed as failed, its watermark unchanged")
        s.runs.add_error(run_id, out.closed, fatal=True)
        s.runs.finalize(run_id, overlap=s.sync.watermark_overlap, advance_watermark=False)
        log.warning("run %s: %s", run_id, out.closed)
        return out

    runs = s.runs
    if not record.fetch_done:
        out.fetch_part = FetchSlices(s, run_id).load().part
    chunks = _unfinished(s, runs.key(run_id, "chunks"), runs.key(run_id, "chunks_done"))
    batches = _unfinished(s, runs.key(run_id, "batches"), runs.key(run_id, "batches_done"))
    out.chunks, out.batches = chunks, batches
    finisher = s.redis.hget(runs.prefix(run_id), "finisher")
    if out.queued == 0 and finisher is not None:
        out.ended = True  # its finisher died after claiming the end
    runs.count(run_id, "resumed")
    # written at once, like runs_started: the CLI process exits before a periodic flush
    s.redis.hincrbyfloat(metrics_key(s.keys), metric_field("runs_resumed", record.source, by), 1)
    runs.add_error(run_id, f"resumed: {reason}; {out.summary()}", fatal=False)
    log.warning("run %s (%s) resumed: %s; %s", run_id, record.source, reason, out.summary())

    if out.fetch_part is not None:
        s.enqueuer.fetch(record.source, run_id, out.fetch_part)
    for chunk_id in chunks:
        s.enqueuer.transform(run_id, chunk_id, _is_media(s, run_id, chunk_id))
    for batch_id in batches:
        s.enqueuer.push(run_id, batch_id)
    if out.ended:
        finish_run(s, run_id)
    elif out.queued == 0:
        after_task(s, run_id, WATCHDOG_CALLER)  # flush the buffers, or end the run
    return out


def _unfinished(s: Services, all_key: str, done_key: str) -> list[str]:
    ids = {m.decode() for m in s.redis.sdiff(all_key, done_key)}
    return sorted(ids, key=lambda i: (len(i), i))


def _is_media(s: Services, run_id: str, chunk_id: str) -> bool:
    body = s.runs.load_chunk(run_id, chunk_id)
    if body is None:
        return False  # expired: the transform step says so in the run
    return bool(json.loads(body).get("media"))
