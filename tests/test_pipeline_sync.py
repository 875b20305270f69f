"""The pipeline steps with in-process fakes for DAM, PIM and queue (real Redis)."""

from __future__ import annotations

import pytest

from connector import pipeline as steps
from connector.config.model import DeletionPolicy
from connector.pim.errors import TransientPimError
from connector.pipeline import (
    SyncUnavailableError,
    apply_deletions,
    dead_letters,
    dry_run_differences,
    explain,
    list_runs,
    reconcile,
    retry_dead_letters,
    run_report,
    sync_assets_by_id,
)
from connector.pipeline.steps.push import names_unknown_structure
from connector.retry import backoff_delay
from connector.transform.codes import asset_code
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services


def _world(n: int = 250, **config_kw):
    assets = [make_asset(i, family=("packshots", "user_guides", "videos")[i % 3])
              for i in range(n)]
    dam, pim = FakeDam(assets), FakePim()
    services, queue = make_services(make_config(**config_kw), dam, pim)
    return dam, pim, services, queue


def _run(services, queue, **kw):
    result = steps.start_run("dam", "test", services=services, **kw)
    assert result.started, result.message
    queue.drain()
    return services.runs.get(result.run_id)


def test_second_run_pushes_nothing_and_edits_push_exactly_those(namespace: str) -> None:
    dam, pim, services, queue = _world()
    first = _run(services, queue)
    assert first.report["created"] == 250 and pim.total() == 250
    assert first.report["mean_assets_per_request"] >= 83  # 250 assets / 3 families
    pim.requests.clear()
    second = _run(services, queue, full=True)
    assert second.report["unchanged"] == 250 and pim.requests == []
    for i in range(10):
        dam.edit(f"A{i:05d}-X", label=f"edited {i}")
    third = _run(services, queue)
    assert (third.report["updated"], third.report["created"]) == (10, 0)
    assert sum(n for _, n in pim.requests) == 10
    assert pim.get_asset("packshots", asset_code("A00000-X"))["values"]["label"][0]["data"] == (
        "edited 0")
    # the watermark moved to (start of the third run - overlap) and the run asked since it
    assert dam.calls[-1] == second.watermark_after


def test_busy_source_is_refused_with_the_holder(namespace: str) -> None:
    _, _, services, queue = _world(10)
    first = steps.start_run("dam", "manual", services=services)
    second = steps.start_run("dam", "schedule", services=services)
    assert second.busy and second.holder == first.run_id
    assert second.message == f"source dam is busy with run {first.run_id}"
    queue.drain()
    assert steps.start_run("dam", "schedule", services=services).started


def test_failed_fetch_keeps_the_watermark_and_releases_the_lock(namespace: str) -> None:
    dam, _, services, queue = _world(20)
    ok = _run(services, queue)
    dam.down = True
    failed = _run(services, queue)
    assert failed.state == "failed"
    assert "DAM unreachable" in (failed.error or "")
    assert services.runs.watermark("dam") == ok.watermark_after
    assert services.runs.holder("dam") is None
    assert [r["state"] for r in list_runs("dam", services=services)] == ["failed", "succeeded"]


def test_per_line_422_is_dead_lettered_then_retried_after_the_fix(namespace: str) -> None:
    dam, pim, services, queue = _world(30)
    bad = [asset_code(f"A{i:05d}-X") for i in (3, 4, 5)]
    for code in bad:
        pim.reject[code] = 'Attribute "label": This value is too long.'
    run = _run(services, queue)
    assert run.state == "succeeded"
    assert (run.report["created"], run.report["failed"]) == (27, 3)
    letters = {d["code"]: d for d in dead_letters("dam", services=services)}
    assert set(letters) == set(bad)
    assert letters[bad[0]]["status"] == 422
    assert letters[bad[0]]["errors"][0]["message"] == 'Attribute "label": This value is too long.'
    # fixed in the PIM → retry replays them; the dead letters are gone
    pim.reject.clear()
    result = retry_dead_letters("dam", inline=True, services=services)
    assert (result["retried"], result["created"]) == (3, 3)
    assert dead_letters("dam", services=services) == []
    # the run way works too
    pim.reject[bad[0]] = "still wrong"
    dam.edit("A00003-X", label="x")
    _run(services, queue)
    pim.reject.clear()
    started = retry_dead_letters("dam", services=services)
    queue.drain()
    assert run_report(started["run_id"], services=services)["counts"]["updated"] == 1
    assert dead_letters("dam", services=services) == []


