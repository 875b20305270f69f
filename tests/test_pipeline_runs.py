"""Run bookkeeping against the real Redis: batching across chunks, duplicate-safe
completion, replays and out-of-order finishes."""

from __future__ import annotations

import json
import random

import pytest

from connector import pipeline as steps
from connector.pipeline.runs import RunStore
from connector.redis_conn import Keys, get_redis
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services


@pytest.fixture
def store(namespace: str) -> RunStore:
    return RunStore(get_redis(), Keys(namespace))


def _new_run(store: RunStore, run_id: str = "r1") -> str:
    store.create(run_id, "dam", "test", full=False, since=None, asset_ids=None, force=False,
                 dry_run=False, watermark=None)
    return run_id


def _items(start: int, n: int, family: str = "packshots") -> list[tuple[str, str, str]]:
    return [(f"id{i}", family, json.dumps({"dam_id": f"id{i}"})) for i in range(start, start + n)]


def test_batches_are_filled_across_chunk_boundaries(store: RunStore) -> None:
    run = _new_run(store)
    store.transition(run, [(f"id{i}", "seen") for i in range(210)])
    assert store.enqueue_pending(run, "c0", _items(0, 70), 100) == []
    assert store.enqueue_pending(run, "c1", _items(70, 70), 100) == ["b1"]
    assert store.enqueue_pending(run, "c2", _items(140, 70), 100) == ["b2"]
    sizes = [len(store.load_batch(run, b)["items"]) for b in ("b1", "b2")]  # type: ignore[index]
    assert sizes == [100, 100]
    # the 10 left over are flushed once fetch and chunks are done
    for c in ("c0", "c1", "c2"):
        store.store_chunk(run, c, "{}")
    assert store.check_completion(run, "chunk:c2", 100) == ("wait", [])  # fetch not done
    store.set_fetch_done(run)
    for c in ("c0", "c1"):
        store.finish_chunk(run, c)
    assert store.check_completion(run, "chunk:c1", 100) == ("wait", [])  # c2 still running
    store.finish_chunk(run, "c2")
    verdict, batches = store.check_completion(run, "chunk:c2", 100)
    assert (verdict, batches) == ("push", ["b3"])
    assert len(store.load_batch(run, "b3")["items"]) == 10  # type: ignore[index]
    # every asset in exactly one batch, in order
    ids = [json.loads(json.dumps(i))["dam_id"] for b in ("b1", "b2", "b3")
           for i in store.load_batch(run, b)["items"]]  # type: ignore[index]
    assert ids == [f"id{i}" for i in range(210)]
    assert store.counts(run)["pending"] == 210


def test_replayed_chunk_neither_duplicates_nor_loses_batches(store: RunStore) -> None:
    run = _new_run(store)
    store.transition(run, [(f"id{i}", "seen") for i in range(150)])
    first = store.enqueue_pending(run, "c0", _items(0, 150), 100)
    assert first == ["b1"]
    # the task crashed before it enqueued b1 / marked the chunk done: the replay says b1 again
    assert store.enqueue_pending(run, "c0", _items(0, 150), 100) == ["b1"]
    assert store.counts(run)["pending"] == 150
    store.finish_batch(run, "b1")
    assert store.enqueue_pending(run, "c0", _items(0, 150), 100) == []  # b1 done now
    assert store.redis.llen(store.key(run, "pend", "packshots")) == 50


