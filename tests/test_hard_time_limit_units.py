"""connector.pipeline.hard_time_limit_exceeded, without a worker (real Redis): idempotent,
the run id found from the task id, a stale fetch part and an unknown task left alone. The
killed-worker path itself: tests/faults/test_hard_time_limit.py."""

from __future__ import annotations

import pytest

from connector import pipeline
from connector.pipeline import Services
from connector.pipeline.steps.slices import FetchCheckpoint, FetchSlices
from connector.redis_conn import Keys, get_redis
from tests.pipeline_fakes import FakeCache, FakeDam, FakePim, QueueEnqueuer, make_asset, make_config


@pytest.fixture
def services(namespace: str) -> Services:
    queue = QueueEnqueuer()
    s = Services(make_config(), get_redis(), Keys(), client=FakePim(), cache=FakeCache(),
                 sources={"dam": FakeDam([make_asset(1)])}, enqueuer=queue)
    queue.services = s
    return s


def test_a_killed_scheduled_fetch_fails_the_run_it_started_once(services: Services) -> None:
    started = pipeline.start_run("dam", "schedule", services=services)
    assert started.run_id is not None
    run_id = started.run_id
    pipeline.remember_task_run("task-1", run_id, services=services)

    reason = pipeline.hard_time_limit_exceeded("fetch", 960.0, task_id="task-1",
                                               services=services)
    assert reason == f"fetch of run {run_id} exceeded its hard time limit of 960 s"
    record = services.runs.get(run_id)
    assert record.state == "failed" and record.error == reason
    assert services.runs.holder("dam") is None
    assert services.runs.watermark("dam") is None
    # a second report (Celery's signal, a redelivery) changes nothing
    assert pipeline.hard_time_limit_exceeded("fetch", 960.0, task_id="task-1",
                                             run_id=run_id, services=services) is None
    assert services.runs.errors(run_id) == [reason]


def test_nothing_to_fail_without_a_run_or_for_a_stale_fetch_part(services: Services) -> None:
    assert pipeline.hard_time_limit_exceeded("fetch", 2.0, task_id="never-started",
                                             services=services) is None
    started = pipeline.start_run("dam", "test", services=services, enqueue=False)
    assert started.run_id is not None
    slices = FetchSlices(services, started.run_id)
    assert slices.advance(0, FetchCheckpoint(part=1))
    # part 0 killed after part 1 took over the listing: the run goes on
    assert pipeline.hard_time_limit_exceeded("fetch", 2.0, task_id="t", run_id=started.run_id,
                                             part=0, services=services) is None
    assert services.runs.get(started.run_id).state not in ("failed", "succeeded")
    assert services.runs.holder("dam") == started.run_id


def test_a_killed_reconcile_releases_only_the_lock_it_still_holds(services: Services) -> None:
    tokens: list[str] = []

    def note(token: str) -> None:
        tokens.append(token)
        pipeline.remember_task_lock("rec-1", "dam", token, services=services)
        assert services.runs.holder("dam") == token  # noted while it holds the lock

    pipeline.reconcile("dam", services=services, on_locked=note)
    assert len(tokens) == 1 and tokens[0].startswith("reconcile:")
    # killed while holding it (the body's `finally` never ran): released, once
    assert services.runs.acquire("dam", tokens[0], 60) is None
    reason = pipeline.reconcile_time_limit_exceeded("rec-1", 3600.0, services=services)
    assert reason == ("reconcile of dam exceeded its hard time limit of 3600 s: its lock is "
                      "released, nothing it had not applied yet was applied")
    assert services.runs.holder("dam") is None
    assert pipeline.reconcile_time_limit_exceeded("rec-1", 3600.0, services=services) is None
    # its re-queue run took the lock over: left alone
    assert services.runs.acquire("dam", tokens[0], 60) is None
    assert services.runs.hand_over("dam", tokens[0], "run-after", 60) is None
    assert pipeline.reconcile_time_limit_exceeded("rec-1", 3600.0, services=services) is None
    assert services.runs.holder("dam") == "run-after"
    # a task that never took a lock
    assert pipeline.reconcile_time_limit_exceeded("other", 1.0, services=services) is None
