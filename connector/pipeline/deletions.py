"""The per-source deletion policy: what happens in the PIM when a DAM asset disappears.

delete → DELETE the PIM asset; flag → set (or with value None, clear) one attribute;
ignore → leave the PIM alone (counted). The family of a DAM id comes from what the
connector last pushed; for ids it never pushed, each family of the source is tried (a
DELETE of an absent asset is a harmless 404, and a flag is only written where the asset
exists, so a flag never creates an asset).

A refusal is never silent: transient answers (429, 5xx, timeouts) are retried with backoff
(Retry-After honoured), one round for all the ids still waiting, up to
`sync.max_retries`; a permanent refusal (403, 405, 422...) or the last transient one
becomes a dead letter of kind `deletion`, counted `deletion_failed`, and waits for
`connector failures retry`. The mass-deletion guard (`deletion_policy.max_deletions`) is
checked by the callers before anything is deleted: `check_mass_deletion`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connector.pim.errors import PermanentPimError, TransientPimError
from connector.pipeline.errors import MassDeletionError
from connector.pipeline.runs import utcnow
from connector.pipeline.services import Services, get_services
from connector.pipeline.stores import DeadLetter, PushedState
from connector.transform.codes import asset_code

BULK = 100


def _targets(s: Services, source: str, dam_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """dam id → candidate (family, code) pairs."""
    known = s.assets.get_many(source, dam_ids)
    config = s.source_config(source)
    families = [f.name for f in s.config.families_of(config)]
    out: dict[str, list[tuple[str, str]]] = {}
    for dam_id in dam_ids:
        state = known.get(dam_id)
        if state is not None:
            out[dam_id] = [(state.family, state.code)]
        else:
            code = asset_code(dam_id, config.code_prefix)
            out[dam_id] = [(family, code) for family in families]
    return out


@dataclass
class Refusal:
    """A deletion (or flag) the PIM did not do: its answer, and whether to try again."""

    status: int | None
    message: str
    transient: bool = False
    retry_after: float | None = None
    family: str = ""
    code: str = ""

    def __str__(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        where = f"{self.family}/{self.code}: " if self.code else ""
        return f"{where}{status}{self.message}".strip()


Outcome = str | Refusal  # "deleted" | "flagged" | "not_found", or why not


def apply_deletions(
    source: str,
    dam_ids: Iterable[str],
    *,
    services: Services | None = None,
    run_id: str | None = None,
    targets: dict[str, list[tuple[str, str]]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Apply `source`'s deletion policy to DAM ids that no longer exist. Idempotent.

    Returns counts {deleted, flagged, ignored, not_found, failed} and `errors`. Transient
    PIM answers are retried here (the others of the batch go on meanwhile); what the PIM
    still refuses is dead-lettered (kind `deletion`) and counted `failed`.
    """
    from connector.retry import backoff_delay

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
        pending, attempt = ids, 1
        while pending:
            waiting: list[tuple[str, Refusal]] = []
            for dam_id in pending:
                candidates = found.get(dam_id, [])
                outcome = (
                    _delete(s, candidates)
                    if policy.action == "delete"
                    else _flag(s, candidates, policy.attribute or "", policy.value)
                )
                if isinstance(outcome, str):
                    counts[outcome] += 1
                    transitions.append((f"del:{dam_id}", "deleted"))
                    _forget(s, source, dam_id, outcome, candidates, run_id)
                elif outcome.transient and attempt < max(1, s.sync.max_retries):
                    waiting.append((dam_id, outcome))
                else:
                    if outcome.transient:
                        outcome.message = (
                            f"gave up after repeated transient PIM failures: {outcome.message}")
                    counts["failed"] += 1
                    counts["errors"].append(f"{dam_id}: {outcome}")
                    transitions.append((f"del:{dam_id}", "deletion_failed"))
                    _dead_letter(s, source, dam_id, outcome, candidates, attempt, run_id)
            if waiting:
                asked = [r.retry_after for _, r in waiting if r.retry_after is not None]
                sleep(backoff_delay(attempt, s.sync.backoff_base, s.sync.backoff_max,
                                    max(asked) if asked else None))
                if run_id is not None:
                    s.runs.renew(source, run_id, s.sync.run_lock_ttl)
            pending = [dam_id for dam_id, _ in waiting]
            attempt += 1
    if run_id is not None and transitions:
        s.runs.transition(run_id, transitions)
    return counts


def _refusal(exc: PermanentPimError | TransientPimError, family: str, code: str) -> Refusal:
    return Refusal(exc.status, exc.message, isinstance(exc, TransientPimError),
                   getattr(exc, "retry_after", None), family, code)


