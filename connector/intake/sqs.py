"""Consume S3 event notifications from an SQS queue (boto3).

Long polling (`wait_time` ≤ 20 s per ReceiveMessage), up to `prefetch` ≤ 10 messages a call.
A received message stays invisible to other consumers for `visibility_timeout`; it is
deleted only after its events are durable in the intake store (or it was parked as
unreadable). A consumer that dies, or a Redis that refuses the record, leaves the message
undeleted: SQS hands it out again when the visibility timeout ends, so a crash means
redelivery, never loss. A redelivered message that had been recorded is a duplicate (the
SQS MessageId is the delivery id) and is deleted without a second record.

Unreadable messages (not JSON, not an S3 notification, another bucket) are parked in the
intake store with their reason (the stream `intake:parked:<source>`, counted as
rejected/malformed in the intake metrics) and deleted: one bad message never
blocks the queue, and nothing depends on an SQS redrive policy (which only catches messages
that keep failing to be *deleted*; configure one anyway for a consumer that cannot reach
Redis for long).

Why in connector/ and not in tasks/ like the AMQP consumer: the rule that sends kombu to
tasks/ is "connector/ never imports Celery or its transport"; boto3 is neither, and the S3
DAM adapter (connector/dam/s3.py) uses it already. boto3 is imported lazily (connector.aws),
so without the `[s3]` extra only these two modules are unusable, with a message saying how to
install it. What a message means is decided in connector.intake.s3_events.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from connector.aws import AwsSettings, client
from connector.config.model import QueueIntakeConfig, S3SourceConfig
from connector.dam.base import DamError
from connector.intake.consumer import RecordingFailed, handle_message
from connector.intake.events import Event
from connector.intake.flush import FlushScheduler
from connector.intake.s3_events import parse_s3_events
from connector.intake.store import IntakeStore
from connector.retry import RECONNECT_MAX, backoff_delay

log = logging.getLogger(__name__)

VIA = "sqs"


class SqsConsumer:
    """Consumes the SQS queue of S3 notifications of one `type: s3` source."""

    def __init__(
        self,
        cfg: QueueIntakeConfig,
        store: IntakeStore,
        s3: S3SourceConfig,
        *,
        schedule: FlushScheduler | None = None,
        sqs_client: Any = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.s3 = s3
        self.schedule = schedule
        self._client = sqs_client
        self._queue_url: str | None = cfg.url

    @property
    def client(self) -> Any:
        if self._client is None:
            settings = AwsSettings(
                region=self.cfg.region or self.s3.region,
                endpoint_url=self.cfg.endpoint_url,
                access_key_id=self.s3.access_key_id,
                secret_access_key=self.s3.secret_access_key,
                session_token=self.s3.session_token,
                # a long poll holds the connection for wait_time: read longer than that
                timeout=self.cfg.wait_time + 10.0,
                max_retries=3,
            )
            self._client = client("sqs", settings, f"source {self.store.source!r} (queue sqs)")
        return self._client

    @property
    def queue_url(self) -> str:
        """The configured URL, else the one SQS gives for `name` (one call, then kept)."""
        if self._queue_url is None:
            reply = self.client.get_queue_url(QueueName=self.cfg.name)
            self._queue_url = str(reply["QueueUrl"])
        return self._queue_url

    def parse(self, doc: Any) -> list[Event]:
        return parse_s3_events(doc, self.s3.bucket, self.s3.prefix)

    def poll_once(self) -> int:
        """One ReceiveMessage (long poll); record or park each message, then delete it.
        Returns how many messages were handled (recorded, duplicate, ignored or parked)."""
        reply = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(10, self.cfg.prefetch),
            WaitTimeSeconds=self.cfg.wait_time,
            VisibilityTimeout=self.cfg.visibility_timeout,
        )
        done: list[dict[str, str]] = []
        try:
            for message in reply.get("Messages") or ():
                self.handle(message)
                done.append({"Id": str(len(done)), "ReceiptHandle": message["ReceiptHandle"]})
        finally:
            # only what is recorded (or parked) goes; a RecordingFailed leaves the rest
            self._delete(done)
        return len(done)

    def handle(self, message: dict[str, Any]) -> None:
        """Record (or park) one message; RecordingFailed when Redis did not take it."""
        body = message.get("Body")
        handle_message(
            self.store,
            self.cfg,
            via=VIA,
            body=(body or "").encode("utf-8"),
            fields=None,
            transport_id=f"sqs/{message.get('MessageId', '')}",
            schedule=self.schedule,
            parse=self.parse,
        )

    def _delete(self, entries: list[dict[str, str]]) -> None:
        if not entries:
            return
        reply = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        for failed in reply.get("Failed") or ():
            # recorded already: a redelivery is a duplicate, so this costs a receive only
            log.warning(
                "sqs consumer for %s: could not delete a recorded message (%s)",
                self.store.source,
                failed.get("Code", "unknown"),
            )

    def run(self, stop: threading.Event, idle_backoff: float = 1.0) -> None:
        """Consume until `stop` is set; SQS or Redis outages are waited out, never fatal
        (a missing boto3 is: it is no outage)."""
        failures = 0
        log.info("consuming sqs queue %s for source %s", self.cfg.name, self.store.source)
        while not stop.is_set():
            try:
                self.poll_once()
                failures = 0
            except RecordingFailed as exc:
                failures += 1
                self._wait(stop, failures, idle_backoff, str(exc))
            except DamError:
                raise
            except Exception as exc:
                if not type(exc).__module__.startswith(("botocore", "urllib3", "redis")):
                    raise
                failures += 1
                self._wait(stop, failures, idle_backoff, type(exc).__name__)

    def _wait(self, stop: threading.Event, failures: int, base: float, reason: str) -> None:
        delay = backoff_delay(failures, base, RECONNECT_MAX, jitter=False)
        log.warning(
            "sqs consumer for %s: %s; retrying in %.0fs", self.store.source, reason, delay
        )
        stop.wait(delay)
