"""A fetch in slices: where a run's fetch stopped, and which of its chunks were sent.

Why: a fetch that streams a large DAM for an hour outlives RabbitMQ's `consumer_timeout`
(30 min by default: the broker closes the channel and redelivers the task while it still
runs) and stretches the Redis transport's visibility timeout. So the fetch step reads DAM
pages for at most `sync.fetch_slice_seconds`, saves the listing's position here (the
`DamSource.changed_pages` resume token, the chunk sequence) and queues its continuation:
the same task with the run id and the next part number, nothing else.

Duplicate-safe (every task may run twice):
- the checkpoint moves from part N to N + 1 by compare-and-set: of two deliveries of part
  N, one saves the position and queues part N + 1, the other queues nothing;
- a delivery of a part that is behind the checkpoint (part N again after N + 1 was
  queued) does nothing: the continuation owns the listing;
- a chunk is queued once: a replayed part re-creates the same chunk ids (the sequence
  is in the checkpoint) and skips those already sent or done.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from connector.pipeline.runs import WORK_TTL
from connector.pipeline.services import Services

# KEYS[1] the checkpoint (a string); ARGV[1] the part expected, ARGV[2] the new checkpoint
_ADVANCE = """
local current = redis.call('GET', KEYS[1])
local part = 0
if current then part = cjson.decode(current)['part'] end
if tostring(part) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class FetchCheckpoint:
    """Where part `part` of a run's fetch starts."""

    part: int = 0
    resume: str | None = None      # DamSource.changed_pages token (None: from the start)
    id_pages: int = 0              # runs of explicit ids: id pages already read
    sequence: int = 0              # next chunk number
    bad_sequence: int = 0          # next number for bad records without an id


class FetchSlices:
    """The checkpoint of one run's fetch and its sent chunks, in the run's Redis keys."""

    def __init__(self, s: Services, run_id: str) -> None:
        self.s = s
        self.run_id = run_id
        self.key = s.runs.key(run_id, "fetch_checkpoint")
        self.sent_key = s.runs.key(run_id, "chunks_sent")

    def load(self) -> FetchCheckpoint:
        raw = self.s.redis.get(self.key)
        if raw is None:
            return FetchCheckpoint()
        return FetchCheckpoint(**json.loads(raw))

    def advance(self, expected_part: int, following: FetchCheckpoint) -> bool:
        """Save `following` (part expected_part + 1) if the checkpoint is still at
        `expected_part`; False when another delivery of that part got there first."""
        moved = self.s.redis.eval(
            _ADVANCE, 1, self.key, str(expected_part), json.dumps(asdict(following)),
            str(WORK_TTL),
        )
        return bool(moved)

    def chunk_sent(self, chunk_id: str) -> bool:
        """Whether an earlier delivery of this fetch already queued the chunk."""
        return bool(self.s.redis.sismember(self.sent_key, chunk_id))

    def mark_sent(self, chunk_id: str) -> None:
        """After the chunk's task is queued (a crash in between queues it once more:
        harmless, a transform is idempotent; never zero times)."""
        pipe = self.s.redis.pipeline()
        pipe.sadd(self.sent_key, chunk_id)
        pipe.expire(self.sent_key, WORK_TTL)
        pipe.execute()
