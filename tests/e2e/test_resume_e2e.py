"""End to end: task messages the broker lost (real Redis broker, real `celery -A tasks
worker`, sandbox DAM and PIM over HTTP) leave a run stuck until `connector resume RUN_ID`
(a separate process, as an operator types it) queues its unfinished steps again; the run
then ends with every asset in the PIM.

The loss is made by deleting the broker's queue lists, which is what the Redis transport's
pop-then-write gap does to one message when a worker dies in it
(connector/pipeline/watchdog.py). Beat's automatic version of the same resume, on many
random losses: tests/test_watchdog.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.pipeline import run_report, start_run
from connector.redis_conn import get_redis
from sandbox import harness
from sandbox.harness import ROOT
from tasks import routing
from tests.e2e.expected import check_pim_matches_dam
from tests.e2e.world import SOURCE, World
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(300)
ASSETS = 400


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    w = World(tmp_path, redis_url, ASSETS)
    try:
        w.start()
        yield w
    finally:
        w.stop()


def connector_cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tasks.cli", *args], env=world.env(),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_lost_messages_are_queued_again_by_connector_resume(world: World) -> None:
    assert world.services is not None and world.dam is not None and world.pim is not None
    services = world.services
    broker = get_redis(world.broker_url)
    prefix = harness.broker_prefix(world.namespace)

    # 1. a run whose fetch message is lost before any worker takes it
    started = start_run(SOURCE, "test", services=services)
    assert started.started and started.run_id, started.message
    run_id = started.run_id
    fetch_list = prefix + routing.FETCH_QUEUE
    assert broker.llen(fetch_list) == 1
    broker.delete(fetch_list)

    # 2. a worker on the fetch queue only; `connector resume` queues the fetch again
    fetcher = harness.start_process(
        harness.worker_argv(f"f-{world.namespace}@127.0.0.1", queues=routing.FETCH_QUEUE,
                            concurrency=1),
        world.env(), world.tmp / "fetcher.log")
    world.workers.append(fetcher)
    out = connector_cli(world, "resume", run_id, "--json")
    assert out.returncode == 0, out.stderr
    resumed = json.loads(out.stdout)
    assert resumed["fetch_part"] == 0 and resumed["chunks"] == [] and not resumed["closed"]
    wait_for(lambda: services.runs.get(run_id).fetch_done, timeout=120,
             what="the resumed fetch")

    # 3. every transform message is lost (both stage queues), none was taken
    transforms = [prefix + routing.TRANSFORM_QUEUE, prefix + routing.MEDIA_QUEUE]
    queued = sum(int(broker.llen(q)) for q in transforms)
    chunks = services.runs.progress(run_id)["chunks_total"]
    assert chunks >= 4 and queued == chunks
    media_chunks = int(broker.llen(prefix + routing.MEDIA_QUEUE))
    assert media_chunks >= 1
    broker.delete(*transforms)
    assert services.runs.get(run_id).state == "running"

    # 4. workers on every queue, and the operator's resume: the run ends, nothing lost
    world.start_worker(2)
    out = connector_cli(world, "resume", run_id)
    assert out.returncode == 0, out.stderr
    assert f"queued again: {chunks} chunk(s)" in out.stdout, out.stdout
    report = world.wait_run(run_id, timeout=180)
    assert report["state"] == "succeeded", (report, world.worker_log())
    checked = check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    assert report["counts"]["created"] == checked["landed"]
    assert report["counts"]["resumed"] == 2
    assert any("resumed: asked by an operator" in e for e in services.runs.errors(run_id))

    # an ended run is not resumed: exit 1, said why
    again = connector_cli(world, "resume", run_id)
    assert again.returncode == 1 and "already over (succeeded)" in again.stdout
    report_now = run_report(run_id, services=services)
    assert report_now["state"] == "succeeded"
