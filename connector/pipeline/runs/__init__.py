"""Run bookkeeping in Redis: lock, run record, idempotent counts, batching and completion.

Why not a Celery chord: chords on Redis lose their body when parts are redelivered or a
counter expires. Everything here is duplicate-safe instead, so any task may run twice
(acks_late redelivery after a crash) without double-counting or losing the run's end:

- per-asset *states* (hash dam id → state) with counters moved by one Lua script; a state
  only moves forward (seen → pending → a final state), so a replay changes nothing;
- *sets* of expected and finished chunk ids and batch ids (SADD is idempotent);
- the per-family *pending buffer*: assets are appended only on their first move to
  `pending`, and full batches of `push_batch_size` are cut atomically in Lua, so requests
  are filled across chunk boundaries;
- the completion check (one Lua script run after every task): "fetch done ∧ all chunks
  done" → one caller (SET NX) flushes the remainders into last batches; "… ∧ all batches
  done" → one caller (SET NX) is the finisher. The same caller identity gets the same
  answer again on a replay, so a crash between "claimed" and "acted" is repaired by the
  redelivered task.

The keys a script touches beyond its KEYS are derived from the run's key prefix (one Redis
server, not Redis Cluster).
"""

from connector.pipeline.runs.record import (
    FINAL_REPORT_STATES,
    TERMINAL_STATES,
    RunRecord,
    RunState,
    StartResult,
    parse_time,
    utcnow,
)
from connector.pipeline.runs.report import COUNT_NAMES, RunCounts, RunReport
from connector.pipeline.runs.store import (
    ERRORS_KEPT,
    RUN_RECORD_TTL,
    RUNS_KEPT_PER_SOURCE,
    WORK_TTL,
    RunStore,
    SyncRedis,
)

__all__ = [
    "COUNT_NAMES",
    "ERRORS_KEPT",
    "FINAL_REPORT_STATES",
    "RUNS_KEPT_PER_SOURCE",
    "RUN_RECORD_TTL",
    "TERMINAL_STATES",
    "WORK_TTL",
    "RunCounts",
    "RunRecord",
    "RunReport",
    "RunState",
    "RunStore",
    "StartResult",
    "SyncRedis",
    "parse_time",
    "utcnow",
]
