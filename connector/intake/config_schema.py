"""marshmallow schemas of a source's real-time intake blocks: webhook, queue, realtime.

They live in `connector.config.schema` (nested into `SourceSchema` there, written with that
module's fields so errors read alike); this module is their stable import path for the
intake package and its tests.
"""

from __future__ import annotations

from connector.config.schema import (
    EventFieldsSchema,
    QueueSchema,
    RealtimeSchema,
    WebhookSchema,
)

QueueIntakeSchema = QueueSchema

__all__ = [
    "EventFieldsSchema",
    "QueueIntakeSchema",
    "QueueSchema",
    "RealtimeSchema",
    "WebhookSchema",
]
