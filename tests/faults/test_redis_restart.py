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
from typing import Any

import pytest
import redis

from connector.pipeline import run_report, start_run
from tasks import routing
from tests.e2e.expected import check_pim_matches_dam, family_of
from tests.e2e.world import SOURCE, World
from tests.faults.support import PrivateRedis, sized, stop_worker, wait_run_end
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
    w = World(tmp_path, private_redis.url, ASSETS, redis_url=private_redis.url,
              extra_env={"FAULTS_VISIBILITY_TIMEOUT": "3"})
    try:
        w.start()
        yield w
    finally:
        w.stop()


def _report(world: World, run_id: str) -> dict[str, Any]:
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
    following_id = following.run_id
    after = wait_run_end(lambda: _report(world, following_id), timeout=sized(600, 120))
    assert after["state"] == "succeeded", (after, world.worker_log())
    assert after["counts"]["failed"] == 0
    check_pim_matches_dam(dam, pim, world.dam_server.url)  # type: ignore[union-attr]
    # Messages acked over the connection that died stay "unacked" in Redis; the transport
    # hands them out again after its visibility timeout (2 h in production). Compress that
    # time (the short-timeout app) and check that such late replays change nothing.
    writes = pim.counters()["bulk_asset_requests"]
    stop_worker(world.workers[0])
    world.start_worker(2, app="tests.faults.celery_app")
    client = private_redis.client()
    wait_for(lambda: _idle(client, world.namespace), timeout=60,
             what="every late replay done")
    assert pim.counters()["bulk_asset_requests"] == writes
    assert _report(world, following_id)["state"] == "succeeded"
    check_pim_matches_dam(dam, pim, world.dam_server.url)  # type: ignore[union-attr]


def _idle(client: redis.Redis, namespace: str) -> bool:
    """No message unacked and none waiting in the pipeline's queues."""
    prefix = f"{namespace}:celery:"
    lengths: list[Any] = [client.llen(prefix + q) for q in routing.QUEUES]
    lengths.append(client.hlen(prefix + "unacked"))
    return all(int(n) == 0 for n in lengths)
