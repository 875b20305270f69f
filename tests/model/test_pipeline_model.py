"""A model-based test of the whole pipeline: random sequences of DAM changes, PIM refusals
and connector commands against the real pipeline (sandbox DAM and PIM over HTTP, Redis,
a `celery worker` subprocess), with the data-safety invariants checked after every step
that runs a sync and at quiescence:

- the PIM holds the expected projection of every DAM asset the last syncs covered, computed
  by a tiny independent model of the mapping (`support.expected_values`), except assets
  listed with a reason as quarantined, dead-lettered or pending links;
- a dry run or an explain writes nothing: no PIM request but reads and the token, no
  connector state changed outside the run's own records;
- no asset that is still a product asset in the DAM is deleted from the PIM, and no asset
  is written again with the content the PIM already holds (except where the step asked
  for it: force, retries of dead letters, a killed worker's unacked work);
- a run that left assets behind says so (the CLI's exit code would be 1).

Sizes: CONNECTOR_TEST_SIZE=ci (default) runs a few derandomized examples (a fixed,
repeatable exploration that fits the CI budget); `full` explores many more, with worker
kills.
"""

from __future__ import annotations

import collections
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

from connector.cli.reports import FAILURE_COUNTS
from connector.pipeline import (
    MassDeletionError,
    dead_letters,
    explain,
    quarantine,
    reconcile,
    retry_dead_letters,
    run_report,
    start_run,
    sync_assets_by_id,
)
from tasks import routing
from tests.model import support
from tests.model.support import SKUS, SOURCE, DamRecord, World, expected_code, expected_values

FULL = support.SIZE == "full"
pytestmark = pytest.mark.timeout(1800 if FULL or os.environ.get("MODEL_EXAMPLES") else 240)

NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta", "Épée", "x y"])
WIDTHS = st.integers(min_value=1, max_value=5000)
LANGUAGES = st.sampled_from([None, "fr_FR", "de_DE"])

_world: World | None = None
GUARD = re.compile(r"would (?:delete|flag) ([\d,]+) of ([\d,]+) assets")
STATS: collections.Counter[str] = collections.Counter()  # what the examples did (MODEL_DEBUG)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    """Servers and worker once for the module; every example resets them."""
    global _world
    with support.started_world(tmp_path_factory.mktemp("model"), redis_url) as w:
        _world = w
        try:
            yield w
        finally:
            _world = None


def had_failures(report: dict[str, Any]) -> bool:
    """What `connector sync --wait` turns into exit code 1."""
    if report.get("state") != "succeeded":
        return True
    counts = report.get("counts") or {}
    return any(int(counts.get(name) or 0) for name in FAILURE_COUNTS)


