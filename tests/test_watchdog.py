"""connector/pipeline/watchdog.py on real Redis, the steps run in-process: whatever
messages the broker loses, a run the watchdog looks after still ends with every asset in
the PIM; a run that moves is left alone; a run whose source another run took is closed.

The same with real workers, a lost message and `connector resume`:
tests/e2e/test_resume_e2e.py; with SIGKILLed workers: tests/faults/test_worker_killed.py.
"""

from __future__ import annotations

import os
import random
import uuid
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector import pipeline
from connector.metrics.recorder import field
from connector.pipeline import Services
from connector.pipeline.runs import TERMINAL_STATES
from connector.pipeline.watchdog import progress_signature, resume_run, watch_runs
from connector.redis_conn import Keys, get_redis
from tests.pipeline_fakes import (
    FAMILIES,
    FakeCache,
    FakeDam,
    FakePim,
    FakeQuarantine,
    FakeTransformer,
    QueueEnqueuer,
    make_asset,
    make_config,
)

STALL = 30.0


class LossyEnqueuer(QueueEnqueuer):
    """Loses each message with probability `loss` (the broker's pop-then-write gap)."""

    def __init__(self, rng: random.Random, loss: float) -> None:
        super().__init__()
        self.rng = rng
        self.loss = loss
        self.lost: list[tuple[str, tuple[Any, ...]]] = []

    def _put(self, kind: str, args: tuple[Any, ...]) -> None:
        if self.rng.random() < self.loss:
            self.lost.append((kind, args))
            self.sent.append((kind, args))
            return
        super()._put(kind, args)


def lossy_services(assets: int, chunk_size: int, rng: random.Random, loss: float
                   ) -> tuple[Services, LossyEnqueuer, FakeDam, FakePim]:
    config = make_config(chunk_size=chunk_size)
    config = replace(config, sync=replace(config.sync, stall_after=STALL))
    dam = FakeDam([make_asset(i, FAMILIES[i % len(FAMILIES)], product=i % 7 != 3)
                   for i in range(assets)], page_size=23)
    pim = FakePim()
    lossy = LossyEnqueuer(rng, loss)
    transformer = FakeTransformer(code_prefix=config.sources[0].code_prefix)
    services = Services(
        config, get_redis(), Keys(f"{os.environ['CONNECTOR_NAMESPACE']}:{uuid.uuid4().hex[:8]}"),
        client=pim, cache=FakeCache(), sources={"dam": dam},
        enqueuer=lossy, transformer_factory=lambda s, src: transformer,
        quarantine=FakeQuarantine(),
    )
    lossy.services = services
    return services, lossy, dam, pim


def pim_codes(pim: FakePim) -> set[str]:
    return {code for family in pim.assets.values() for code in family}


def product_ids(dam: FakeDam) -> set[str]:
    return {a.id for a in dam.assets.values() if a.properties.get("product")}


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(assets=st.integers(1, 260), chunk_size=st.integers(7, 120),
       loss=st.sampled_from([0.0, 0.1, 0.3, 0.6]), seed=st.integers(0, 2**16))
def test_whatever_messages_are_lost_the_watched_run_ends_with_every_asset(
    namespace: str, assets: int, chunk_size: int, loss: float, seed: int
) -> None:
    rng = random.Random(seed)
    services, queue, dam, pim = lossy_services(assets, chunk_size, rng, loss)
    started = pipeline.start_run("dam", "test", services=services)
    assert started.run_id is not None
    run_id = started.run_id
    clock = 1_000_000.0
    resumes = 0
    for _ in range(400):
        queue.drain(rng=rng, duplicate=0.1)
        if services.runs.get(run_id).state in TERMINAL_STATES:
            break
        # beat's view, every STALL: it notes the signature, then resumes once it is quiet
        # long enough (twice as long after each resume that brought no progress)
        resumed = watch_runs(services=services, now=clock)
        assert [r.run_id for r in resumed] in ([], [run_id])
        resumes += len(resumed)
        clock += STALL
    record = services.runs.get(run_id)
    assert record.state == "succeeded", (record, services.runs.errors(run_id))
    # every product asset is in the PIM, once; nothing invented
    assert len(pim_codes(pim)) == len(product_ids(dam))
    assert resumes <= len(queue.lost), "a resume without a lost message"
    if resumes:
        assert services.runs.counts(run_id).get("resumed") == resumes
        assert any(e.startswith("resumed: no progress for 30 s") for e in
                   services.runs.errors(run_id))
    # the finished run is left alone
    assert watch_runs(services=services, now=clock + 10 * STALL) == []


