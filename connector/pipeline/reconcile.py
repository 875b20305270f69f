"""Reconciliation: compare the DAM's product assets with the PIM's assets, both in full.

Both sides are streamed page by page into Redis sets (never Python sets: a DAM may hold
millions of assets) and compared with SDIFFSTORE, then the differences are read back
with SSCAN in pages:

- orphans: in the PIM (a family of the source), created by this connector (its code is in
  the source's code → dam id map), but no longer a product asset in the DAM;
- missing: a product asset in the DAM, absent from the PIM (deleted behind our back),
  unless it is in quarantine (counted as `quarantined`: the PIM never had it);
- foreign: in the PIM and not in the DAM, but not created by this connector (left alone).

The DAM side counts every record with an id, also those the adapter could not normalise
(they still exist: a broken sidecar must never delete a live asset). With apply=True the
orphans are counted against `deletion_policy.max_deletions` first (over it: nothing is
deleted, MassDeletionError), then the deletion policy runs on them and a run with the
missing ids (force: their stored hashes would call them "unchanged") is started. Pending direct
product links are counted (`pending_links`) and, with apply=True, tried again.

A reconcile holds the source's run lock (`reconcile:<random>`), renewed page by page: a
sync's pushes would race the comparison (an asset created meanwhile counted missing, one
deleted counted an orphan), so a reconcile refuses a busy source (SourceBusyError) and a
sync started meanwhile is `busy`. The re-queue run takes the lock over, with no gap.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

from connector.pipeline.deletions import apply_to_codes, check_mass_deletion
from connector.pipeline.errors import RECONCILE_LOCK_PREFIX, SourceBusyError
from connector.pipeline.linking import LinkState, SourceOnly, retry_pending
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.fetch import product_family_of
from connector.pipeline.steps.start import start_run
from connector.transform.codes import asset_code

PAGE = 500
WORK_TTL = 6 * 3600
SAMPLE = 20


def _scan(s: Services, key: str, page: int = PAGE) -> Iterator[list[str]]:
    cursor = 0
    while True:
        cursor, members = s.redis.sscan(key, cursor=cursor, count=page)
        if members:
            yield [m.decode() for m in members]
        if cursor == 0:
            return


def reconcile(
    source: str,
    apply: bool = False,
    *,
    allow_mass_deletion: bool = False,
    services: Services | None = None,
    on_locked: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Report (and with apply, repair) the differences between DAM and PIM for `source`.

    With apply, the orphans are counted first: more than `deletion_policy.max_deletions`
    raises MassDeletionError before anything is written, unless `allow_mass_deletion`
    (an operator's decision for this one reconcile)."""
    s = services or get_services()
    config = s.source_config(source)
    families = [f.name for f in s.config.families_of(config)]
    random = secrets.token_hex(4)
    token = RECONCILE_LOCK_PREFIX + random
    holder = s.runs.acquire(source, token, s.sync.run_lock_ttl)
    if holder is not None:
        raise SourceBusyError(source, holder)
    if on_locked is not None:  # the task notes its lock, for the day its process is killed
        on_locked(token)

    def renew() -> None:
        s.runs.renew(source, token, s.sync.run_lock_ttl)

    base = s.keys.of("reconcile", source, random)
    dam_codes, dam_ids = f"{base}:dam", f"{base}:damid"
    temp: list[str] = [dam_codes, dam_ids]
    report: dict[str, Any] = {"source": source, "families": families, "dam_product_assets": 0,
                              "pim_assets": {}, "orphans": 0, "missing": 0, "foreign": 0,
                              "quarantined": 0,
                              "orphan_sample": [], "missing_sample": [], "applied": apply}
    try:
        # DAM side: every product asset's code (selection rules applied to each record).
        dam = s.source(source)
        for page in dam.changed_since(None):
            pipe = s.redis.pipeline()
            for asset in page.assets:
                if product_family_of(s.config, config, asset) is None:
                    continue
                code = asset_code(asset.id, config.code_prefix)
                pipe.sadd(dam_codes, code)
                pipe.hset(dam_ids, code, asset.id)
            for bad in page.bad:
                # A record the adapter could not read (broken sidecar, unparsable date) is
                # still in the DAM: present, never an orphan. Not in `dam_ids`: it is not
                # "missing" either (it is in quarantine).
                if bad.record_id:
                    pipe.sadd(dam_codes, asset_code(bad.record_id, config.code_prefix))
            pipe.expire(dam_codes, WORK_TTL)
            pipe.expire(dam_ids, WORK_TTL)
            pipe.execute()
            renew()
        report["dam_product_assets"] = int(s.redis.scard(dam_codes))

        # PIM side, one set per family.
        pim_sets: dict[str, str] = {}
        for family in families:
            key = f"{base}:pim:{family}"
            pim_sets[family] = key
            temp.append(key)
            batch: list[str] = []
            for item in s.client.list_assets(family):
                batch.append(str(item.get("code")))
                if len(batch) >= PAGE:
                    s.redis.sadd(key, *batch)
                    batch = []
                    renew()
            if batch:
                s.redis.sadd(key, *batch)
            s.redis.expire(key, WORK_TTL)
            report["pim_assets"][family] = int(s.redis.scard(key))

        # Orphans: PIM minus DAM, restricted to codes this connector created. Only
        # counted here: the guard needs the whole number before anything is deleted.
        candidates = 0
        codes_key = s.keys.of("code", source)
        for family, key in pim_sets.items():
            diff = f"{base}:orph:{family}"
            temp.append(diff)
            s.redis.sdiffstore(diff, [key, dam_codes])
            s.redis.expire(diff, WORK_TTL)
            for codes in _scan(s, diff):
                known = s.redis.hmget(codes_key, codes)
                ours = [(c, d.decode()) for c, d in zip(codes, known, strict=True) if d]
                report["foreign"] += len(codes) - len(ours)
                report["orphans"] += len(ours)
                states = s.assets.get_many(source, [d for _, d in ours])
                candidates += sum(
                    1 for _, d in ours if d not in states or states[d].status != "flagged")
                for code, dam_id in ours[: max(0, SAMPLE - len(report["orphan_sample"]))]:
                    report["orphan_sample"].append(
                        {"family": family, "code": code, "dam_id": dam_id})

        # Missing: DAM minus every family of the PIM; quarantined records are known
        # problems (the PIM never had them), reported apart and not re-queued.
        missing, requeue = f"{base}:missing", f"{base}:requeue"
        temp += [missing, requeue]
        s.redis.sdiffstore(missing, [dam_codes, *pim_sets.values()])
        for codes in _scan(s, missing):
            for code, raw in zip(codes, s.redis.hmget(dam_ids, codes), strict=True):
                if raw is None:
                    continue
                dam_id = raw.decode()
                if s.quarantine.get(source, dam_id) is not None:
                    report["quarantined"] += 1
                    continue
                report["missing"] += 1
                s.redis.rpush(requeue, dam_id)
                if len(report["missing_sample"]) < SAMPLE:
                    report["missing_sample"].append({"code": code, "dam_id": dam_id})
        s.redis.expire(requeue, WORK_TTL)
        if apply and report["orphans"]:
            if not allow_mass_deletion:
                pim_total = sum(report["pim_assets"].values()) - report["foreign"]
                check_mass_deletion(s, source, "reconcile", candidates, pim_total, report=report)
            _apply_orphans(s, source, base, families, report)
            renew()
        if apply and report["missing"]:
            started = start_run(
                source, "reconcile", asset_ids=_listed(s, requeue), force=True, services=s,
                lock_token=token,
            )
            report["requeue"] = started.to_dict()

        # Direct product links still pending (product missing, write refused): counted;
        # with apply, tried again now.
        links = LinkState(s.redis, s.keys)
        if apply and links.pending_count(source):
            report["links_retried"] = retry_pending(s, SourceOnly(source))
        report["pending_links"] = links.pending_count(source)
    finally:
        s.redis.delete(*temp)
        s.runs.release(source, token)  # a no-op once the re-queue run took it over
    return report


