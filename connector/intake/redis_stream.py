"""Consume DAM change messages from a Redis stream with a consumer group.

XREADGROUP hands each message to one consumer; it is XACKed only after the event is
recorded (or parked). Messages of a consumer that died stay pending: XAUTOCLAIM moves those
idle longer than `claim_idle` to a live consumer, so a crash means redelivery, not loss.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, cast

import redis

from connector.config.model import QueueIntakeConfig
from connector.intake.consumer import RecordingFailed, handle_message, masked_url
from connector.intake.flush import FlushScheduler
from connector.intake.store import IntakeStore
from connector.retry import RECONNECT_MAX, backoff_delay

log = logging.getLogger(__name__)

VIA = "redis_stream"


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisStreamConsumer:
    """One consumer of `cfg.name` in group `cfg.group`; `run(stop)` until `stop` is set."""

    def __init__(
        self,
        cfg: QueueIntakeConfig,
        store: IntakeStore,
        client: redis.Redis,
        *,
        consumer: str | None = None,
        schedule: FlushScheduler | None = None,
        block_ms: int = 1000,
        count: int = 100,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.client = client
        self.consumer = consumer or default_consumer_name()
        self.schedule = schedule
        self.block_ms = block_ms
        self.count = count
        self._own_backlog = True  # first read our own pending list (same name after a restart)

    @property
    def stream(self) -> str:
        return self.cfg.name

    def ensure_group(self) -> None:
        """Create the group (from the stream's start: nothing published earlier is skipped)."""
        try:
            self.client.xgroup_create(self.stream, self.cfg.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim_stale(self) -> int:
        """Take over messages a dead consumer left pending for longer than `claim_idle`."""
        handled = 0
        start = "0-0"
        while True:
            reply = cast(
                list[Any],
                self.client.xautoclaim(
                    self.stream,
                    self.cfg.group,
                    self.consumer,
                    min_idle_time=int(self.cfg.claim_idle * 1000),
                    start_id=start,
                    count=self.count,
                ),
            )
            start, entries = _s(reply[0]), reply[1]
            for entry_id, fields in entries:
                handled += self._handle(_s(entry_id), fields)
            if len(reply) > 2 and reply[2]:  # deleted while pending: nothing left to read
                self.client.xack(self.stream, self.cfg.group, *reply[2])
            if start == "0-0" or not entries:
                return handled

    def poll_once(self) -> int:
        """Claim stale messages, then read (and block up to block_ms for) new ones."""
        handled = self.claim_stale()
        entries: list[Any] = []
        if self._own_backlog:  # what was delivered to this name before a restart
            entries = self._read("0", block=None)
            self._own_backlog = bool(entries)
        if not entries:
            entries = self._read(">", block=self.block_ms)
        for entry_id, fields in entries:
            handled += self._handle(_s(entry_id), fields)
        return handled

    def _read(self, ident: str, block: int | None) -> list[Any]:
        reply = cast(
            list[Any],
            self.client.xreadgroup(
                self.cfg.group, self.consumer, {self.stream: ident}, count=self.count, block=block
            ),
        )
        return list(reply[0][1]) if reply else []

    def _handle(self, entry_id: str, fields: dict[bytes, bytes] | None) -> int:
        if not fields:  # deleted from the stream while pending
            self.client.xack(self.stream, self.cfg.group, entry_id)
            return 0
        decoded = {_s(k): _s(v) for k, v in fields.items()}
        body_text = decoded.get(self.cfg.body_field) if self.cfg.body_field else None
        handle_message(
            self.store,
            self.cfg,
            via=VIA,
            body=body_text.encode("utf-8") if body_text is not None else None,
            fields=decoded,
            transport_id=f"{self.stream}/{entry_id}",
            schedule=self.schedule,
        )
        self.client.xack(self.stream, self.cfg.group, entry_id)
        return 1

    def run(self, stop: threading.Event, idle_backoff: float = 1.0) -> None:
        """Consume until `stop` is set; Redis outages are waited out, never fatal."""
        failures = 0  # in a row; the wait before reconnecting doubles with each
        log.info(
            "consuming %s (group %s) as %s for source %s",
            self.stream,
            self.cfg.group,
            self.consumer,
            self.store.source,
        )
        while not stop.is_set():
            try:
                self.ensure_group()
                while not stop.is_set():
                    self.poll_once()
                    failures = 0
            except (redis.RedisError, RecordingFailed, OSError) as exc:
                failures += 1
                delay = backoff_delay(failures, idle_backoff, RECONNECT_MAX, jitter=False)
                log.warning(
                    "stream consumer for %s: %s; retrying in %.0fs",
                    self.store.source,
                    type(exc).__name__,
                    delay,
                )
                self._own_backlog = True
                stop.wait(delay)


def stream_client(cfg: QueueIntakeConfig, default_url: str) -> redis.Redis:
    url = cfg.url or default_url
    log.debug("stream intake connects to %s", masked_url(url))
    return redis.Redis.from_url(url, socket_timeout=30, health_check_interval=30)