def test_a_run_that_moves_is_never_resumed(namespace: str) -> None:
    services, queue, _dam, _pim = lossy_services(120, 20, random.Random(1), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    assert started.run_id is not None
    clock = 5_000.0
    assert watch_runs(services=services, now=clock) == []
    while queue.queue:  # one step at a time, each one more than STALL after the last
        kind, args = queue.queue.popleft()
        queue.run_one(kind, args)
        clock += STALL + 1
        assert watch_runs(services=services, now=clock) == [], (kind, args)
    assert services.runs.get(started.run_id).state == "succeeded"


def test_a_quiet_run_waits_until_stall_after(namespace: str) -> None:
    services, queue, _dam, _pim = lossy_services(10, 5, random.Random(2), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    assert started.run_id is not None
    queue.queue.clear()  # the fetch message is lost
    assert watch_runs(services=services, now=100.0) == []
    assert watch_runs(services=services, now=100.0 + STALL - 0.5) == []
    resumed = watch_runs(services=services, now=100.0 + STALL)
    assert len(resumed) == 1 and resumed[0].fetch_part == 0
    assert [k for k, _ in queue.queue] == ["fetch"]
    # watched again from the resume on: not resumed twice for one quiet stretch
    assert watch_runs(services=services, now=100.0 + STALL + 1) == []
    # that resume's message is lost too (no worker): the next one waits twice as long,
    # then four times (a fleet away for hours finds a few copies, not one per minute)
    queue.queue.clear()
    resumed_at = 100.0 + STALL
    assert watch_runs(services=services, now=resumed_at + 2 * STALL - 1) == []
    assert len(watch_runs(services=services, now=resumed_at + 2 * STALL)) == 1
    resumed_at += 2 * STALL
    assert watch_runs(services=services, now=resumed_at + 4 * STALL - 1) == []
    assert len(watch_runs(services=services, now=resumed_at + 4 * STALL)) == 1
    assert [k for k, _ in queue.queue] == ["fetch", "fetch"]
    resumed_metric = services.redis.hget(services.keys.of("metrics"),
                                         field("runs_resumed", "dam", "watchdog"))
    assert resumed_metric is not None and float(resumed_metric) == 3
    queue.drain()
    assert services.runs.get(started.run_id).state == "succeeded"


def test_resume_queues_only_what_is_not_done(namespace: str) -> None:
    services, queue, _dam, pim = lossy_services(200, 25, random.Random(3), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    run_id = started.run_id
    assert run_id is not None
    kind, args = queue.queue.popleft()
    queue.run_one(kind, args)  # the fetch: 8 chunks queued
    chunks = [a for k, a in queue.queue if k == "transform"]
    assert len(chunks) == 8
    for _ in range(3):  # three chunks done, the other five messages lost
        kind, args = queue.queue.popleft()
        queue.run_one(kind, args)
    done_pushes = [a for k, a in queue.queue if k == "push"]
    queue.queue.clear()
    out = resume_run(run_id, services=services)
    assert out.fetch_part is None
    assert out.chunks == sorted((c[1] for c in chunks[3:]), key=lambda i: (len(i), i))
    assert out.batches == sorted({a[1] for a in done_pushes}, key=lambda i: (len(i), i))
    assert out.summary().startswith("queued again: 5 chunk(s)")
    queue.drain()
    assert services.runs.get(run_id).state == "succeeded"
    assert len(pim_codes(pim)) == 200 - len([i for i in range(200) if i % 7 == 3])


def test_a_dead_finisher_is_replaced(namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services, queue, _dam, _pim = lossy_services(30, 10, random.Random(4), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    run_id = started.run_id
    assert run_id is not None
    real_finalize = services.runs.finalize

    def dies(*a: Any, **kw: Any) -> Any:
        raise SystemExit("killed after claiming the end")

    monkeypatch.setattr(services.runs, "finalize", dies)
    with pytest.raises(SystemExit):
        queue.drain()
    monkeypatch.setattr(services.runs, "finalize", real_finalize)
    assert services.runs.get(run_id).state == "running"
    assert services.redis.hget(services.runs.prefix(run_id), "finisher") is not None
    out = resume_run(run_id, services=services)
    assert out.ended and out.queued == 0
    record = services.runs.get(run_id)
    assert record.state == "succeeded"
    assert services.runs.holder("dam") is None and services.runs.watermark("dam") is not None


def run_with_expired_lock(seed: int) -> tuple[Services, QueueEnqueuer, str]:
    """A run whose fetch message was lost and whose source lock expired since."""
    services, queue, _dam, _pim = lossy_services(10, 5, random.Random(seed), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    assert started.run_id is not None
    queue.queue.clear()
    services.redis.delete(services.runs.lock_key("dam"))
    return services, queue, started.run_id


def test_a_run_whose_source_another_run_took_is_closed(namespace: str) -> None:
    services, queue, run_id = run_with_expired_lock(5)
    assert services.runs.acquire("dam", "reconcile-token", 60) is None  # taken by another
    out = resume_run(run_id, services=services)
    assert out.closed and "held by reconcile-token" in out.closed
    record = services.runs.get(run_id)
    assert record.state == "failed" and "held by reconcile-token" in (record.error or "")
    assert services.runs.holder("dam") == "reconcile-token"
    assert services.runs.watermark("dam") is None
    assert queue.queue == type(queue.queue)()


def test_an_expired_lock_is_taken_back(namespace: str) -> None:
    services, queue, run_id = run_with_expired_lock(6)
    out = resume_run(run_id, services=services)
    assert out.closed is None and out.fetch_part == 0
    assert services.runs.holder("dam") == run_id
    queue.drain()
    assert services.runs.get(run_id).state == "succeeded"


def test_the_signature_moves_with_every_step(namespace: str) -> None:
    services, queue, _dam, _pim = lossy_services(60, 10, random.Random(7), 0.0)
    started = pipeline.start_run("dam", "test", services=services)
    assert started.run_id is not None
    seen = {progress_signature(services, started.run_id)}
    while queue.queue:
        kind, args = queue.queue.popleft()
        queue.run_one(kind, args)
        signature = progress_signature(services, started.run_id)
        assert signature not in seen, (kind, args)
        seen.add(signature)
