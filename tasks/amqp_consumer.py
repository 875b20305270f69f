"""Consume DAM change messages from an AMQP queue (RabbitMQ) with kombu.

Each message is acknowledged only after its event is recorded in Redis (or parked as
unreadable); if recording fails the message is requeued, so a crash or an outage means
redelivery, not loss. The body is read raw (whatever the content type) and parsed as JSON.

Why it lives in tasks/ and not in connector.intake: it is an adapter to a message broker
(kombu, Celery's transport library), and `connector/` imports neither Celery nor kombu.
What a message means is decided in `connector.intake.consumer.handle_message`; this module
only moves bytes and acknowledgements. `connector intake amqp SOURCE` (tasks/cli.py) runs it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kombu import Connection, Consumer, Queue
from kombu.exceptions import KombuError

from connector.config.model import QueueIntakeConfig
from connector.intake.consumer import RecordingFailed, handle_message, masked_url
from connector.intake.flush import FlushScheduler
from connector.intake.store import IntakeStore
from connector.retry import RECONNECT_MAX, backoff_delay

log = logging.getLogger(__name__)

VIA = "amqp"


class AmqpConsumer:
    """Consumes queue `cfg.name` at `cfg.url`; `run(stop)` until `stop` is set."""

    def __init__(
        self,
        cfg: QueueIntakeConfig,
        store: IntakeStore,
        *,
        schedule: FlushScheduler | None = None,
        url: str | None = None,
    ) -> None:
        if not (url or cfg.url):
            raise ValueError("an amqp queue needs a url")
        self.cfg = cfg
        self.store = store
        self.schedule = schedule
        self.url = url or cfg.url or ""
        self.queue = Queue(cfg.name, durable=True)
        self._stop = threading.Event()

    def on_message(self, message: Any) -> None:
        body = message.body
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        props = getattr(message, "properties", {}) or {}
        transport_id = props.get("message_id") or (message.headers or {}).get("id")
        try:
            handle_message(
                self.store,
                self.cfg,
                via=VIA,
                body=raw,
                fields=None,
                transport_id=str(transport_id) if transport_id else None,
                schedule=self.schedule,
            )
        except RecordingFailed:
            message.requeue()
            raise
        message.ack()

    def run(self, stop: threading.Event, idle_backoff: float = 1.0) -> None:
        """Consume until `stop` is set; broker or Redis outages are waited out."""
        failures = 0  # in a row; the wait before reconnecting doubles with each
        log.info("consuming amqp queue %s at %s", self.cfg.name, masked_url(self.url))
        while not stop.is_set():
            try:
                with Connection(self.url, connect_timeout=5, heartbeat=30) as conn:
                    conn.ensure_connection(max_retries=1)
                    with Consumer(
                        conn.channel(),
                        queues=[self.queue],
                        on_message=self.on_message,
                        prefetch_count=self.cfg.prefetch,
                    ):
                        failures = 0
                        while not stop.is_set():
                            try:
                                conn.drain_events(timeout=0.5)
                            except TimeoutError:
                                conn.heartbeat_check()
            except (KombuError, OSError, RecordingFailed) as exc:
                failures += 1
                delay = backoff_delay(failures, idle_backoff, RECONNECT_MAX, jitter=False)
                log.warning(
                    "amqp consumer for %s: %s; retrying in %.0fs",
                    self.store.source,
                    type(exc).__name__,
                    delay,
                )
                stop.wait(delay)


def publish_json(url: str, queue: str, payload: bytes, message_id: str | None = None) -> None:
    """Publish one raw JSON message (tests, and `connector` tooling that simulates a DAM)."""
    with Connection(url, connect_timeout=5) as conn:
        producer = conn.Producer()
        producer.publish(
            payload,
            routing_key=queue,
            declare=[Queue(queue, durable=True)],
            content_type="application/json",
            content_encoding="utf-8",
            message_id=message_id,
            delivery_mode=2,
            retry=True,
        )
