"""Dry runs: what a run would write, planned and kept with the run, never carried out.

A dry run's transform step plans (see `Transformer.plan`) and records here the side
effects the real run would have: distinct option creations (by family/attribute/code),
distinct uploads (by content sha256: the real run uploads each content once), deletions
and quarantined records. Counting uses Redis sets, so a replayed task counts nothing
twice; a bounded sample keeps the details for the report. Its push step reads each
asset from the PIM and keeps value-level differences (`value_differences`). Every key
lives under the run's own prefix (``run:<id>:plan:…``, ``run:<id>:diff``): a dry run
changes no other state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from connector.redis_conn import Keys
from connector.transform.codes import asset_code
from connector.transform.result import Quarantined, Skipped, TransformedAsset

if TYPE_CHECKING:  # runs (bookkeeping) imports this module: no run-time cycle back
    from connector.dam.base import DamAsset
    from connector.pipeline.runs import RunRecord, SyncRedis
    from connector.pipeline.services import Services, TransformerLike

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

    def __init__(self, redis_client: SyncRedis, keys: Keys) -> None:
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


def quarantine_effect(entry: Quarantined) -> dict[str, Any]:
    """The planned effect of quarantining a record (a dry run leaves the store alone)."""
    where = f"field {entry.field}: " if entry.field else ""
    return {"effect": "quarantine", "dam_id": entry.dam_id, "family": entry.family,
            "field": entry.field, "reason": entry.reason,
            "text": f"would quarantine DAM {entry.dam_id}: {where}{entry.reason}"}


def plan_deletions(s: Services, record: RunRecord, dam_ids: list[str]) -> None:
    """A dry run's deletions: what the source's deletion policy would do, reported (with
    the run's counts and planned side effects), never applied."""
    policy = s.source_config(record.source).deletion_policy
    ids = list(dict.fromkeys(dam_ids))
    if policy.action == "ignore":
        s.runs.transition(record.run_id, [(f"del:{d}", "deletion_ignored") for d in ids])
        return
    known = s.assets.get_many(record.source, ids)
    prefix = s.source_config(record.source).code_prefix
    effects: list[dict[str, Any]] = []
    for dam_id in ids:
        state = known.get(dam_id)
        code = state.code if state is not None else asset_code(dam_id, prefix)
        target = f"{state.family}/{code}" if state is not None else code
        verb = "delete" if policy.action == "delete" else "flag"
        text = f"would {verb} {target} (DAM {dam_id} is gone)"
        if policy.action == "flag":
            text += f": {policy.attribute} = {policy.value!r}"
        if state is None:
            text += " if the PIM has it"
        effects.append({"effect": "delete", "dam_id": dam_id, "action": policy.action,
                        "family": state.family if state else None, "code": code,
                        "text": text})
    PlanStore(s.redis, s.keys).record(record.run_id, effects)
    s.runs.transition(record.run_id, [(f"del:{d}", "deleted") for d in ids])


def plan_chunk(
    s: Services, record: RunRecord, transformer: TransformerLike, assets: Sequence[DamAsset]
) -> list[TransformedAsset | Quarantined | Skipped]:
    """A dry run's transform: plan only (no option created, no file uploaded, nothing
    recorded) and keep the planned side effects with the run for its report."""
    from connector.transform.plan import PlannedAsset

    results: list[TransformedAsset | Quarantined | Skipped] = []
    effects: list[dict[str, Any]] = []
    for asset in assets:
        planned = transformer.plan(asset)
        if isinstance(planned, PlannedAsset):
            effects += planned.effects()
            planned.close()
            results.append(planned.asset)
        else:
            results.append(planned)
    PlanStore(s.redis, s.keys).record(record.run_id, effects)
    return results


def _comparable(values: dict[str, Any]) -> dict[str, dict[tuple[Any, Any], Any]]:
    """attribute → (locale, channel) → data, lists sorted: comparable whatever the order."""
    out: dict[str, dict[tuple[Any, Any], Any]] = {}
    for attribute, entries in (values or {}).items():
        for entry in entries or []:
            data = entry.get("data")
            if isinstance(data, list):
                data = sorted(data, key=str)
            out.setdefault(attribute, {})[(entry.get("locale"), entry.get("channel"))] = data
    return out


def value_differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[dict[str, Any]]:
    """Value-level differences our PATCH would make (attributes we do not send are kept
    by the PIM's merge, so only ours are compared)."""
    mine, pim = _comparable(ours), _comparable(theirs)
    diffs: list[dict[str, Any]] = []
    for attribute, entries in sorted(mine.items()):
        for (locale, channel), data in entries.items():
            before = pim.get(attribute, {}).get((locale, channel))
            if before != data:
                diffs.append(
                    {"attribute": attribute, "locale": locale, "channel": channel,
                     "pim": before, "dam": data}
                )
    return diffs


DIFFS_KEPT = 1000


def dry_run_batch(
    s: Services, record: RunRecord, family: str, assets: Sequence[TransformedAsset]
) -> None:
    """A dry run's push: read each asset from the PIM, count what the PATCH would do and
    keep (up to DIFFS_KEPT) its value-level differences for `dry_run_differences`."""
    transitions: list[tuple[str, str]] = []
    diff_key = s.runs.key(record.run_id, "diff")
    for asset in assets:
        existing = s.client.get_asset(family, asset.code)
        if existing is None:  # every value it would set, from nothing
            transitions.append((asset.dam_id, "created"))
            diff: dict[str, Any] = {"action": "create", "code": asset.code, "family": family,
                                    "differences": value_differences(asset.values, {})}
        else:
            diffs = value_differences(asset.values, existing.get("values") or {})
            transitions.append((asset.dam_id, "updated" if diffs else "unchanged"))
            diff = {"action": "update" if diffs else "none", "code": asset.code,
                    "family": family, "differences": diffs}
        if diff["action"] != "none" and s.redis.hlen(diff_key) < DIFFS_KEPT:
            s.redis.hset(diff_key, asset.dam_id, json.dumps(diff))
            s.redis.expire(diff_key, 7 * 24 * 3600)
    s.runs.transition(record.run_id, transitions)
