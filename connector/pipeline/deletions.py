"""The per-source deletion policy: what happens in the PIM when a DAM asset disappears.

delete → DELETE the PIM asset; flag → set (or with value None, clear) one attribute;
ignore → leave the PIM alone (counted). The family of a DAM id comes from what the
connector last pushed; for ids it never pushed, each family of the source is tried (a
DELETE of an absent asset is a harmless 404, and a flag is only written where the asset
exists, so a flag never creates an asset).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connector.pim.errors import PermanentPimError
from connector.pipeline.services import Services, get_services
from connector.pipeline.stores import PushedState
from connector.transform.codes import asset_code

BULK = 100


def _targets(s: Services, source: str, dam_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """dam id → candidate (family, code) pairs."""
    known = s.assets.get_many(source, dam_ids)
    families = [f.name for f in s.config.families_of(s.source_config(source))]
    out: dict[str, list[tuple[str, str]]] = {}
    for dam_id in dam_ids:
        state = known.get(dam_id)
        if state is not None:
            out[dam_id] = [(state.family, state.code)]
        else:
            code = asset_code(dam_id)
            out[dam_id] = [(family, code) for family in families]
    return out


def apply_deletions(
    source: str,
    dam_ids: Iterable[str],
    *,
    services: Services | None = None,
    run_id: str | None = None,
    targets: dict[str, list[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """Apply `source`'s deletion policy to DAM ids that no longer exist. Idempotent.

    Returns counts {deleted, flagged, ignored, not_found, failed} and `errors`. Transient
    PIM errors propagate (the caller's task retries; repeating is harmless).
    """
    s = services or get_services()
    policy = s.source_config(source).deletion_policy
    ids = list(dict.fromkeys(dam_ids))
    counts: dict[str, Any] = {"deleted": 0, "flagged": 0, "ignored": 0, "not_found": 0,
                              "failed": 0, "errors": []}
    transitions: list[tuple[str, str]] = []
    if policy.action == "ignore" or not ids:
        counts["ignored"] = len(ids)
        transitions = [(f"del:{d}", "deletion_ignored") for d in ids]
    else:
        found = targets if targets is not None else _targets(s, source, ids)
        for dam_id in ids:
            outcome = (
                _delete(s, found.get(dam_id, []))
                if policy.action == "delete"
                else _flag(s, found.get(dam_id, []), policy.attribute or "", policy.value)
            )
            if isinstance(outcome, str) and outcome in ("deleted", "flagged", "not_found"):
                counts[outcome] += 1
                transitions.append((f"del:{dam_id}", "deleted"))
                _forget(s, source, dam_id, outcome, found.get(dam_id, []), run_id)
            else:
                counts["failed"] += 1
                counts["errors"].append(f"{dam_id}: {outcome}")
                transitions.append((f"del:{dam_id}", "deletion_failed"))
    if run_id is not None and transitions:
        s.runs.transition(run_id, transitions)
    return counts


def _delete(s: Services, candidates: list[tuple[str, str]]) -> str:
    gone = False
    for family, code in candidates:
        try:
            gone = s.client.delete_asset(family, code) or gone
        except PermanentPimError as exc:
            if exc.status == 404:  # unknown family
                continue
            return str(exc)
    return "deleted" if gone else "not_found"


def _flag(s: Services, candidates: list[tuple[str, str]], attribute: str, value: Any) -> str:
    if not attribute:
        return "deletion policy 'flag' needs an attribute"
    for family, code in candidates:
        try:
            if len(candidates) > 1 and s.client.get_asset(family, code) is None:
                continue
            body = {"code": code,
                    "values": {attribute: [{"locale": None, "channel": None, "data": value}]}}
            results = s.client.upsert_assets(family, [body])
        except PermanentPimError as exc:
            if exc.status == 404:
                continue
            return str(exc)
        result = results[0] if results else None
        if result is None or not result.ok:
            return f"{result.status_code if result else '?'} {result.message if result else ''}"
        return "flagged"
    return "not_found"


def _forget(
    s: Services,
    source: str,
    dam_id: str,
    outcome: str,
    candidates: list[tuple[str, str]],
    run_id: str | None,
) -> None:
    """After a deletion: no hash (a re-appearing asset is pushed again), no dead letter."""
    family, code = candidates[0] if candidates else ("", asset_code(dam_id))
    s.assets.record(
        source,
        dam_id,
        PushedState(code=code, family=family, content_hash=None,
                    status="deleted" if outcome != "flagged" else "flagged",
                    result={"deletion": outcome}, run_id=run_id),
    )
    s.dead_letters.remove(source, [dam_id])
    s.quarantine.remove_many(source, [dam_id])


def apply_to_codes(
    source: str, family_codes: list[tuple[str, str]], *, services: Services | None = None
) -> dict[str, Any]:
    """The policy for PIM assets known by (family, code) — reconcile's orphans."""
    s = services or get_services()
    targets: dict[str, list[tuple[str, str]]] = {}
    for family, code in family_codes:
        dam_id = s.assets.dam_id_of(source, code) or code
        targets[dam_id] = [(family, code)]
    return apply_deletions(source, list(targets), services=s, targets=targets)
