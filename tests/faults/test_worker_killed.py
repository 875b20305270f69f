"""A worker SIGKILLed three times during a sync (during the fetch, during pushes) and
restarted: nothing is lost, the only duplicate PIM writes are those of messages the dead
worker held unacked, and the watermark is the run's start minus the overlap.

Sizes: 5,000 DAM assets (CONNECTOR_TEST_SIZE=full), 1,000 otherwise.

The worker runs `tests.faults.celery_app` (the production app with a short broker
visibility timeout): a whole worker killed by SIGKILL leaves its messages unacked in
Redis, and the transport hands them out again only after that timeout (see the module).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connector.pipeline import Resumed, run_report, start_run, watch_runs
from connector.pipeline.runs import utcnow
from connector.redis_conn import get_redis
from tests.e2e.expected import check_pim_matches_dam
from tests.e2e.world import SOURCE, World
from tests.faults.support import (
    broker_unacked,
    ideal_bulk_writes,
    kill_pool_children,
    kill_worker,
    sized,
    wait_run_end,
)
from tests.helpers import wait_for

ASSETS = sized(5000, 1000)
CONCURRENCY = 2
VISIBILITY = sized(15, 6)  # seconds; longer than any task of this run takes
# a run with no progress this long has its unfinished steps queued again (the watchdog,
# which beat runs every minute; here the waiting loop plays beat): a message the Redis
# transport lost (a worker killed between its pop and its write, kombu#1836) is not
# redelivered by the visibility timeout
STALL_AFTER = 4 * VISIBILITY
APP = "tests.faults.celery_app"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(900, 240))]


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    w = World(tmp_path, redis_url, ASSETS,
              extra_env={"FAULTS_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        w.start()
        # A SIGKILLed process keeps its fleet-wide PIM budget leases until they expire
        # (2 x timeout + 30 s): by design, a crash costs the fleet those slots for a while.
        # Enough slots that the killed workers' leases never starve the restarted one.
        def change(data: dict[str, Any]) -> None:
            data["pim"].update(max_in_flight=4 + 3 * CONCURRENCY)
            data.setdefault("sync", {})["stall_after"] = STALL_AFTER

        w.edit_config(change)
        yield w
    finally:
        w.stop()


def test_three_sigkills_lose_nothing_and_duplicate_only_unacked_work(world: World) -> None:
    assert world.pim is not None and world.dam is not None and world.services is not None
    pim, dam, services = world.pim, world.dam, world.services
    broker = get_redis(world.broker_url)
    # Slow enough that every kill lands while work is in flight.
    pim.update_settings(bulk_latency=0.3)
    dam.configure(latency=0.05)
    worker = world.start_worker(CONCURRENCY, app=APP, loglevel="INFO")

    before = utcnow()
    started = start_run(SOURCE, "test", services=services)
    after = utcnow()
    assert started.started and started.run_id, started.message
    run_id = started.run_id

    def listing_pages() -> int:
        return int(dam.counters()["by_path"].get("/api/v4/media/", 0))

    def bulk_writes() -> int:
        return int(pim.counters()["bulk_asset_requests"])

    # The ideal request count is known only after the run; the kill points use the
    # expected number of product assets per 100 (≈ 94% of the DAM are product assets).
    expected_writes = max(6, ASSETS // 110)
    unacked_at_kills: list[int] = []

    # kill 1: the whole worker, while the fetch is streaming the DAM's pages
    wait_for(lambda: listing_pages() >= 2, timeout=60, what="the fetch under way")
    kill_worker(worker)
    unacked_at_kills.append(broker_unacked(broker, world.namespace))
    assert bulk_writes() == 0, "the fetch should still have been running"
    worker = world.start_worker(CONCURRENCY, app=APP, loglevel="INFO")

    # kill 2: the pool processes only (the main process requeues their tasks at once)
    wait_for(lambda: bulk_writes() >= expected_writes // 3, timeout=120,
             what="a third of the pushes")
    unacked_at_kills.append(broker_unacked(broker, world.namespace))
    assert kill_pool_children(worker) == CONCURRENCY

    # kill 3: the whole worker again, mid-push
    wait_for(lambda: bulk_writes() >= 2 * expected_writes // 3, timeout=120,
             what="two thirds of the pushes")
    kill_worker(worker)
    unacked_at_kills.append(broker_unacked(broker, world.namespace))
    report_now = run_report(run_id, services=services)
    assert report_now["state"] not in ("succeeded", "failed"), "killed after the run ended"
    worker = world.start_worker(CONCURRENCY, app=APP, loglevel="INFO")

    resumed: list[Resumed] = []

    def report_as_beat_watches() -> dict[str, Any]:
        resumed.extend(watch_runs(services=services))
        return dict(run_report(run_id, services=services))

    report = wait_run_end(report_as_beat_watches, timeout=sized(600, 150), what=f"run {run_id}")
    assert report["state"] == "succeeded", (report, world.worker_log())

    # nothing lost: every product asset in the PIM with exactly its expected values
    checked = check_pim_matches_dam(dam, pim, world.dam_server.url)  # type: ignore[union-attr]
    counts = report["counts"]
    assert counts["failed"] == 0, counts
    assert counts["seen"] == ASSETS, counts
    # a replayed push may find its assets already written (204): created or updated,
    # never counted twice
    assert counts["created"] + counts["updated"] == checked["landed"], counts

    # duplicates: only the work the killed worker held unacked may have been done twice
    ideal = ideal_bulk_writes(pim)
    writes = bulk_writes()
    # (and the batches of a lost message the watchdog queued again: at most once each)
    requeued = sum(len(r.batches) for r in resumed)
    assert ideal <= writes <= ideal + sum(unacked_at_kills) + requeued, (
        f"{writes} bulk writes for an ideal of {ideal}; unacked at the kills: "
        f"{unacked_at_kills}; batches queued again: {requeued}"
    )

    # watermark = this run's start - overlap (1 s in the test config)
    overlap = timedelta(seconds=world.config.sync.watermark_overlap)  # type: ignore[union-attr]
    mark = services.runs.watermark(SOURCE)
    assert mark is not None
    assert before - overlap <= mark <= after - overlap
    assert report["watermark_after"] == mark.isoformat()
    assert mark == services.runs.get(run_id).started_at - overlap
