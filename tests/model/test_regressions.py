"""Counterexamples the model-based pipeline test found, kept as ordinary regression tests.

Each test replays the shrunk sequence deterministically: with fakes where the interleaving
is the point, or against the model test's real world (sandboxes, Redis, a worker) where the
pipeline's end-to-end behaviour is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connector.pipeline import dead_letters, run_report, start_run
from connector.pipeline.services import Services
from tests.model import support
from tests.model.support import SOURCE, DamRecord, World, expected_code
from tests.pipeline_fakes import FakeDam, FakePim, make_config, make_services

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    with support.started_world(tmp_path_factory.mktemp("regressions"), redis_url) as w:
        yield w


@pytest.fixture
def services(namespace: str) -> Any:
    config = make_config()
    s, _enqueuer = make_services(config, FakeDam([]), FakePim(), namespace=namespace)
    yield s
    s.close()


def test_a_run_finishing_while_its_report_is_read_is_not_reported_abandoned(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the model test: `connector sync --wait` (and the model's own waiting) saw a
    run that succeeded as "abandoned" — and would exit 1 — when the run finished between
    the report's read of the run record (still running) and its read of the source's lock
    (already released by the finisher). Replayed: the run is finalised exactly there."""
    started = start_run("dam", "manual", services=services, enqueue=False)
    assert started.run_id is not None
    run_id = started.run_id
    services.runs.mark_running(run_id)
    real_holder = services.runs.holder

    def holder_after_the_finisher(source: str) -> str | None:
        # the finisher runs between the two reads: state written, then the lock released
        services.runs.finalize(run_id, overlap=0, advance_watermark=False)
        return real_holder(source)

    monkeypatch.setattr(services.runs, "holder", holder_after_the_finisher)
    report = run_report(run_id, services=services)
    assert report["state"] == "succeeded", report


def _run(world: World) -> dict[str, Any]:
    started = start_run(SOURCE, "manual", services=world.services)
    assert started.run_id is not None, started.message
    return world.wait_run(started.run_id)


def test_a_refused_asset_deleted_from_the_dam_does_not_block_the_source(world: World) -> None:
    """Found by the model test (shrunk: create; refuse its line; sync; delete; sync): an
    asset the PIM refused (a dead letter, never created there) and then deleted from the
    DAM made every later sync fail on the mass-deletion guard — "sync would delete 1 of 0
    assets" — although there is nothing to delete: the source was stuck until an operator
    passed --allow-mass-deletion."""
    world.reset()
    world.dam.add(DamRecord("m-1", "alpha", 10, "sku1", None, filename="m1.png").fields())
    world.pim.update_settings(refuse_codes=[expected_code("m-1")])
    first = _run(world)
    assert first["counts"]["dead_lettered"] == 1, first
    assert [d["dam_id"] for d in dead_letters(SOURCE, services=world.services)] == ["m-1"]
    assert world.pim_assets() == {}

    assert world.dam.delete("m-1")
    for _ in range(2):  # the run after the deletion, and the one after that
        report = _run(world)
        assert report["state"] == "succeeded", report


def test_two_deliveries_of_one_push_racing_do_not_fail_the_run(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen once in the `full` profile after a worker SIGKILL: the run failed with "batch b1
    expired before it was pushed". A push message delivered twice (acks_late redelivery, or
    the flush owner's replay queueing its batches again) can run on two worker processes at
    once: the second checks "batch done?" before the first finishes, then finds the batch
    already consumed. Every step is meant to be safe to run twice; replayed here with the
    second delivery's check made just before the first delivery finished."""
    from tests.pipeline_fakes import make_asset

    config = make_config(batch_size=1)
    s, queue = make_services(config, FakeDam([make_asset(1), make_asset(2)]), FakePim(),
                             namespace=namespace)
    try:
        started = start_run("dam", "manual", services=s)
        assert started.run_id is not None
        while queue.queue and queue.queue[0][0] != "push":  # fetch and transform
            kind, args = queue.queue.popleft()
            queue.run_one(kind, args)
        pushes = [m for m in queue.queue if m[0] == "push"]
        assert len(pushes) == 2, queue.queue
        first = pushes[0][1]
        queue.run_one("push", first)  # the first delivery pushes and finishes the batch
        real_done = s.runs.batch_done
        checks: list[str] = []

        def checked_before_the_first_finished(run_id: str, batch_id: str) -> bool:
            checks.append(batch_id)  # only the second delivery's opening check is early
            return False if len(checks) == 1 else real_done(run_id, batch_id)

        with monkeypatch.context() as patch:
            patch.setattr(s.runs, "batch_done", checked_before_the_first_finished)
            queue.run_one("push", first)
        queue.queue.remove(pushes[0])
        queue.drain()
        report = run_report(started.run_id, services=s)
        assert report["state"] == "succeeded", report
    finally:
        s.close()


def test_a_push_landing_before_a_newer_one_does_not_leave_the_older_hash_behind(
    namespace: str,
) -> None:
    """Seen by the model test (its `edit_during_run` step, then a sync): a run's push of an
    older record reached the PIM, and while its answer travelled back a webhook pushed the
    newer record. The PIM held the newer values, but the run then recorded the older
    content hash, so the next sync wrote the newer record again with the content the PIM
    already held (a write the DAM did not ask for). Replayed with the webhook's push made
    inside the run's bulk request, after the PIM applied it."""
    from connector.pipeline import sync_assets_by_id
    from tests.pipeline_fakes import make_asset

    dam, pim = FakeDam([make_asset(1)]), FakePim()
    s, queue = make_services(make_config(), dam, pim, namespace=namespace)
    dam_id = make_asset(1).id
    real_upsert = pim.upsert_assets
    newer_pushed: list[Any] = []

    def upsert_then_newer(family: str, assets: Any) -> Any:
        answer = real_upsert(family, assets)
        if not newer_pushed:  # the run's request: applied; now the webhook, before it returns
            newer_pushed.append(dam_id)
            dam.edit(dam_id, label="newer")
            sync_assets_by_id("dam", [dam_id], services=s)
        return answer

    try:
        pim.upsert_assets = upsert_then_newer  # type: ignore[method-assign]
        started = start_run("dam", "manual", services=s)
        queue.drain()
        pim.upsert_assets = real_upsert  # type: ignore[method-assign]
        assert newer_pushed and started.run_id is not None
        stored = pim.get_asset("packshots", _code(dam_id))
        assert stored is not None and stored["values"]["label"][0]["data"] == "newer", stored
        before = len(pim.requests)
        again = start_run("dam", "manual", full=True, services=s)
        queue.drain()
        assert again.run_id is not None
        report = run_report(again.run_id, services=s)
        assert len(pim.requests) == before, (
            f"the newer record was written again: {report['counts']}")
    finally:
        s.close()


def _code(dam_id: str) -> str:
    from connector.transform.codes import asset_code

    return asset_code(dam_id)
