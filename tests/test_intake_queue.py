"""Queue intake: Redis-stream consumer group and AMQP (RabbitMQ) consumer, real servers."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from connector.config.model import EventFieldsConfig, QueueIntakeConfig
from connector.intake.consumer import masked_url
from connector.intake.redis_stream import RedisStreamConsumer
from connector.intake.store import IntakeStore
from connector.redis_conn import Keys
from tasks.amqp_consumer import AmqpConsumer, publish_json
from tests.helpers import wait_for

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
EVENTS = EventFieldsConfig(
    event_type="type",
    asset_id="id",
    delivery_id="message_id",
    actions={"asset.updated": "upsert", "asset.deleted": "delete"},
)


def msg(kind: str, asset: str, mid: str | None = None) -> bytes:
    body = {"type": kind, "id": asset}
    if mid:
        body["message_id"] = mid
    return json.dumps(body).encode()


@pytest.fixture
def store(namespace, redis_client):
    return IntakeStore(redis_client, Keys(namespace), "dam")


@pytest.fixture
def stream_cfg(namespace):
    return QueueIntakeConfig(name=f"{namespace}:dam-changes", group="connector",
                             claim_idle=0.2, events=EVENTS)


def test_stream_consumer_records_acks_and_parks(store, stream_cfg, redis_client):
    scheduled: list = []
    consumer = RedisStreamConsumer(stream_cfg, store, redis_client, consumer="c1",
                                   schedule=lambda s, c: scheduled.append(c), block_ms=10)
    consumer.ensure_group()
    stream = stream_cfg.name
    redis_client.xadd(stream, {"payload": msg("asset.updated", "A", "m1")})
    redis_client.xadd(stream, {"payload": msg("asset.updated", "A", "m1")})  # repeated
    redis_client.xadd(stream, {"payload": "{broken"})
    redis_client.xadd(stream, {"payload": msg("asset.deleted", "B")})
    redis_client.xadd(stream, {"type": "asset.updated", "id": "C"})  # plain fields
    while consumer.poll_once():
        pass
    assert sorted(store.pending_ids()) == ["A", "B", "C"]
    assert store.deleted_ids() == {"B"}
    assert store.log_length() == 3  # the repeated message id was recorded once
    parked = store.parked()
    assert len(parked) == 1 and parked[0]["reason"].startswith("invalid JSON")
    assert parked[0]["raw"] == "{broken"
    pending = redis_client.xpending(stream, "connector")
    assert pending["pending"] == 0  # everything acknowledged, the bad message too
    assert scheduled  # a flush was asked for


def test_crashed_consumer_messages_are_claimed(store, stream_cfg, redis_client):
    stream = stream_cfg.name
    dead = RedisStreamConsumer(stream_cfg, store, redis_client, consumer="dead")
    dead.ensure_group()
    redis_client.xadd(stream, {"payload": msg("asset.updated", "X")})
    # "dead" reads the message and dies before recording it
    redis_client.xreadgroup("connector", "dead", {stream: ">"}, count=10)
    assert redis_client.xpending(stream, "connector")["pending"] == 1
    live = RedisStreamConsumer(stream_cfg, store, redis_client, consumer="live", block_ms=10)
    wait_for(lambda: live.poll_once() or store.pending_count(), timeout=5, what="claim")
    assert store.pending_ids() == ["X"]
    assert redis_client.xpending(stream, "connector")["pending"] == 0


def test_restarted_consumer_reads_its_own_backlog_first(store, stream_cfg, redis_client):
    stream = stream_cfg.name
    cfg = QueueIntakeConfig(name=stream, claim_idle=3600, events=EVENTS)
    RedisStreamConsumer(cfg, store, redis_client, consumer="same").ensure_group()
    redis_client.xadd(stream, {"payload": msg("asset.updated", "Y")})
    redis_client.xreadgroup("connector", "same", {stream: ">"}, count=10)  # then a crash
    again = RedisStreamConsumer(cfg, store, redis_client, consumer="same", block_ms=10)
    again.poll_once()
    assert store.pending_ids() == ["Y"]


def test_stream_consumer_run_loop_stops(store, stream_cfg, redis_client):
    stop = threading.Event()
    consumer = RedisStreamConsumer(stream_cfg, store, redis_client, consumer="r", block_ms=50)
    t = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    t.start()
    redis_client.xadd(stream_cfg.name, {"payload": msg("asset.updated", "R")})
    wait_for(lambda: store.pending_ids() == ["R"], timeout=5)
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive()


@pytest.mark.rabbitmq
def test_amqp_consumer_records_parks_and_acks(store):
    queue = f"test-intake-{uuid.uuid4().hex[:8]}"
    cfg = QueueIntakeConfig(transport="amqp", url=AMQP_URL, name=queue, events=EVENTS)
    consumer = AmqpConsumer(cfg, store)
    stop = threading.Event()
    t = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    publish_json(AMQP_URL, queue, msg("asset.updated", "A", "m1"))
    publish_json(AMQP_URL, queue, msg("asset.updated", "A", "m1"))
    publish_json(AMQP_URL, queue, b"[1, 2")
    publish_json(AMQP_URL, queue, msg("asset.deleted", "B"), message_id="amqp-7")
    t.start()
    try:
        wait_for(lambda: len(store.parked()) == 1 and store.pending_count() == 2, timeout=10)
        assert store.deleted_ids() == {"B"}
        assert store.log_length() == 2
    finally:
        stop.set()
        t.join(timeout=10)
    from kombu import Connection

    with Connection(AMQP_URL) as conn:  # nothing left unacknowledged; then clean up
        q = conn.SimpleQueue(queue)
        assert q.qsize() == 0
        q.queue.delete()
        q.close()


def test_url_passwords_are_masked():
    assert masked_url("amqp://guest:pw@host:5672//") == "amqp://guest:***@host:5672//"
    assert masked_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