def _apply_orphans(
    s: Services, source: str, base: str, families: list[str], report: dict[str, Any]
) -> None:
    """The deletion policy on the orphans staged by the counting pass, ≤100 at a time."""
    codes_key = s.keys.of("code", source)
    orphans: list[tuple[str, str]] = []
    for family in families:
        for codes in _scan(s, f"{base}:orph:{family}"):
            known = s.redis.hmget(codes_key, codes)
            orphans += [(family, c) for c, d in zip(codes, known, strict=True) if d]
            while len(orphans) >= 100:
                _merge(report, "deletions", apply_to_codes(source, orphans[:100], services=s))
                orphans = orphans[100:]
    if orphans:
        _merge(report, "deletions", apply_to_codes(source, orphans, services=s))


def _listed(s: Services, key: str, page: int = PAGE) -> Iterator[str]:
    start = 0
    while True:
        items = s.redis.lrange(key, start, start + page - 1)
        if not items:
            return
        yield from (i.decode() for i in items)
        start += page


def _merge(report: dict[str, Any], name: str, counts: dict[str, Any]) -> None:
    target = report.setdefault(name, {})
    for key, value in counts.items():
        if isinstance(value, int):
            target[key] = target.get(key, 0) + value
        elif isinstance(value, list):
            target.setdefault(key, []).extend(value[:20])