def test_flush_and_finish_have_exactly_one_owner_and_survive_replay(store: RunStore) -> None:
    run = _new_run(store)
    store.transition(run, [(f"id{i}", "seen") for i in range(30)])
    store.store_chunk(run, "c0", "{}")
    store.enqueue_pending(run, "c0", _items(0, 30), 100)
    store.finish_chunk(run, "c0")
    store.set_fetch_done(run)
    assert store.check_completion(run, "fetch", 100) == ("push", ["b1"])
    # another task arriving now is not the flusher and must wait for b1
    assert store.check_completion(run, "chunk:c0", 100) == ("wait", [])
    # the flusher's replay (crash before enqueuing) gets the same batch again
    assert store.check_completion(run, "fetch", 100) == ("push", ["b1"])
    store.finish_batch(run, "b1")
    assert store.check_completion(run, "batch:b1", 100) == ("finish", [])
    assert store.check_completion(run, "fetch", 100) == ("done", [])
    assert store.check_completion(run, "batch:b1", 100) == ("finish", [])  # replay of finisher


def test_state_transitions_only_move_forward(store: RunStore) -> None:
    run = _new_run(store)
    store.transition(run, [("a", "seen"), ("b", "seen"), ("c", "seen")])
    store.transition(run, [("a", "unchanged"), ("b", "skipped")])
    store.enqueue_pending(run, "c0", [("c", "packshots", "{}")], 100)
    store.transition(run, [("c", "created")])
    # replays of everything
    store.transition(run, [("a", "seen"), ("a", "unchanged"), ("c", "updated"), ("c", "seen")])
    store.enqueue_pending(run, "c0", [("c", "packshots", "{}"), ("a", "packshots", "{}")], 100)
    counts = store.counts(run)
    assert (counts["seen"], counts["unchanged"], counts["skipped"]) == (3, 1, 1)
    assert (counts["created"], counts["updated"], counts["pending"]) == (1, 0, 0)


def test_lock_is_exclusive_and_only_released_by_its_holder(store: RunStore) -> None:
    assert store.acquire("dam", "r1", 60) is None
    assert store.acquire("dam", "r2", 60) == "r1"
    assert not store.release("dam", "r2")
    assert store.renew("dam", "r1", 120)
    assert not store.renew("dam", "r2", 120)
    assert store.release("dam", "r1")
    assert store.acquire("dam", "r2", 60) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_tasks_give_exact_counts(namespace: str, seed: int) -> None:
    """Tasks delivered in random order, some twice (acks_late redelivery), still give one
    finish, exact counts, every asset in the PIM once, and full requests."""
    assets = [make_asset(i, family=("packshots", "user_guides", "videos")[i % 3])
              for i in range(600)]
    assets += [make_asset(1000 + i, product=False) for i in range(20)]
    assets += [make_asset(2000 + i, bad=True) for i in range(5)]
    dam, pim = FakeDam(assets), FakePim()
    services, queue = make_services(make_config(chunk_size=45), dam, pim)
    result = steps.start_run("dam", "test", services=services)
    assert result.run_id
    queue.drain(random.Random(seed), duplicate=0.3)
    record = services.runs.get(result.run_id)
    assert record.state == "succeeded", record
    report = record.report
    assert report["seen"] == 625
    assert (report["created"], report["updated"], report["skipped"]) == (600, 0, 20)
    assert (report["quarantined"], report["failed"]) == (5, 0)
    assert pim.total() == 600
    assert services.runs.holder("dam") is None
    assert services.runs.watermark("dam") is not None
    # 200 per family → 2 full requests each; duplicates may re-send, never split further
    assert all(n == 100 for _, n in pim.requests)


def test_sources_have_their_own_lock_watermark_and_run_list(store: RunStore) -> None:
    from datetime import UTC, datetime

    assert store.acquire("dam-a", "ra", 60) is None
    assert store.acquire("dam-b", "rb", 60) is None  # another source is not blocked
    store.set_watermark("dam-a", datetime(2026, 5, 1, tzinfo=UTC))
    assert store.watermark("dam-b") is None
    for run_id, source in (("ra", "dam-a"), ("rb", "dam-b")):
        store.create(run_id, source, "test", full=False, since=None, asset_ids=None,
                     force=False, dry_run=False, watermark=None)
    assert store.run_ids("dam-a") == ["ra"] and store.run_ids("dam-b") == ["rb"]
