"""What every queue consumer does with one message: record it, or park it — then ack.

A message that cannot be read is parked (with the reason) and acknowledged, so one bad
message never blocks the queue. A message that could not be *recorded* (Redis down) raises
`RecordingFailed`: the consumer must not ack it, so the queue redelivers it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from connector.config.model import QueueIntakeConfig
from connector.intake.events import Event, MalformedEvent, delivery_id_of, parse_json
from connector.intake.flush import FlushScheduler
from connector.intake.recorder import Recorded, record_document, record_events
from connector.intake.store import IntakeStore

log = logging.getLogger(__name__)


class RecordingFailed(Exception):
    """Redis did not take the event: leave the message unacknowledged."""


def masked_url(url: str) -> str:
    """`url` without its password, for log lines."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def handle_message(
    store: IntakeStore,
    cfg: QueueIntakeConfig,
    *,
    via: str,
    body: bytes | None,
    fields: Mapping[str, str] | None,
    transport_id: str | None,
    schedule: FlushScheduler | None,
    parse: Callable[[Any], list[Event]] | None = None,
) -> Recorded | None:
    """Record one message (None: it was parked). `body` is a JSON document; without one,
    `fields` (a Redis stream entry's field map) is the event itself. `parse` replaces the
    configured `events` paths for a message shape with its own reader (S3 notifications);
    the transport id is then the delivery id."""
    raw: bytes = body if body is not None else json.dumps(dict(fields or {})).encode()
    try:
        doc: Any = parse_json(body) if body is not None else dict(fields or {})
        if parse is not None:
            return record_events(
                store,
                parse(doc),
                via=via,
                delivery_id=transport_id,
                dedupe_ttl=cfg.dedupe_ttl,
                schedule=schedule,
            )
        delivery_id = delivery_id_of(doc, cfg.events) or transport_id
        return record_document(
            store,
            doc,
            cfg.events,
            via=via,
            delivery_id=delivery_id,
            dedupe_ttl=cfg.dedupe_ttl,
            schedule=schedule,
        )
    except MalformedEvent as exc:
        try:
            store.park(via, exc.reason, raw, {"message_id": transport_id or ""})
        except redis.RedisError as err:
            raise RecordingFailed(f"could not park a message: {type(err).__name__}") from err
        log.warning("parked a %s message for %s: %s", via, store.source, exc.reason)
        return None
    except redis.RedisError as exc:
        raise RecordingFailed(f"could not record a message: {type(exc).__name__}") from exc
