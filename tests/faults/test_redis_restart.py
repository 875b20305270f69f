"""Redis (broker and state store at once) restarted in the middle of a run, with
append-only persistence on: the run completes or fails cleanly, the next run catches up,
nothing is lost.

The test runs a private redis-server (`--appendonly yes --appendfsync always`) on a free
port; SHUTDOWN and a start on the same directory and port is the restart. Sizes: 2,000
DAM assets (CONNECTOR_TEST_SIZE=full), 600 otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from connector.pipeline import run_report, start_run
from tests.e2e.expected import check_pim_matches_dam, family_of
from tests.e2e.world import SOURCE, World
from tests.faults.support import PrivateRedis, sized, wait_run_end
from tests.helpers import wait_for

ASSETS = sized(2000, 600)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(900, 240))]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture
def world(tmp_path: Path, private_redis: PrivateRedis) -> Iterator[World]:
    w = World(tmp_path, private_redis.url, ASSETS, redis_url=private_redis.url)
    try:
        w.start()
        yield w
    finally:
        w.stop()


def _report(world: World, run_id: str) -> dict:
    return run_report(run_id, services=world.services)


def test_redis_restart_mid_run_loses_nothing(world: World, private_redis: PrivateRedis) -> None:
    assert world.pim is not None and world.dam is not None and world.services is not None
    pim, dam, services = world.pim, world.dam, world.services
    pim.update_settings(bulk_latency=0.3)  # the pushes span the restart
    world.start_worker(2, loglevel="INFO")
    started = start_run(SOURCE, "test", services=services)
    assert started.started and started.run_id
    run_id = started.run_id
    mark_before = services.runs.watermark(SOURCE)

    wait_for(lambda: pim.counters()["bulk_asset_requests"] >= 2, timeout=120,
             what="pushes under way")
    private_redis.shutdown()
    worker_log = world.tmp / "worker0.log"
    # the worker notices (its broker connection drops) before Redis comes back
    wait_for(lambda: "Connection to broker lost" in worker_log.read_text(errors="replace"),
             timeout=30, what="the worker to notice the outage")
    private_redis.start()

    # the run record survived the restart (AOF) and the run ends one way or the other
    report = wait_run_end(lambda: _report(world, run_id), timeout=sized(600, 120))
    assert report["state"] in ("succeeded", "failed"), (report, world.worker_log())
    if report["state"] == "failed":
        assert report["error"], report  # a clean failure says why
        assert services.runs.watermark(SOURCE) == mark_before
    else:
        assert report["counts"]["failed"] == 0, report["counts"]
        check_pim_matches_dam(dam, pim, world.dam_server.url)  # type: ignore[union-attr]
    assert services.runs.holder(SOURCE) is None

    # the next run (a few DAM edits since) catches up: everything is in the PIM
    pim.update_settings(bulk_latency=0.0)
    edited = [i for i in dam.ids() if family_of(dam.record(i) or {}) == "packshots"][:5]
    for dam_id in edited:
        dam.edit(dam_id, {"description": f"after the restart {dam_id[:6]}"})
    following = start_run(SOURCE, "test", services=services)
    assert following.started and following.run_id, following.message
    after = wait_run_end(lambda: _report(world, following.run_id), timeout=sized(600, 120))
    assert after["state"] == "succeeded", (after, world.worker_log())
    assert after["counts"]["failed"] == 0
    check_pim_matches_dam(dam, pim, world.dam_server.url)  # type: ignore[union-attr]
    # the broker's own keys came back too: nothing waits unacked for a dead consumer
    client = private_redis.client()
    assert client.config_get("appendonly")["appendonly"] == "yes"
    wait_for(lambda: _unacked(client, world.namespace) == 0, timeout=30,
             what="no unacked message left")


def _unacked(client: redis.Redis, namespace: str) -> int:
    return int(client.hlen(f"{namespace}:celery:unacked"))