def _delete(s: Services, candidates: list[tuple[str, str]]) -> Outcome:
    gone = False
    for family, code in candidates:
        try:
            gone = s.client.delete_asset(family, code) or gone
        except PermanentPimError as exc:
            if exc.status == 404:  # unknown family
                continue
            return _refusal(exc, family, code)
        except TransientPimError as exc:
            return _refusal(exc, family, code)
    return "deleted" if gone else "not_found"


def _flag(s: Services, candidates: list[tuple[str, str]], attribute: str, value: Any) -> Outcome:
    if not attribute:
        return Refusal(None, "deletion policy 'flag' needs an attribute")
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
            return _refusal(exc, family, code)
        except TransientPimError as exc:
            return _refusal(exc, family, code)
        result = results[0] if results else None
        if result is None:
            return Refusal(None, "the PIM response has no line for this asset", True,
                           None, family, code)
        if not result.ok:
            return Refusal(result.status_code, result.message or "", result.transient,
                           result.retry_after, family, code)
        return "flagged"
    return "not_found"


def _dead_letter(
    s: Services,
    source: str,
    dam_id: str,
    refusal: Refusal,
    candidates: list[tuple[str, str]],
    attempts: int,
    run_id: str | None,
) -> None:
    """A refused deletion waits in the dead-letter store (kind `deletion`) for a retry."""
    family, code = (refusal.family, refusal.code) if refusal.code else (
        candidates[0] if candidates else (
            "", asset_code(dam_id, s.source_config(source).code_prefix)))
    s.dead_letters.add(source, DeadLetter(
        dam_id=dam_id, code=code, family=family, status=refusal.status,
        message=refusal.message, errors=[], attempts=attempts, run_id=run_id,
        at=utcnow().isoformat(), kind="deletion",
    ))


def _forget(
    s: Services,
    source: str,
    dam_id: str,
    outcome: str,
    candidates: list[tuple[str, str]],
    run_id: str | None,
) -> None:
    """After a deletion: no hash (a re-appearing asset is pushed again), no dead letter."""
    family, code = candidates[0] if candidates else (
        "", asset_code(dam_id, s.source_config(source).code_prefix))
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


# ---------------------------------------------------------------------- mass-deletion guard


def guard_message(source: str, what: str, action: str, candidates: int, total: int,
                  count: int, percent: float) -> str:
    """The refusal an operator reads: the numbers, what was done (nothing), what to do."""
    verb, nothing = ("flag", "nothing flagged") if action == "flag" else (
        "delete", "nothing deleted")
    return (
        f"{what} would {verb} {candidates:,} of {total:,} assets of source {source} "
        f"(limit {count:,} or {percent:g} %): {nothing}; check the DAM, or run "
        f"`connector reconcile {source} --apply --allow-mass-deletion` once"
    )


def check_mass_deletion(
    s: Services,
    source: str,
    what: str,
    candidates: int,
    total: int | Callable[[Callable[[int], bool] | None], int],
    *,
    report: dict[str, Any] | None = None,
) -> None:
    """Raise MassDeletionError when `candidates` deletions exceed the source's
    `deletion_policy.max_deletions` (an absolute count, or a share of `total`, the source's
    assets in the PIM). `total` may be a counter taking a stop test, so that a few
    deletions only cost the listing it takes to know they are under the limit."""
    policy = s.source_config(source).deletion_policy
    if policy.action == "ignore" or candidates <= 0:
        return
    limits = policy.max_deletions

    def enough(n: int) -> bool:
        return limits.limit(n) >= candidates

    if isinstance(total, int):
        counted = total
    else:
        counted = total(enough if candidates <= limits.count else None)
    if enough(counted):
        return
    if not isinstance(total, int) and candidates <= limits.count:
        counted = total(None)  # the refusal names the whole number
    raise MassDeletionError(
        guard_message(source, what, policy.action, candidates, counted, limits.count,
                      limits.percent),
        report,
    )


def source_pim_assets(s: Services, source: str, stop: Callable[[int], bool] | None) -> int:
    """How many assets of `source` the PIM holds (codes this connector created, in the
    source's families), listing page by page; stops early once `stop(count)` is true."""
    codes_key = s.keys.of("code", source)
    total = 0
    for family in s.config.families_of(s.source_config(source)):
        page: list[str] = []
        for item in s.client.list_assets(family.name):
            page.append(str(item.get("code")))
            if len(page) >= BULK:
                total += sum(1 for d in s.redis.hmget(codes_key, page) if d is not None)
                page = []
                if stop is not None and stop(total):
                    return total
        if page:
            total += sum(1 for d in s.redis.hmget(codes_key, page) if d is not None)
            if stop is not None and stop(total):
                return total
    return total


def live_deletion_candidates(s: Services, source: str, dam_ids: list[str]) -> int:
    """Of these gone DAM ids, how many the connector holds as live in the PIM (pushed, not
    yet deleted or flagged): what the guard counts for a run's deletion feed."""
    known = s.assets.get_many(source, dam_ids)
    return sum(1 for state in known.values() if state.live)
