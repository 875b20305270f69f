"""Shared by the webhook receiver and the queue consumers: parse, record, schedule a flush."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from connector.config.model import EventFieldsConfig
from connector.intake.events import Event, parse_events
from connector.intake.flush import FlushScheduler
from connector.intake.store import FLUSH_LATER, FLUSH_NOW, IntakeStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    status: Literal["accepted", "duplicate", "ignored"]
    events: int = 0
    pending: int = 0


def record_document(
    store: IntakeStore,
    doc: Any,
    fields: EventFieldsConfig,
    *,
    via: str,
    delivery_id: str | None,
    dedupe_ttl: int,
    schedule: FlushScheduler | None,
) -> Recorded:
    """Record the events of one parsed message; raises MalformedEvent when unreadable.

    Once `store.record` returned the events are durable: a failure to enqueue the flush is
    logged and swallowed (the next event, or the periodic sweep, schedules one).
    """
    return record_events(
        store,
        parse_events(doc, fields),
        via=via,
        delivery_id=delivery_id,
        dedupe_ttl=dedupe_ttl,
        schedule=schedule,
    )


def record_events(
    store: IntakeStore,
    events: list[Event],
    *,
    via: str,
    delivery_id: str | None,
    dedupe_ttl: int,
    schedule: FlushScheduler | None,
) -> Recorded:
    """Record already parsed events (a message shape with its own parser: S3 notifications)
    and schedule their flush; none: counted as ignored."""
    if not events:
        store.ignore(via)
        return Recorded("ignored")
    result = store.record(events, via=via, delivery_id=delivery_id, dedupe_ttl=dedupe_ttl)
    if not result.accepted:
        return Recorded("duplicate", 0, result.pending)
    if schedule is not None and result.schedule in (FLUSH_NOW, FLUSH_LATER):
        countdown = 0.0 if result.schedule == FLUSH_NOW else store.realtime.window
        try:
            schedule(store.source, countdown)
        except Exception:
            log.exception("could not enqueue a flush of %s (events are recorded)", store.source)
    return Recorded("accepted", len(events), result.pending)
