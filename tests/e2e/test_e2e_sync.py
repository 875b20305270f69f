"""End to end, Redis broker: sandbox DAM (E2E_ASSETS records, default 2000, 3 families +
marketing + bad records) → real `celery -A tasks worker` subprocess → sandbox PIM.

The tests of this module share one world and run in file order (each starts from what the
previous one left): first sync, nothing to do, 10 edits, concurrency, 422s, a 429/5xx
storm, a DAM outage, reconciliation, and the no-overlap invariant over every run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.pipeline import (
    dead_letters,
    list_runs,
    reconcile,
    retry_dead_letters,
    start_run,
)
from connector.transform.codes import asset_code
from tasks import routing
from tests.e2e.expected import check_pim_matches_dam, family_of, pim_assets
from tests.e2e.world import SOURCE, World, env_int
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    broker = os.environ.get("E2E_BROKER_URL") or redis_url
    w = World(Path(tmp_path_factory.mktemp("e2e")), broker, env_int("E2E_ASSETS", 2000))
    try:
        w.start()
        w.start_worker()
        yield w
    finally:
        w.stop()


def _ids_of(world: World, family: str, n: int) -> list[str]:
    bad = {b["id"] for b in world.dam.bad_records()}  # type: ignore[union-attr]
    found = []
    for dam_id in world.dam.ids():  # type: ignore[union-attr]
        if dam_id not in bad and family_of(world.dam.record(dam_id)) == family:  # type: ignore[union-attr,arg-type]
            found.append(dam_id)
            if len(found) == n:
                break
    return found


def test_first_sync_lands_every_product_asset_with_the_expected_values(world: World) -> None:
    report = world.sync_via_subprocess(timeout=240)  # the CLI's way: real tasks enqueuer
    assert report["state"] == "succeeded", report
    counts = report["counts"]
    checked = check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    assert counts["created"] == checked["landed"] >= checked["expected"]
    assert counts["failed"] == 0 and counts["updated"] == 0
    assert counts["seen"] == world.assets
    # every bad record of the sandbox was reported (quarantine), none silently dropped
    quarantined = {q.get("dam_id") for q in world.services.quarantine.list(SOURCE)}  # type: ignore[union-attr]
    landed = pim_assets(world.pim)
    for bad in world.dam.bad_records():  # type: ignore[union-attr]
        if bad["kind"] == "missing_id":
            assert None in quarantined
        else:
            assert bad["id"] in quarantined or asset_code(bad["id"]) in landed, bad
    assert counts["mean_assets_per_request"] >= 90, counts
    assert 0 < world.pim.counters()["max_assets_per_bulk"] <= 100  # type: ignore[union-attr]
    assert report["watermark_after"] is not None


def test_second_run_pushes_nothing(world: World) -> None:
    bulk_before = world.pim.counters()["bulk_asset_requests"]  # type: ignore[union-attr]
    report = world.sync()
    assert report["state"] == "succeeded", report
    counts = report["counts"]
    assert counts["requests"] == 0 and counts["created"] == counts["updated"] == 0
    assert world.pim.counters()["bulk_asset_requests"] == bulk_before  # type: ignore[union-attr]


def test_editing_ten_assets_pushes_exactly_those(world: World) -> None:
    ids = _ids_of(world, "packshots", 6) + _ids_of(world, "videos", 4)
    for n, dam_id in enumerate(ids):
        field = "description" if n < 6 else "name"
        world.dam.edit(dam_id, {field: f"edited #{n}"})  # type: ignore[union-attr]
    report = world.sync()
    counts = report["counts"]
    assert report["state"] == "succeeded", report
    assert (counts["updated"], counts["created"], counts["sent"]) == (10, 0, 10), counts
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def test_two_concurrent_sync_requests_never_run_twice(world: World) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: start_run(SOURCE, "manual", services=world.services),
                                range(4)))
    started = [r for r in results if r.started]
    assert len(started) == 1, [r.to_dict() for r in results]
    winner = started[0].run_id
    for refused in (r for r in results if not r.started):
        assert refused.busy and refused.holder == winner
        assert refused.message == f"source {SOURCE} is busy with run {winner}"
    report = world.wait_run(winner)  # type: ignore[arg-type]
    assert report["state"] == "succeeded"


def test_per_line_422_goes_to_dead_letters_and_a_retry_replays_it(world: World) -> None:
    client = world.client()
    client.upsert_attribute("videos", "product_ref", {"type": "text", "max_characters": 3})
    ids = _ids_of(world, "videos", 8)[4:8]
    for dam_id in ids:
        world.dam.edit(dam_id, {"name": f"renamed {dam_id[:4]}"})  # type: ignore[union-attr]
    report = world.sync()
    assert report["state"] == "succeeded", report
    assert report["counts"]["failed"] == 4, report
    letters = {d["dam_id"]: d for d in dead_letters(SOURCE, services=world.services)}
    assert set(letters) == set(ids)
    for letter in letters.values():
        assert letter["status"] == 422 and letter["family"] == "videos"
        assert any("too long" in e["message"] for e in letter["errors"]), letter
    # the cause is fixed in the PIM; the retry re-fetches from the DAM and pushes them
    client.upsert_attribute("videos", "product_ref", {"type": "text", "max_characters": None})
    started = retry_dead_letters(SOURCE, services=world.services)
    retry = world.wait_run(started["run_id"])
    assert retry["state"] == "succeeded" and retry["counts"]["updated"] == 4, retry
    assert dead_letters(SOURCE, services=world.services) == []
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def test_a_429_and_5xx_storm_still_ends_with_every_asset_synced(world: World) -> None:
    pim = world.pim
    assert pim is not None
    before = pim.counters()
    ids = _ids_of(world, "packshots", 150)
    for dam_id in ids:
        world.dam.edit(dam_id, {"description": f"storm {dam_id[:6]}"})  # type: ignore[union-attr]
    # Every request is refused until the first refusal is seen (so the storm surely hits),
    # then a quarter 429s and 15 % 5xx for the rest of the run.
    pim.update_settings(error_rate_429=1.0, error_rate_5xx=0.0, retry_after=1)
    try:
        started = start_run(SOURCE, "test", services=world.services)
        assert started.started and started.run_id is not None, started.message
        wait_for(
            lambda: pim.counters()["injected_429"] > before["injected_429"],
            timeout=60,
            what="the first injected 429",
        )
        pim.update_settings(error_rate_429=0.25, error_rate_5xx=0.15)
        report = world.wait_run(started.run_id, timeout=240)
    finally:
        pim.update_settings(error_rate_429=0.0, error_rate_5xx=0.0)
    after = pim.counters()
    refused = (after["injected_429"] + after["injected_5xx"]
               - before["injected_429"] - before["injected_5xx"])
    assert refused > 0, "the storm did not hit anything"
    counts = report["counts"]
    assert report["state"] == "succeeded", report
    assert counts["updated"] == 150 and counts["failed"] == 0, counts
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def test_a_failed_run_leaves_the_watermark_unchanged(world: World) -> None:
    before = world.services.runs.watermark(SOURCE)  # type: ignore[union-attr]
    world.dam.configure(inject_500=1_000_000)  # type: ignore[union-attr]
    try:
        report = world.sync()
    finally:
        world.dam.configure(inject_500=0)  # type: ignore[union-attr]
    assert report["state"] == "failed"
    assert "fetch failed" in report["error"] and "500" in report["error"], report["error"]
    assert world.services.runs.watermark(SOURCE) == before  # type: ignore[union-attr]
    assert world.services.runs.holder(SOURCE) is None  # type: ignore[union-attr]
    assert world.sync()["state"] == "succeeded"  # and the next run is fine again


def test_reconcile_finds_deletions_on_both_sides_and_repairs_them(world: World) -> None:
    gone_in_dam = _ids_of(world, "packshots", 3)
    for dam_id in gone_in_dam:
        world.dam.delete(dam_id)  # type: ignore[union-attr]
    gone_in_pim = _ids_of(world, "user_guides", 2)
    client = world.client()
    for dam_id in gone_in_pim:
        assert client.delete_asset("user_guides", asset_code(dam_id))
    report = reconcile(SOURCE, services=world.services)
    assert report["orphans"] == 3 and report["missing"] == 2, report
    assert {o["dam_id"] for o in report["orphan_sample"]} == set(gone_in_dam)
    assert {m["dam_id"] for m in report["missing_sample"]} == set(gone_in_pim)
    applied = reconcile(SOURCE, apply=True, services=world.services)
    assert applied["deletions"]["deleted"] == 3
    world.wait_run(applied["requeue"]["run_id"])
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    after = reconcile(SOURCE, services=world.services)
    assert (after["orphans"], after["missing"]) == (0, 0), after


def test_a_worker_killed_mid_push_does_not_lose_or_double_count(world: World) -> None:
    """acks_late + reject_on_worker_lost: the push whose process died is delivered again,
    and the run still ends with each asset counted once."""
    import psutil

    from connector.pipeline import run_report

    pim = world.pim
    assert pim is not None
    ids = _ids_of(world, "packshots", 400)[200:300]
    for dam_id in ids:
        world.dam.edit(dam_id, {"description": f"crash {dam_id[:6]}"})  # type: ignore[union-attr]
    pim.update_settings(bulk_latency=2.0)
    try:
        started = start_run(SOURCE, "test", services=world.services)
        assert started.run_id is not None

        def pushing() -> bool:
            counts = run_report(started.run_id, services=world.services)["counts"]  # type: ignore[arg-type]
            return bool(counts["requests"] >= 1 and counts["batches_done"] == 0)

        wait_for(pushing, timeout=60, what="a push in flight")
        children = psutil.Process(world.workers[0].pid).children(recursive=True)
        assert children
        for child in children:
            child.kill()
        report = world.wait_run(started.run_id, timeout=120)
    finally:
        pim.update_settings(bulk_latency=0.0)
    counts = report["counts"]
    assert report["state"] == "succeeded", report
    assert (counts["updated"], counts["created"], counts["failed"]) == (100, 0, 0), counts
    assert counts["sent"] > 100, counts  # the killed push was delivered and sent again
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def test_duplicate_scheduled_syncs_start_one_run_at_a_time(world: World) -> None:
    """What two beats would send: the same scheduled task several times at once."""
    assert world.app is not None
    for _ in range(3):
        world.app.send_task(routing.FETCH_TASK,
                            kwargs={"source": SOURCE, "trigger": "schedule"},
                            queue=routing.queue_of(routing.FETCH_TASK))

    def scheduled_runs_done() -> list[dict[str, Any]] | None:
        runs = [r for r in list_runs(SOURCE, limit=100, services=world.services)
                if r["trigger"] == "schedule"]
        busy = world.services.runs.holder(SOURCE)  # type: ignore[union-attr]
        if runs and busy is None and all(r["state"] == "succeeded" for r in runs):
            return runs
        return None

    runs = wait_for(scheduled_runs_done, timeout=60, what="the scheduled runs")
    assert runs is not None and 1 <= len(runs) <= 3


def test_no_two_runs_of_the_source_ever_overlapped(world: World) -> None:
    wait_for(lambda: world.services.runs.holder(SOURCE) is None, timeout=60)  # type: ignore[union-attr]
    runs = list_runs(SOURCE, limit=100, services=world.services)
    assert len(runs) >= 8
    spans = sorted(
        (datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"]))
        for r in runs
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two runs of one source overlapped"