def test_transient_failures_retry_only_the_failed_assets(namespace: str) -> None:
    _, pim, services, queue = _world(100)
    flaky = [asset_code(f"A{i:05d}-X") for i in (0, 3)]
    for code in flaky:
        pim.transient_lines[code] = 2  # 429 twice, then fine
    pim.transient_requests = 1  # and the very first request is a 503
    run = _run(services, queue)
    assert run.state == "succeeded" and run.report["created"] == 100 and pim.total() == 100
    # one whole batch got the 503 and went again whole: 3 families + 1 repeat
    whole = [n for _, n in pim.requests if n > 2]
    assert len(whole) == 4 and sum(whole) in (100 + 33, 100 + 34)
    sizes = [n for family, n in pim.requests if family == "packshots"]
    assert sizes[-2:] == [2, 2]  # then only the two flaky ones, twice


def test_exhausted_retries_end_in_the_dead_letter_store(namespace: str) -> None:
    _, pim, services, queue = _world(10, max_retries=3)
    code = asset_code("A00000-X")
    pim.transient_lines[code] = 99
    run = _run(services, queue)
    assert run.report["failed"] == 1 and run.report["created"] == 9
    letter = dead_letters("dam", services=services)[0]
    assert letter["attempts"] == 3 and letter["status"] == 429
    assert "gave up after repeated transient PIM failures" in letter["message"]


def test_unknown_attribute_422_invalidates_the_structure_cache() -> None:
    from connector.pim.errors import AssetResult

    result = AssetResult("x", 422, "Validation failed.",
                         [{"property": "values", "message": 'Attribute "colour" does not exist'}])
    assert names_unknown_structure(result)
    assert not names_unknown_structure(AssetResult("x", 422, "This value is too long."))


def test_backoff_honours_retry_after_and_the_cap() -> None:
    assert 1.0 <= backoff_delay(1, 2.0, 300, None) <= 2.0
    assert 32.0 <= backoff_delay(6, 2.0, 300, None) <= 64.0
    assert backoff_delay(1, 2.0, 300, 30.0) == 30.0
    assert backoff_delay(20, 2.0, 300, 9999.0) == 300


def test_deletions_from_the_dam_follow_the_policy(namespace: str) -> None:
    dam, pim, services, queue = _world(12)
    _run(services, queue)
    dam.delete("A00000-X")
    dam.delete("A00001-X")
    run = _run(services, queue)
    assert run.report["deleted"] == 2
    assert ("packshots", asset_code("A00000-X")) in pim.deleted
    assert pim.total() == 10
    assert services.assets.get("dam", "A00000-X").status == "deleted"


def test_flag_policy_sets_an_attribute_and_never_creates(namespace: str) -> None:
    dam = FakeDam([make_asset(1)])
    pim = FakePim()
    services, queue = make_services(
        make_config(deletion=DeletionPolicy(action="flag", attribute="deleted", value=True)),
        dam, pim)
    _run(services, queue)
    counts = apply_deletions("dam", ["A00001-X", "NEVER-SEEN"], services=services)
    assert (counts["flagged"], counts["not_found"]) == (1, 1)
    stored = pim.get_asset("packshots", asset_code("A00001-X"))
    assert stored is not None
    assert stored["values"]["deleted"][0]["data"] is True
    assert pim.get_asset("packshots", asset_code("NEVER-SEEN")) is None


def test_reconcile_finds_orphans_and_missing_and_repairs(namespace: str) -> None:
    dam, pim, services, queue = _world(30)
    _run(services, queue)
    # deleted in the DAM without a deletion event; deleted in the PIM behind our back
    del dam.assets["A00001-X"]
    del pim.assets["videos"][asset_code("A00002-X")]
    pim.assets["videos"]["SOMEONE_ELSES"] = {"code": "SOMEONE_ELSES", "values": {}}
    report = reconcile("dam", services=services)
    assert report["orphans"] == 1 and report["orphan_sample"][0]["dam_id"] == "A00001-X"
    assert report["missing"] == 1 and report["missing_sample"][0]["dam_id"] == "A00002-X"
    assert report["foreign"] == 1
    applied = reconcile("dam", apply=True, services=services)
    queue.drain()
    assert applied["deletions"]["deleted"] == 1
    assert pim.get_asset("videos", asset_code("A00002-X")) is not None
    assert pim.get_asset("videos", "SOMEONE_ELSES") is not None  # not ours: left alone
    after = reconcile("dam", services=services)
    assert (after["orphans"], after["missing"]) == (0, 0)
    assert services.redis.keys(f"{namespace}:reconcile:*") == []


