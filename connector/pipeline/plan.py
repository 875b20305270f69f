"""What a dry run would write, kept with the run: options, uploads, deletions, quarantine.

A dry run carries out nothing; its transform step plans (see `Transformer.plan`) and
records here the side effects the real run would have: distinct option creations (by
family/attribute/code), distinct uploads (by content sha256: the real run uploads each
content once), deletions and quarantined records. Counting uses Redis sets, so a replayed
task counts nothing twice; a bounded sample keeps the details for the report. Every key
lives under the run's own prefix (``run:<id>:plan:…``): a dry run changes no other state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from connector.redis_conn import Keys

PLAN_SAMPLE = 100  # planned side effects kept (with details) per run
PLAN_TTL = 2 * 24 * 3600  # the report keeps the sample once the run is over

# effect kind → the field(s) that make two effects the same write
_IDENTITY: dict[str, tuple[str, ...]] = {
    "create_option": ("family", "attribute", "code"),
    "upload_media": ("sha256",),
    "delete": ("dam_id",),
    "quarantine": ("dam_id",),
}
# effect kind → report field counting the distinct writes
COUNT_FIELDS: dict[str, str] = {
    "create_option": "would_create_options",
    "upload_media": "would_upload",
    "delete": "would_delete",
    "quarantine": "would_quarantine",
}


def _identity(effect: dict[str, Any]) -> str:
    fields = _IDENTITY.get(str(effect.get("effect")), ("dam_id",))
    return "/".join(str(effect.get(f)) for f in fields)


class PlanStore:
    """The planned side effects of dry runs, per run."""

    def __init__(self, redis_client: Any, keys: Keys) -> None:
        self.redis = redis_client
        self.keys = keys

    def key(self, run_id: str, *parts: str) -> str:
        return self.keys.of("run", run_id, "plan", *parts)

    def record(self, run_id: str, effects: Iterable[dict[str, Any]]) -> None:
        """Add planned side effects (idempotent: the same write is counted once)."""
        effects = list(effects)
        if not effects:
            return
        sample_key = self.key(run_id, "sample")
        room = PLAN_SAMPLE - int(self.redis.hlen(sample_key))
        pipe = self.redis.pipeline()
        for effect in effects:
            kind = str(effect.get("effect"))
            identity = _identity(effect)
            pipe.sadd(self.key(run_id, kind), identity)
            pipe.expire(self.key(run_id, kind), PLAN_TTL)
            if room > 0:
                pipe.hsetnx(sample_key, f"{kind}:{identity}", json.dumps(effect, default=str))
                room -= 1
        pipe.expire(sample_key, PLAN_TTL)
        pipe.execute()

    def counts(self, run_id: str) -> dict[str, int]:
        """Distinct planned writes per kind, as report fields (would_upload, …)."""
        pipe = self.redis.pipeline()
        for kind in COUNT_FIELDS:
            pipe.scard(self.key(run_id, kind))
        found = pipe.execute()
        return {COUNT_FIELDS[kind]: int(n) for kind, n in zip(COUNT_FIELDS, found, strict=True)}

    def sample(self, run_id: str) -> list[dict[str, Any]]:
        """Up to PLAN_SAMPLE planned side effects, options and uploads first."""
        raw = self.redis.hgetall(self.key(run_id, "sample"))
        order = {kind: i for i, kind in enumerate(COUNT_FIELDS)}
        effects = [json.loads(v) for _, v in sorted(raw.items())]
        return sorted(effects, key=lambda e: order.get(str(e.get("effect")), len(order)))


def dry_run_summary(
    redis_client: Any, keys: Keys, run_id: str, counts: dict[str, int]
) -> dict[str, Any]:
    """The report fields of a dry run: what it would do, in the words of a person."""
    plans = PlanStore(redis_client, keys)
    out: dict[str, Any] = {
        "dry_run": True,
        "would_create": int(counts.get("created") or 0),
        "would_update": int(counts.get("updated") or 0),
    }
    out.update(plans.counts(run_id))
    out["planned"] = plans.sample(run_id)
    return out
