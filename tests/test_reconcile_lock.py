"""`reconcile` takes the source's run lock like a sync: the two never run together on one
source, and a reconcile that re-queues missing assets hands its lock to that run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from connector import pipeline as steps
from connector.dam.base import Page
from connector.pipeline import SourceBusyError, reconcile
from connector.transform.codes import asset_code
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services


def _world(n: int = 12) -> tuple[FakeDam, FakePim, Any, Any]:
    dam = FakeDam([make_asset(i, family="packshots") for i in range(n)])
    pim = FakePim()
    services, queue = make_services(make_config(), dam, pim)
    return dam, pim, services, queue


def test_a_reconcile_refuses_while_a_sync_of_the_source_runs(namespace: str) -> None:
    _, pim, services, queue = _world()
    started = steps.start_run("dam", "manual", services=services)
    assert started.started
    with pytest.raises(SourceBusyError) as refused:
        reconcile("dam", apply=True, services=services)
    assert str(refused.value) == (
        f"source dam is busy with run {started.run_id}: reconcile refused, "
        "try again when it has finished")
    assert pim.total() == 0  # nothing compared, nothing written
    assert services.runs.holder("dam") == started.run_id  # the run's lock is untouched
    queue.drain()  # the run ends and frees the source
    assert services.runs.holder("dam") is None
    assert reconcile("dam", services=services)["missing"] == 0


def test_a_sync_started_during_a_reconcile_is_busy(namespace: str) -> None:
    dam, _, services, queue = _world()
    seen: list[Any] = []
    listing = dam.changed_since

    def changed_since(since: datetime | None) -> Iterator[Page]:
        for page in listing(since):
            seen.append(steps.start_run("dam", "schedule", services=services))
            yield page

    dam.changed_since = changed_since  # type: ignore[method-assign]
    report = reconcile("dam", services=services)
    assert seen and all(r.busy for r in seen)
    assert seen[0].holder is not None and seen[0].holder.startswith("reconcile:")
    assert seen[0].message == (
        f"source dam is busy with a reconciliation ({seen[0].holder})")
    assert report["missing"] == 12
    # the reconcile released the lock: a sync starts now
    dam.changed_since = listing  # type: ignore[method-assign]
    assert services.runs.holder("dam") is None
    assert steps.start_run("dam", "manual", services=services).started
    queue.drain()


def test_a_repairing_reconcile_hands_its_lock_to_the_requeue_run(namespace: str) -> None:
    _, pim, services, queue = _world()
    applied = reconcile("dam", apply=True, services=services)
    requeue = applied["requeue"]
    assert requeue["busy"] is False and requeue["run_id"]
    assert services.runs.holder("dam") == requeue["run_id"]
    queue.drain()
    assert pim.get_asset("packshots", asset_code("A00000-X")) is not None
    assert services.runs.holder("dam") is None