def test_sync_assets_by_id_pushes_converges_and_raises_when_the_pim_is_down(
    namespace: str,
) -> None:
    dam, pim, services, _ = _world(6)
    counts = sync_assets_by_id("dam", ["A00000-X", "A00001-X", "GONE"], services=services)
    assert (counts["created"], counts["seen"], counts["requests"]) == (2, 2, 2)
    dam.edit("A00000-X", label="new")
    pim.transient_requests = 5
    with pytest.raises(SyncUnavailableError) as caught:
        sync_assets_by_id("dam", ["A00000-X", "A00001-X"], services=services)
    assert isinstance(caught.value, TransientPimError)
    pim.transient_requests = 0
    again = sync_assets_by_id("dam", ["A00000-X", "A00001-X"], services=services)
    assert (again["updated"], again["unchanged"]) == (1, 1)
    gone = sync_assets_by_id("dam", [], deleted_ids=["A00001-X"], services=services)
    assert gone["deleted"] == 1 and pim.get_asset("user_guides", asset_code("A00001-X")) is None


def test_direct_product_linking_merges_with_existing_assets(namespace: str) -> None:
    dam = FakeDam([make_asset(i, products=["cap"]) for i in range(3)])
    pim = FakePim(products={"cap": {"identifier": "cap", "values": {"assets": [
        {"locale": None, "scope": None, "data": ["OLD_ONE"]}]}}})
    services, queue = make_services(make_config(link_direct=True), dam, pim)
    _run(services, queue)
    data = pim.products["cap"]["values"]["assets"][0]["data"]
    assert data == ["OLD_ONE", *[asset_code(f"A{i:05d}-X") for i in range(3)]]
    assert len(pim.product_patches) == 1


def test_dry_run_writes_nothing_and_reports_differences(namespace: str) -> None:
    dam, pim, services, queue = _world(9)
    _run(services, queue)
    dam.edit("A00000-X", label="changed")
    dam.assets["A05000-X"] = make_asset(5000)
    before = {f: dict(v) for f, v in pim.assets.items()}
    result = steps.start_run("dam", "manual", dry_run=True, force=True, full=True,
                             services=services)
    queue.drain()
    assert result.run_id is not None
    record = services.runs.get(result.run_id)
    assert record.report["updated"] == 1 and record.report["created"] == 1
    assert record.report["unchanged"] == 8
    assert {f: dict(v) for f, v in pim.assets.items()} == before
    diffs = {d["dam_id"]: d for d in dry_run_differences(record.run_id, services=services)}
    assert diffs["A00000-X"]["differences"][0]["dam"] == "changed"
    assert record.watermark_after is None


def test_lost_batch_is_dead_lettered_and_the_run_still_ends(namespace: str) -> None:
    _, _, services, queue = _world(5)
    result = steps.start_run("dam", "test", services=services)
    run_id = result.run_id
    assert run_id
    # run everything but the push, which "fails for good"
    while queue.queue:
        kind, args = queue.queue.popleft()
        if kind == "push":
            steps.gave_up("batch", args[0], args[1], "SoftTimeLimitExceeded", services=services)
        else:
            queue.run_one(kind, args)
    record = services.runs.get(run_id)
    assert record.state == "succeeded" and record.report["failed"] == 5
    assert len(dead_letters("dam", services=services)) == 5
    assert services.runs.holder("dam") is None


def test_explain_tells_the_story_of_one_asset(namespace: str) -> None:
    _, pim, services, queue = _world(3)
    pim.reject[asset_code("A00001-X")] = "nope"
    _run(services, queue)
    story = explain("dam", "A00001-X", services=services)
    assert story["dam"]["id"] == "A00001-X"
    assert story["transformed"]["code"] == asset_code("A00001-X")
    assert story["would_push"] is True
    assert story["dead_letter"]["errors"][0]["message"] == "nope"
    ok = explain("dam", "A00000-X", services=services)
    assert ok["last_push"]["status"] == "created" and ok["would_push"] is False


def test_a_record_the_dam_cannot_normalise_is_quarantined_not_fatal(namespace: str) -> None:
    from connector.dam.base import BadRecord, DamError

    class BadGet(DamError):
        def __init__(self, bad: BadRecord) -> None:
            super().__init__(bad.reason)
            self.bad = bad

    dam, _, services, queue = _world(4)
    original_get = dam.get

    def get(asset_id: str):
        if asset_id == "A00001-X":
            raise BadGet(BadRecord("dam", {"id": asset_id}, "unparsable date", "updated",
                                   asset_id))
        return original_get(asset_id)

    dam.get = get
    run = _run(services, queue, asset_ids=["A00000-X", "A00001-X"])
    assert run.state == "succeeded"
    assert (run.report["created"], run.report["quarantined"]) == (1, 1)
    counts = sync_assets_by_id("dam", ["A00001-X", "A00002-X"], services=services)
    assert (counts["quarantined"], counts["created"]) == (1, 1)
    assert services.quarantine.get("dam", "A00001-X")["reason"] == "unparsable date"
    dam.down = True
    with pytest.raises(DamError):
        sync_assets_by_id("dam", ["A00003-X"], services=services)
