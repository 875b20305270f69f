"""A fetch killed by its hard time limit ends its run `failed` with that reason at once,
not `abandoned` once the run lock's TTL (an hour by default) has passed.

The worker runs `tests.faults.celery_app` with FAULTS_FETCH_TIME_LIMIT=2: the fetch task's
hard limit is 2 s (no soft limit, so nothing in the child can catch it) and every DAM
answer takes longer, so Celery's pool kills the child mid-request. Two ways a fetch
starts: with its run id (`connector sync`, a continuation), and from beat without one
(the run is started inside the killed task: the worker's main process learns its id from
Redis).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.pipeline import run_report, start_run
from connector.redis_conn import get_redis
from tasks import routing
from tests.e2e.world import SOURCE, World
from tests.faults.support import broker_unacked, wait_run_end
from tests.helpers import wait_for

HARD_LIMIT = 2
APP = "tests.faults.celery_app"
#: far below the run lock's TTL (3600 s): an abandoned run would need the TTL to pass
DEADLINE = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    w = World(tmp_path, redis_url, 30,
              extra_env={"FAULTS_FETCH_TIME_LIMIT": str(HARD_LIMIT),
                         "FAULTS_RECONCILE_TIME_LIMIT": str(HARD_LIMIT)})
    try:
        w.start()
        assert w.dam is not None
        w.dam.configure(latency=HARD_LIMIT + 8.0)  # every DAM answer outlives the limit
        yield w
    finally:
        w.stop()


def _expect_failed_at_once(world: World, run_id: str, sent_at: float) -> None:
    assert world.services is not None
    report = wait_run_end(lambda: run_report(run_id, services=world.services),
                          timeout=DEADLINE, what=f"run {run_id}")
    took = time.monotonic() - sent_at
    assert report["state"] == "failed", (report, world.worker_log())
    reason = f"fetch of run {run_id} exceeded its hard time limit of {HARD_LIMIT} s"
    assert report["error"] == reason, report
    assert reason in report["counts"]["errors"], report["counts"]
    assert took < DEADLINE
    assert world.services.runs.holder(SOURCE) is None  # the lock is released
    assert world.services.runs.watermark(SOURCE) is None  # and the watermark untouched


def test_a_fetch_killed_by_its_hard_limit_fails_its_run_at_once(world: World) -> None:
    assert world.services is not None and world.app is not None
    services = world.services
    world.start_worker(1, app=APP, loglevel="INFO")

    # 1. a fetch that knows its run id (a manual sync)
    sent = time.monotonic()
    started = start_run(SOURCE, "test", services=services)
    assert started.started and started.run_id, started.message
    _expect_failed_at_once(world, started.run_id, sent)

    # 2. a scheduled fetch (beat sends no run id: the killed task started the run itself)
    sent = time.monotonic()
    world.app.send_task(routing.FETCH_TASK, kwargs={"source": SOURCE, "trigger": "schedule"},
                        queue=routing.queue_of(routing.FETCH_TASK))
    scheduled = wait_for(
        lambda: next((r for r in services.runs.run_ids(SOURCE) if r != started.run_id), None),
        timeout=DEADLINE, what="the scheduled run")
    _expect_failed_at_once(world, scheduled, sent)

    # the killed task's message is acknowledged, not handed out again (which would start
    # a third run): nothing left unacked, and only the two runs above
    broker = get_redis(world.broker_url)
    wait_for(lambda: broker_unacked(broker, world.namespace) == 0, timeout=DEADLINE,
             what="no unacknowledged message")
    assert sorted(services.runs.run_ids(SOURCE)) == sorted([started.run_id, scheduled])


def test_a_reconcile_killed_by_its_hard_limit_releases_its_lock_at_once(world: World) -> None:
    """A reconcile holds its source's lock (syncs of the source wait); killed, it would
    keep it for the lock's TTL (an hour). The worker's main process releases it."""
    assert world.services is not None and world.app is not None
    services = world.services
    world.start_worker(1, app=APP, loglevel="INFO")
    sent = time.monotonic()
    world.app.send_task(routing.RECONCILE_TASK, kwargs={"source": SOURCE, "apply": True},
                        queue=routing.queue_of(routing.RECONCILE_TASK))
    wait_for(lambda: (services.runs.holder(SOURCE) or "").startswith("reconcile:"),
             timeout=DEADLINE, what="the reconcile holding the lock")
    wait_for(lambda: services.runs.holder(SOURCE) is None, timeout=DEADLINE,
             what="the killed reconcile's lock released")
    assert time.monotonic() - sent < DEADLINE
    log = world.worker_log()
    assert f"reconcile of {SOURCE} exceeded its hard time limit of {HARD_LIMIT} s" in log, log
    # the source is free for a sync at once
    started = start_run(SOURCE, "test", services=services)
    assert started.started, started.message
