"""A fetch longer than RabbitMQ's consumer_timeout, over RabbitMQ, with the timeout lowered.

RabbitMQ 3.10 has no per-queue `x-consumer-timeout` (3.12+), so the broker's own setting is
lowered at runtime (`rabbitmqctl eval application:set_env(...)`: channels opened from then
on use it; the channel tick that checks it is shortened too) and restored afterwards.
A raw kombu consumer first shows that the lowered timeout is live (its unacknowledged
delivery gets its channel closed); then a real `celery -A tasks worker` syncs a slow DAM
whose listing takes several timeouts: the fetch goes on in parts, none of which outlives
the timeout, and the run lands every asset once. Skipped, with the reason, without a
reachable RabbitMQ or without rabbitmqctl rights.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.pipeline.steps.slices import FetchSlices
from tasks import routing
from tests.e2e.expected import check_pim_matches_dam
from tests.e2e.test_e2e_rabbitmq import AMQP_URL, _reachable
from tests.e2e.world import SOURCE, World
from tests.helpers import wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(300)]

TIMEOUT_MS = 6000  # the lowered consumer_timeout
TICK_MS = 500      # how often a channel checks it (60 s by default)


def _ctl(expr: str) -> str:
    out = subprocess.run(["rabbitmqctl", "eval", expr], capture_output=True, text=True,
                         timeout=30, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or out.stdout.strip())
    return out.stdout.strip()


@pytest.fixture(scope="module")
def lowered_timeout() -> Iterator[None]:
    if not _reachable():
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: consumer_timeout cannot be lowered")
    try:
        before = {k: _ctl(f"application:get_env(rabbit, {k}).")
                  for k in ("consumer_timeout", "channel_tick_interval")}
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"rabbitmqctl cannot talk to the broker ({exc})")
    _ctl(f"application:set_env(rabbit, consumer_timeout, {TIMEOUT_MS}).")
    _ctl(f"application:set_env(rabbit, channel_tick_interval, {TICK_MS}).")
    try:
        yield
    finally:
        for key, value in before.items():
            if value.startswith("{ok,"):
                _ctl(f"application:set_env(rabbit, {key}, {value[4:-1]}).")
            else:
                _ctl(f"application:unset_env(rabbit, {key}).")


def test_the_lowered_timeout_is_live(lowered_timeout: None) -> None:
    """The control: a delivery held unacknowledged past the timeout loses its channel."""
    from kombu import Connection, Queue

    name = f"consumer-timeout-probe-{os.getpid()}"
    with Connection(AMQP_URL) as conn:
        queue = Queue(name, auto_delete=True)
        producer = conn.Producer()
        producer.publish({"probe": 1}, routing_key=name, declare=[queue])
        channel = conn.channel()
        received: list[object] = []
        consumer = conn.Consumer(queue, callbacks=[lambda body, msg: received.append(msg)],
                                 channel=channel)
        consumer.qos(prefetch_count=1)
        consumer.consume()
        deadline = time.monotonic() + 30
        closed = None
        while time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                continue
            except Exception as exc:  # the broker closed the channel: PRECONDITION_FAILED
                closed = exc
                break
        assert received, "the probe message never arrived"
        assert closed is not None and "timed out" in str(closed).lower(), closed
    with Connection(AMQP_URL) as conn:  # clean up
        conn.default_channel.queue_delete(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
          lowered_timeout: None) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("amqp-long")), AMQP_URL, 120)
    try:
        w.start(fetch_slice_seconds=1, chunk_size=10)

        def small_pages(data: dict) -> None:  # type: ignore[type-arg]
            for source in data["sources"].values():
                source["rest"]["pagination"]["page_size"] = 10

        w.edit_config(small_pages)
        assert w.dam is not None
        w.dam.configure(latency=0.7)  # 13 pages x 0.7 s: ~9 s of listing, > the timeout
        w.start_worker()
        yield w
    finally:
        w.stop()


def test_a_fetch_longer_than_the_consumer_timeout_goes_on_in_parts(world: World) -> None:
    assert world.services is not None
    started = time.monotonic()
    report = world.sync(timeout=180)
    took = time.monotonic() - started
    assert report["state"] == "succeeded", report
    checked = check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    assert report["counts"]["created"] == checked["landed"]
    assert report["counts"]["seen"] == 120  # every asset once
    # the listing alone outlasted the consumer timeout (the DAM's request log) ...
    assert world.dam is not None
    listing = [r["t"] for r in world.dam.request_log() if r["path"] == "/api/v4/media/"]
    assert len(listing) >= 13
    assert max(listing) + 0.7 - min(listing) > TIMEOUT_MS / 1000, listing
    assert took > TIMEOUT_MS / 1000, took
    # ... in parts of about a second each (slice 1 s + one 0.7 s page)
    parts = FetchSlices(world.services, report["run_id"]).load().part
    assert parts >= 5, parts
    log = world.worker_log()
    assert "PRECONDITION_FAILED" not in log and "timed out" not in log.lower(), log[-3000:]
    # and the broker's queues carry the deployment's namespace
    from kombu import Connection

    with Connection(AMQP_URL) as conn:
        name = routing.broker_queue(routing.FETCH_QUEUE, world.namespace, AMQP_URL)
        assert name == f"{world.namespace}.fetch"
        _, _messages, consumers = conn.default_channel.queue_declare(name, passive=True)
        assert consumers >= 1


def _slow_world(tmp: Path, **sync: object) -> World:
    w = World(tmp, AMQP_URL, 120)
    w.start(chunk_size=10, **sync)

    def small_pages(data: dict) -> None:  # type: ignore[type-arg]
        for source in data["sources"].values():
            source["rest"]["pagination"]["page_size"] = 10

    w.edit_config(small_pages)
    assert w.dam is not None
    w.dam.configure(latency=0.7)
    return w


def test_without_parts_the_same_fetch_is_cut_off_by_the_broker(
    tmp_path: Path, redis_url: str, lowered_timeout: None
) -> None:
    """The counter-proof: one fetch task for the whole listing (a slice longer than the
    listing) is unacknowledged past the timeout, and RabbitMQ takes it back."""
    w = _slow_world(tmp_path, fetch_slice_seconds=600)
    try:
        w.start_worker()
        assert w.services is not None
        from connector.pipeline import start_run

        started = start_run(SOURCE, "test", services=w.services)
        assert started.started, started.message
        line = wait_for(
            lambda: next((x for x in w.worker_log().splitlines() if "timed out" in x), None),
            timeout=60, interval=0.5, what="RabbitMQ to time the fetch's delivery out")
        # amqp: "(406) PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out"
        assert "PRECONDITION_FAILED" in line and "acknowledgement" in line, line
    finally:
        w.stop()