class PipelineModel(RuleBasedStateMachine):
    """The DAM as the model sees it, and which assets the syncs so far have covered."""

    def __init__(self) -> None:
        super().__init__()
        assert _world is not None, "the module fixture starts the world"
        self.w = _world
        self.recs: dict[str, DamRecord] = {}
        self.deleted: set[str] = set()
        self.dirty: set[str] = set()  # changed in the DAM since a sync last covered them
        self.products: set[str] = {"sku1", "sku2"}
        self.refused: set[str] = set()
        self.forbidden: set[str] = set()
        self.raced: set[str] = set()  # ids an edit_during_run step raced (CHECK_RACED_HASH)
        self.seq = 0
        self.checked_writes = 0
        self.checked_deletions = 0
        self.example_start = datetime.now(UTC)

    # ------------------------------------------------------------------ helpers

    def _id(self, index: int) -> str:
        ids = sorted(self.recs)
        return ids[index % len(ids)]

    def _push_dam(self, rec: DamRecord) -> None:
        if rec.broken:
            self.w.dam.edit(rec.dam_id, {**rec.fields(), "dateModified": "not a date"}, raw=True)
        else:
            self.w.dam.edit(rec.dam_id, rec.fields())
        self.dirty.add(rec.dam_id)

    def _step(self, forced: bool = False) -> None:
        self.w.step += 1
        STATS["step " + sys._getframe(1).f_code.co_name.lstrip("_")] += 1
        if forced:
            self.forced_steps.add(self.w.step)

    forced_steps: set[int]

    def _run(self, **kw: Any) -> dict[str, Any]:
        started = start_run(SOURCE, "manual", services=self.w.services, **kw)
        assert started.started and started.run_id, started.message
        return self.w.wait_run(started.run_id)

    def _covered(self, report: dict[str, Any], ids: set[str] | None = None) -> None:
        """A run that ended well covered these ids (None: every change so far)."""
        if report["state"] != "succeeded":
            STATS["run " + report["state"] + ": " + str(report.get("error"))[:40]] += 1
            return
        if ids is None:
            # the DAM's deletion listing needs a moment to list from: a run with neither
            # `since` nor a watermark before it cannot see deletions (reconcile does)
            bounded = report.get("since") or report.get("watermark_before")
            self.dirty &= set() if bounded else self.deleted
        else:
            self.dirty -= ids

    # ------------------------------------------------------------------ setup

    @initialize(count=st.integers(min_value=1, max_value=3), data=st.data())
    def setup(self, count: int, data: st.DataObject) -> None:
        self.w.reset()
        self.forced_steps = set()
        self.example_start = datetime.now(UTC)
        for _ in range(count):
            self.create(data.draw(NAMES), data.draw(WIDTHS), data.draw(st.sampled_from(SKUS)),
                        data.draw(LANGUAGES))

    # ------------------------------------------------------------------ DAM rules

    @rule(name=NAMES, width=WIDTHS, sku=st.sampled_from(SKUS), language=LANGUAGES)
    def create(self, name: str, width: int, sku: str, language: str | None) -> None:
        self.seq += 1
        dam_id = f"m-{self.seq}"
        rec = DamRecord(dam_id, name, width, sku, language, filename=f"m{self.seq}.png")
        self.w.dam.add(rec.fields())
        self.recs[dam_id] = rec
        self.dirty.add(dam_id)

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50), name=NAMES, width=WIDTHS, sku=st.sampled_from(SKUS))
    def edit(self, index: int, name: str, width: int, sku: str) -> None:
        rec = self.recs[self._id(index)]
        rec.name, rec.sku = name, sku
        if isinstance(rec.width, int):
            rec.width = width
        self._push_dam(rec)

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50))
    def delete(self, index: int) -> None:
        dam_id = self._id(index)
        assert self.w.dam.delete(dam_id)
        del self.recs[dam_id]
        self.deleted.add(dam_id)
        self.dirty.add(dam_id)

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50))
    def toggle_published(self, index: int) -> None:
        rec = self.recs[self._id(index)]
        rec.product = not rec.product
        self._push_dam(rec)

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50), width=WIDTHS)
    def toggle_bad(self, index: int, width: int) -> None:
        rec = self.recs[self._id(index)]
        rec.width = width if not isinstance(rec.width, int) else "wide"
        self._push_dam(rec)

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50))
    def toggle_broken(self, index: int) -> None:
        """A record the adapter cannot read (unparsable date): quarantined, still present."""
        rec = self.recs[self._id(index)]
        rec.broken = not rec.broken
        self._push_dam(rec)

    @precondition(lambda self: "sku3" not in self.products)
    @rule()
    def create_late_product(self) -> None:
        self.w.create_product("sku3")
        self.products.add("sku3")

    # ------------------------------------------------------------------ PIM rules

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50))
    def toggle_refused_line(self, index: int) -> None:
        code = expected_code(self._id(index))
        self.refused ^= {code}
        self.w.pim.update_settings(refuse_codes=sorted(self.refused))

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50))
    def toggle_forbidden_deletion(self, index: int) -> None:
        code = expected_code(self._id(index))
        self.forbidden ^= {code}
        self.w.pim.update_settings(forbid_delete_codes=sorted(self.forbidden))

    # ------------------------------------------------------------------ connector rules

    # one rule per kind of sync (rules are drawn evenly: syncs should be most of the steps)
    @rule()
    def sync_scheduled(self) -> None:
        self._sync("scheduled", None)

    @rule()
    def sync_manual(self) -> None:
        self._sync("manual", None)

    @rule()
    def sync_full(self) -> None:
        self._sync("full", None)

    @rule()
    def sync_since(self) -> None:
        self._sync("since", None)

    @rule(data=st.data())
    def sync_assets(self, data: st.DataObject) -> None:
        self._sync("asset", data)

    @rule(data=st.data())
    def sync_webhook(self, data: st.DataObject) -> None:
        self._sync("webhook", data)

    def _sync(self, kind: str, data: st.DataObject | None) -> None:
        STATS["sync " + kind] += 1
        self._step()
        report: dict[str, Any] | None = None
        if kind == "scheduled":
            report = self._scheduled()
            self._covered(report)
        elif kind in ("manual", "full"):
            report = self._run(full=kind == "full")
            self._covered(report)
        elif kind == "since":
            report = self._run(since=self.example_start)
            self._covered(report)
        elif kind in ("asset", "webhook"):
            known = sorted(set(self.recs) | self.deleted)
            if not known or data is None:
                return
            ids = set(data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=3)))
            if kind == "asset":
                report = self._run(asset_ids=sorted(ids))
                self._covered(report, ids)
            else:
                self._webhook(ids)
        self.check(report)

    @rule()
    def sync_during_outage(self) -> None:
        """The PIM answers many requests 503 / 429 for the length of one run."""
        self._step()
        self.w.pim.update_settings(error_rate_5xx=0.3, error_rate_429=0.2, retry_after=0)
        try:
            report = self._run()
        finally:
            self.w.pim.update_settings(error_rate_5xx=0.0, error_rate_429=0.0, retry_after=1)
        self._covered(report)
        self.check(report)

    @rule(throttled=st.integers(min_value=1, max_value=6))
    def sync_while_dam_throttles(self, throttled: int) -> None:
        """The DAM answers its next requests 429 (listing, records, binaries): retried,
        or the run fails / the asset is a dead letter of kind `dam` — never lost."""
        self._step()
        self.w.dam.configure(inject_429=throttled, retry_after=0.05)
        try:
            report = self._run()
        finally:
            self.w.dam.configure(inject_429=0, retry_after=1.0)
        self._covered(report)
        self.check(report)

    @rule(kind=st.sampled_from(["manual", "full", "asset"]))
    def dry_run(self, kind: str) -> None:
        self._step()
        before = self.w.redis_snapshot()
        t0 = time.time()
        kw: dict[str, Any] = {"full": kind == "full"}
        if kind == "asset" and self.recs:
            kw = {"asset_ids": sorted(self.recs)[:2]}
        report = self._run(dry_run=True, **kw)
        self.check_read_only(t0, before, f"dry run {kw}", run_id=report["run_id"])
        self.check(None)

    @precondition(lambda self: self.recs or self.deleted)
    @rule(data=st.data())
    def explain_one(self, data: st.DataObject) -> None:
        self._step()
        dam_id = data.draw(st.sampled_from(sorted(set(self.recs) | self.deleted)))
        before = self.w.redis_snapshot()
        t0 = time.time()
        out = explain(SOURCE, dam_id, services=self.w.services)
        assert out["dam_id"] == dam_id
        self.check_read_only(t0, before, f"explain {dam_id}")

    @rule(apply=st.booleans(), allow_mass_deletion=st.booleans())
    def reconcile_source(self, apply: bool, allow_mass_deletion: bool) -> None:
        self._step(forced=apply)
        before = None if apply else self.w.redis_snapshot()
        t0 = time.time()
        deletions = len(self.w.deletions)
        try:
            out = reconcile(SOURCE, apply=apply, allow_mass_deletion=allow_mass_deletion,
                            services=self.w.services)
        except MassDeletionError as exc:
            # the guard: nothing deleted at all, the numbers said
            assert apply and not allow_mass_deletion, exc
            assert len(self.w.deletions) == deletions, "the guard let deletions through"
            assert "nothing" in str(exc) and "--allow-mass-deletion" in str(exc), str(exc)
            STATS["mass-deletion guard (reconcile)"] += 1
            self.check(None)
            return
        if not apply:
            assert before is not None
            self.check_read_only(t0, before, "reconcile without --apply")
        else:
            if out.get("requeue", {}).get("run_id"):
                self.w.wait_run(out["requeue"]["run_id"])
            self.dirty -= self.deleted  # orphans had the deletion policy applied
        self.check(None)

    @precondition(lambda self: len(self.recs) >= 3)
    @rule()
    def delete_most(self) -> None:
        """A DAM that suddenly lists almost nothing (or a real clean-up): the guard's case."""
        for dam_id in sorted(self.recs)[1:]:
            self.delete(sorted(self.recs).index(dam_id))

    @precondition(lambda self: self.recs)
    @rule(index=st.integers(0, 50), name=NAMES, width=WIDTHS)
    def edit_during_run(self, index: int, name: str, width: int) -> None:
        """A run reads the record, the worker is paused (SIGSTOP) before it pushes, the DAM
        changes and its webhook pushes the newer record; the resumed run must not write
        its older copy over it (the run forces, so it does push what it read)."""
        self._step(forced=True)
        rec = self.recs[self._id(index)]
        self.w.pim.update_settings(latency=0.3)  # the run's transform is still under way
        try:
            run_id = self._start_and_wait_fetch(full=True, force=True)
            with self.w.paused_worker():
                rec.name = name
                if isinstance(rec.width, int):
                    rec.width = width
                self._push_dam(rec)
                sync_assets_by_id(SOURCE, [rec.dam_id], services=self.w.services)
                self.dirty.discard(rec.dam_id)
                self.raced.add(rec.dam_id)
            self.w.pim.update_settings(latency=0.0)
            report = self.w.wait_run(run_id)
        finally:
            self.w.pim.update_settings(latency=0.0)
        self._covered(report)
        self.check(report)

    @rule()
    def retry_failures(self) -> None:
        self._step(forced=True)
        retry_dead_letters(SOURCE, inline=True, services=self.w.services)
        self.check(None)

    @precondition(lambda self: FULL and self.recs)
    @rule()
    def kill_worker_mid_run(self) -> None:
        """SIGKILL the worker while a run transforms (its messages unacked); a new worker
        gets them back after the broker's visibility timeout and finishes the run."""
        self._step(forced=True)  # the killed worker's unacked work is done again
        self.w.pim.update_settings(latency=0.3)  # the transform is under way when it dies
        try:
            run_id = self._start_and_wait_fetch(full=True, force=True)
            self.w.kill_worker()
        finally:
            self.w.pim.update_settings(latency=0.0)
        report = self.w.wait_run(run_id, timeout=120)
        self._covered(report)
        self.check(report)

    def _start_and_wait_fetch(self, **kw: Any) -> str:
        """Start a run and return once its fetch has stored what it read."""
        started = start_run(SOURCE, "manual", services=self.w.services, **kw)
        assert started.run_id
        run_id = started.run_id

        def fetched() -> bool:
            report = run_report(run_id, services=self.w.services)
            return bool(report["counts"].get("seen")) or report["state"] not in (
                "queued", "running")

        support.wait_for(fetched, timeout=30, interval=0.01, what="the run's fetch")
        return run_id

    # ------------------------------------------------------------------ real-time paths

    def _scheduled(self) -> dict[str, Any]:
        """What beat sends: fetch_changed_assets without a run id (the task starts one)."""
        app = self.w.services.enqueuer.app  # type: ignore[attr-defined]
        before = set(self.w.services.runs.run_ids(SOURCE, 50))
        app.send_task(routing.FETCH_TASK, kwargs={"source": SOURCE},
                      queue=routing.queue_of(routing.FETCH_TASK))

        def new_run() -> str | None:
            fresh = set(self.w.services.runs.run_ids(SOURCE, 50)) - before
            return next(iter(fresh)) if fresh else None

        run_id = support.wait_for(new_run, timeout=30, what="the scheduled run")
        assert run_id is not None
        return self.w.wait_run(run_id)

    def _webhook(self, ids: set[str]) -> None:
        """What the intake's flush queues: sync_asset_ids on the worker."""
        app = self.w.services.enqueuer.app  # type: ignore[attr-defined]
        live = sorted(i for i in ids if i in self.recs)
        gone = sorted(i for i in ids if i not in self.recs)
        result = app.send_task(
            routing.SYNC_IDS_TASK, queue=routing.queue_of(routing.SYNC_IDS_TASK), kwargs={
                "source": SOURCE, "asset_ids": live, "deleted_ids": gone}, ignore_result=False)
        support.wait_for(result.ready, timeout=60, what="the webhook sync")
        counts = result.get(timeout=1)
        assert isinstance(counts, dict), counts
        self.dirty -= ids

    # ------------------------------------------------------------------ invariants

    def check_read_only(
        self, t0: float, before: dict[str, Any], what: str, run_id: str | None = None
    ) -> None:
        self.w.quiesce()
        if not support.CHECK_READ_ONLY:
            return
        writes = [f"{r['method']} {r['path']} {r['status']}" for r in self.w.pim.log(since=t0)
                  if r["method"] != "GET" and r["template"] != "token"
                  and not r["path"].endswith("/oauth/v1/token")]
        assert not writes, f"{what} wrote to the PIM: {writes}"
        after = self.w.redis_snapshot()
        changed = sorted(
            k for k in set(before) | set(after)
            if before.get(k) != after.get(k) and not support.own_or_cache_key(k, run_id)
        )
        assert not changed, f"{what} changed connector state: {changed}"

    def check(self, report: dict[str, Any] | None) -> None:
        """The invariants, at quiescence."""
        w = self.w
        w.quiesce()
        pim = w.pim_assets()
        letters = {d["dam_id"]: d for d in dead_letters(SOURCE, 1000, services=w.services)}
        quarantined = {q.get("dam_id"): q for q in quarantine(SOURCE, 1000, services=w.services)}
        pending = support.pending_links(w.services)
        problems: list[str] = []
        by_code = {expected_code(i): i for i in set(self.recs) | self.deleted}

        # 1. the PIM equals the projection of what the syncs covered
        for dam_id, rec in sorted(self.recs.items()):
            code = expected_code(dam_id)
            if dam_id in self.dirty or not rec.product:
                continue  # not covered yet / not a product asset: the PIM keeps what it had
            if rec.bad:
                entry = quarantined.get(dam_id)
                if not (entry and entry.get("reason")):
                    problems.append(f"{dam_id}: bad in the DAM but not in quarantine")
                continue
            letter = letters.get(dam_id)
            found = pim.get(code)
            diff = support.value_diff(w, found, expected_values(rec, w.dam_url))
            if diff and support.CHECK_PROJECTION and not (letter and letter.get("message")):
                problems.append(f"{dam_id}: PIM differs from the DAM ({diff}), not listed")

        # 2. deletions: gone from the DAM → gone from the PIM (policy delete) or listed
        for dam_id in sorted(self.deleted - self.dirty):
            code = expected_code(dam_id)
            if code in pim and support.CHECK_DELETION_VISIBLE:
                letter = letters.get(dam_id)
                if not (letter and letter.get("message")
                        and letter.get("kind", "deletion") == "deletion"):
                    problems.append(f"{dam_id}: deleted in the DAM, still in the PIM, not listed")

        # 3. no product asset of the DAM was deleted from the PIM
        for code, step in w.deletions[self.checked_deletions:]:
            deleted_id = by_code.get(code)
            live = self.recs.get(deleted_id) if deleted_id else None
            if live is not None and live.product and support.CHECK_NO_LIVE_DELETION:
                what = "bad-but-present" if live.bad else "live"
                problems.append(
                    f"{deleted_id}: {what} DAM asset deleted from the PIM (step {step})")
        self.checked_deletions = len(w.deletions)

        # 4. nothing written twice with the same content, unless the step asked for it
        for write in w.writes[self.checked_writes:]:
            raced = by_code.get(write.code, "") in self.raced and not support.CHECK_RACED_HASH
            if raced and not write.changed:
                self.raced.discard(by_code.get(write.code, ""))
                continue
            if (not write.changed and write.step not in self.forced_steps
                    and support.CHECK_NO_SAME_WRITE):
                problems.append(f"{by_code.get(write.code, write.code)}: written again with "
                                f"the content the PIM held (step {write.step})")
        self.checked_writes = len(w.writes)

        # 5. product links: the product of each asset lists it; no other product does
        links = w.product_assets()
        for dam_id, rec in sorted(self.recs.items()):
            code = expected_code(dam_id)
            if dam_id in self.dirty or rec.bad or not rec.product or code not in pim:
                continue
            if support.value_diff(w, pim[code], expected_values(rec, w.dam_url)):
                continue  # listed above (dead letter): its links are not due
            linked = code in links.get(rec.sku, [])
            waiting = rec.sku in pending.get(dam_id, set())
            if (rec.sku in self.products and not linked and not waiting
                    and support.CHECK_PENDING_LINKS):
                problems.append(f"{dam_id}: not linked to its product {rec.sku}, not pending")
            if rec.sku not in self.products and support.CHECK_PENDING_LINKS and not waiting:
                problems.append(f"{dam_id}: product {rec.sku} missing, link not pending")
        if support.CHECK_UNLINK_ON_CHANGE:
            for sku, codes in sorted(links.items()):
                for code in codes:
                    linked_id = by_code.get(code)
                    owner = self.recs.get(linked_id) if linked_id else None
                    if (owner is None or linked_id in self.dirty or owner.bad
                            or not owner.product or sku in pending.get(str(linked_id), set())):
                        continue
                    if owner.sku != sku and code in pim and pim[code]["values"].get(
                            "product_ref", [{}])[0].get("data") == owner.sku:
                        problems.append(f"{linked_id}: still linked to {sku}, now {owner.sku}")

        # 6. the mass-deletion guard only counts deletions there are to make
        guard = GUARD.search(str((report or {}).get("error") or ""))
        if guard and support.CHECK_GUARD_COUNTS:
            candidates = int(guard.group(1).replace(",", ""))
            total = int(guard.group(2).replace(",", ""))
            real = sum(1 for i in self.deleted if expected_code(i) in pim)
            if candidates > total:
                problems.append(f"the guard counted {candidates} deletion(s) of {total} "
                                f"asset(s) (the PIM holds {len(pim)}): {report}")
            elif candidates > real:
                problems.append(f"the guard counted {candidates} deletion(s), the PIM holds "
                                f"{real} asset(s) deleted in the DAM: {report}")

        # 7. a run that left work behind says so
        if report is not None:
            run_id = report["run_id"]
            left = [f"{i} ({d.get('status')} {d.get('message')})"
                    for i, d in letters.items() if d.get("run_id") == run_id]
            left += [f"{i} ({q.get('reason')})"
                     for i, q in quarantined.items() if q.get("run_id") == run_id]
            if left and not had_failures(report) and support.CHECK_RUN_SAYS_SO:
                problems.append(f"run {run_id} left {left} behind but reports success: "
                                f"{report['counts']}")

        STATS["checks"] += 1
        STATS["dead letters seen"] += len(letters)
        STATS["quarantined seen"] += len(quarantined)
        STATS["pending links seen"] += len(pending)
        STATS["PIM assets seen"] += len(pim)
        STATS["uncovered (dirty) at a check"] += len(self.dirty)
        assert not problems, "\n".join(problems) + f"\nrun: {report}"

    def teardown(self) -> None:
        """Quiescence: one last sync of everything, then every invariant."""
        try:
            self.w.step += 1
            report = self._run()
            self._covered(report)
            self.check(report)
        finally:
            self.w.pim.update_settings(error_rate_5xx=0.0, error_rate_429=0.0)


PipelineModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES") or (100 if FULL else 30)),
    stateful_step_count=int(os.environ.get("MODEL_STEPS") or (20 if FULL else 12)),
    deadline=None,
    derandomize=not (FULL or os.environ.get("MODEL_EXPLORE")),
    database=None,
    suppress_health_check=list(HealthCheck),
    # shrinking replays whole sequences against the real pipeline: minutes per failure,
    # so CI reports the failing sequence as found; MODEL_SHRINK=1 (or `full`) shrinks it
    phases=list(Phase) if FULL or os.environ.get("MODEL_SHRINK") else
    [Phase.explicit, Phase.reuse, Phase.generate],
)


def test_pipeline_model(world: World) -> None:
    """Random rule sequences against the real pipeline keep every data-safety invariant."""
    STATS.clear()
    try:
        PipelineModel.TestCase("runTest").runTest()
    finally:
        if os.environ.get("MODEL_DEBUG"):
            print(dict(STATS))


def test_model_world_is_reset_between_examples(world: World, tmp_path: Path) -> None:
    """The harness itself: a reset leaves no DAM asset, no PIM asset, no connector key."""
    world.reset()
    world.dam.add(DamRecord("m-1", "a", 1, "sku1", None, filename="m1.png").fields())
    started = start_run(SOURCE, "manual", services=world.services)
    assert started.run_id
    assert world.wait_run(started.run_id)["state"] == "succeeded"
    assert world.pim_assets()
    world.reset()
    assert list(world.dam.ids()) == []
    assert world.pim_assets() == {}
    assert not [k for k in world.redis_snapshot() if ":run:" in k]
