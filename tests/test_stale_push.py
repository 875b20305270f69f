"""A push that arrives late (its run abandoned, its lock expired) must not overwrite a newer
version of an asset: every push carries the DAM version, and the version gate drops, in
one atomic Redis step per batch, assets whose newer version was already written or
claimed. Equal versions (retries, redeliveries, forced re-pushes) still go through."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import pipeline as steps
from connector.cli.reports import print_report
from connector.pipeline import run_report, sync_assets_by_id
from connector.pipeline.stores import VersionGate
from connector.redis_conn import Keys, get_redis
from connector.transform.codes import asset_code
from connector.transform.result import TransformedAsset
from tests.pipeline_fakes import (
    FakeDam,
    FakePim,
    QueueEnqueuer,
    make_asset,
    make_config,
    make_services,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run_until_pushes(queue: QueueEnqueuer) -> list[tuple[str, tuple[Any, ...]]]:
    """Run fetch and transform work, hold every push message back (a stalled worker)."""
    held: list[tuple[str, tuple[Any, ...]]] = []
    while queue.queue:
        kind, args = queue.queue.popleft()
        if kind == "push":
            held.append((kind, args))
        else:
            queue.run_one(kind, args)
    return held


def _label(pim: FakePim, dam_id: str) -> Any:
    stored = pim.get_asset("packshots", asset_code(dam_id))
    assert stored is not None
    return stored["values"]["label"][0]["data"]


def test_a_late_push_of_an_abandoned_run_cannot_overwrite_a_newer_value(
    namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dam = FakeDam([make_asset(i) for i in range(3)])
    pim = FakePim()
    services, queue = make_services(make_config(), dam, pim)
    run_a = steps.start_run("dam", "schedule", services=services)
    assert run_a.started and run_a.run_id
    held = _run_until_pushes(queue)
    assert held and pim.total() == 0  # run A's batch is staged, not pushed

    services.redis.delete(services.runs.lock_key("dam"))  # A's lock expired: A is abandoned
    dam.edit("A00000-X", label="newer")  # the DAM moves on
    run_b = steps.start_run("dam", "schedule", services=services)
    assert run_b.started and run_b.run_id
    queue.drain()
    assert _label(pim, "A00000-X") == "newer"

    for kind, args in held:  # A's push finally runs
        queue.run_one(kind, args)
    assert _label(pim, "A00000-X") == "newer"  # B's value stays
    assert _label(pim, "A00001-X") == "asset 1"
    report = run_report(run_a.run_id, services=services)
    assert report["state"] == "succeeded"
    counts = report["counts"]
    assert counts["superseded"] == 1
    assert counts["dead_lettered"] == 0 and services.dead_letters.count("dam") == 0
    assert counts["updated"] == 2  # equal versions (B wrote them too) still go through
    assert run_report(run_b.run_id, services=services)["counts"]["superseded"] == 0
    assert services.assets.get("dam", "A00000-X").run_id == run_b.run_id  # type: ignore[union-attr]
    print_report(report)  # what `connector report` shows
    assert re.search(r"^  superseded +1$", capsys.readouterr().out, re.MULTILINE)


def test_a_retry_and_a_forced_re_push_of_the_same_version_go_through(namespace: str) -> None:
    dam = FakeDam([make_asset(i) for i in range(4)])
    pim = FakePim(transient_lines={asset_code("A00001-X"): 2})
    services, queue = make_services(make_config(), dam, pim)
    first = steps.start_run("dam", "test", services=services)
    queue.drain()
    report = run_report(first.run_id, services=services)["counts"]  # type: ignore[arg-type]
    assert (report["created"], report["superseded"]) == (4, 0)
    forced = steps.start_run("dam", "test", full=True, force=True, services=services)
    queue.drain(duplicate=1.0, rng=random.Random(7))  # every task twice
    report = run_report(forced.run_id, services=services)["counts"]  # type: ignore[arg-type]
    assert (report["updated"], report["superseded"]) == (4, 0)


def test_the_real_time_path_drops_a_stale_version_too(namespace: str) -> None:
    dam = FakeDam([make_asset(0)])
    pim = FakePim()
    services, queue = make_services(make_config(), dam, pim)
    dam.edit("A00000-X", label="newer")
    steps.start_run("dam", "test", services=services)
    queue.drain()
    dam.assets["A00000-X"] = make_asset(0)  # a stale read (an old replica) of the record
    counts = sync_assets_by_id("dam", ["A00000-X"], force=True, services=services)
    assert (counts["superseded"], counts["updated"], counts["requests"]) == (1, 0, 0)
    assert _label(pim, "A00000-X") == "newer"


# ---------------------------------------------------------------- the gate alone


def _asset(index: int, version: int | None) -> TransformedAsset:
    updated = None if version is None else T0 + timedelta(microseconds=version)
    return TransformedAsset(
        dam_id=f"d{index}", source="dam", family="packshots", code=f"c{index}",
        values={}, content_hash=f"h{version}", updated=updated,
    )


def _push(gate: VersionGate, written: dict[str, int | None],
          batch: Iterable[tuple[int, int | None]]) -> None:
    """One push: claim the batch, then write what the gate let through."""
    assets = [_asset(i, v) for i, v in batch]
    for asset, allowed in zip(assets, gate.claim(assets), strict=True):
        if allowed:
            written[asset.code] = (
                None if asset.updated is None else
                int((asset.updated - T0) / timedelta(microseconds=1))
            )


batches = st.lists(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**40)), min_size=1, max_size=6),
    min_size=1, max_size=12,
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pushes=batches)
def test_whatever_the_order_of_pushes_the_last_written_version_is_the_max(
    namespace: str, pushes: list[list[tuple[int, int]]]
) -> None:
    gate = VersionGate(get_redis(), Keys(f"{namespace}:{id(pushes)}"))
    gate.redis.delete(gate.key)
    written: dict[str, int | None] = {}
    for batch in pushes:
        _push(gate, written, batch)
    newest: dict[str, int] = {}
    for batch in pushes:
        for index, version in batch:
            newest[f"c{index}"] = max(version, newest.get(f"c{index}", version))
    assert written == newest
    gate.redis.delete(gate.key)


def test_assets_without_a_dam_time_are_never_dropped(namespace: str) -> None:
    gate = VersionGate(get_redis(), Keys(namespace))
    assert gate.claim([_asset(0, 10)]) == [True]
    assert gate.claim([_asset(0, None), _asset(0, 9), _asset(0, 10)]) == [True, False, True]


def test_recording_a_push_older_than_the_gate_keeps_the_newer_hash(namespace: str) -> None:
    """The hash of a push that landed before a newer one is not recorded over the newer
    one's (compared against the gate in the same script); with nothing recorded yet the
    state is written without its hash (never "unchanged"), and a refused newer push's
    `failed` state learns that the PIM holds the asset."""
    from connector.pipeline.stores import AssetStateStore, PushedState, dam_version

    def v(micros: int) -> int | None:
        return dam_version(T0 + timedelta(microseconds=micros))

    keys = Keys(f"{namespace}:record")
    redis = get_redis()
    gate, store = VersionGate(redis, keys), AssetStateStore(redis, keys)

    def state(code: str, hash_: str | None, status: str = "updated",
              in_pim: bool = True) -> PushedState:
        return PushedState(code=code, family="packshots", content_hash=hash_, status=status,
                           in_pim=in_pim)

    try:
        assert gate.claim([_asset(0, 5), _asset(1, 5), _asset(2, 5), _asset(3, None)]) == [
            True] * 4
        store.record_many("dam", [("d0", state("c0", "h5"))], {"d0": v(5)})
        store.record("dam", "d2", state("c2", None, status="failed", in_pim=False))
        recorded = store.record_many(
            "dam",
            [("d0", state("c0", "h4")), ("d1", state("c1", "h4")),
             ("d2", state("c2", "h4")), ("d3", state("c3", "hx"))],
            {"d0": v(4), "d1": v(4), "d2": v(4), "d3": None},
        )
        assert recorded == {"d3"}
        assert store.hashes("dam", ["d0", "d1", "d2", "d3"]) == {"d0": "h5", "d3": "hx"}
        d1, d2 = store.get("dam", "d1"), store.get("dam", "d2")
        assert d1 is not None and d1.status == "updated" and d1.live
        assert d2 is not None and d2.status == "failed" and d2.live
        assert [store.dam_id_of("dam", f"c{i}") for i in range(4)] == ["d0", "d1", "d2", "d3"]
        assert store.record_many("dam", [("d0", state("c0", "h5b"))], {"d0": v(5)}) == {"d0"}
        assert store.hashes("dam", ["d0"]) == {"d0": "h5b"}
    finally:
        redis.delete(gate.key, keys.of("asset", "dam"), keys.of("code", "dam"))
