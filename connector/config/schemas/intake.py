"""A source's real-time intake blocks: `webhook`, `queue` (and their `events`), `realtime`.

`payload_template_errors` follows the same rules as connector/intake/signature.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from connector.config.fields import (
    HEADER_PATTERN,
    Bool,
    ByteSize,
    Choice,
    Duration,
    Int,
    Nested,
    SecretField,
    Str,
    StrDict,
)
from connector.config.model import (
    EventFieldsConfig,
    QueueIntakeConfig,
    RealtimeConfig,
    WebhookConfig,
)
from connector.config.schemas.base import StrictSchema

EVENT_ACTIONS = ("upsert", "delete", "ignore")
EVENT_PATH_MESSAGE = 'must be a dotted path such as "data.id" or "resources[].public_id"'
EVENT_PATH_PATTERN = r"[^.\s]+(?:\.[^.\s]+)*"


def EventPath(**kwargs: Any) -> Str:  # reads like a field class
    return Str(pattern=EVENT_PATH_PATTERN, pattern_message=EVENT_PATH_MESSAGE, **kwargs)


class EventFieldsSchema(StrictSchema):
    event_type = EventPath(allow_none=True)
    asset_id = EventPath()
    delivery_id = EventPath(allow_none=True)
    delivery_id_header = Str(
        allow_none=True, pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name"
    )
    record = EventPath(allow_none=True)
    actions = StrDict(Choice(EVENT_ACTIONS))
    default_action = Choice(EVENT_ACTIONS)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> EventFieldsConfig:
        return EventFieldsConfig(**data)


_PLACEHOLDER = re.compile(r"\{(body|timestamp|secret)\}")


def payload_template_errors(template: str) -> list[str]:
    """Problems with a webhook payload template (same rules as connector.intake.signature)."""
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        return ["only {body}, {timestamp} and {secret} may appear in braces"]
    if "{body}" not in template:
        return ["must contain {body}"]
    return []


class WebhookSchema(StrictSchema):
    verification = Choice(("hmac", "digest", "bearer", "none"))
    header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")
    algorithm = Choice(("sha256", "sha1"))
    encoding = Choice(("hex", "base64"))
    prefix = Str(allow_empty=True)
    payload = Str()
    timestamp_header = Str(
        allow_none=True, pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name"
    )
    tolerance = Duration(minimum=0, exclusive_minimum=True)
    secret = SecretField()
    max_body_bytes = ByteSize(minimum=1)
    dedupe_ttl = Duration(integer=True, minimum=1)
    events = Nested(EventFieldsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _verification_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("verification", "hmac")
        errors: dict[str, list[str]] = {}
        if kind in ("hmac", "digest", "bearer") and "secret" not in original_data:
            errors["secret"] = [f'required for verification "{kind}"']
        if kind == "none" and "secret" in original_data:
            errors["secret"] = ['not used by verification "none"']
        if kind == "bearer":
            for key in ("algorithm", "encoding", "payload"):
                if key in original_data:
                    errors[key] = ['not used by verification "bearer"']
        payload = original_data.get("payload", "{body}")
        if isinstance(payload, str) and payload and kind != "bearer":
            problems = payload_template_errors(payload)
            if not problems and kind == "digest" and "{secret}" not in payload:
                problems = ['must contain {secret} for verification "digest"']
            if not problems and "{timestamp}" in payload and not original_data.get(
                "timestamp_header"
            ):
                problems = ["uses {timestamp}: set timestamp_header too"]
            if problems:
                errors["payload"] = problems
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> WebhookConfig:
        if data.get("verification") == "bearer":
            # A shared bearer secret travels in `Authorization: Bearer <secret>` unless said
            # otherwise.
            data.setdefault("header", "Authorization")
            data.setdefault("prefix", "Bearer ")
        return WebhookConfig(**data)


class QueueSchema(StrictSchema):
    transport = Choice(("redis_stream", "amqp"))
    url = Str(
        allow_none=True,
        pattern=r"(redis|rediss|amqp|amqps|unix)://\S*",
        pattern_message="must be a redis://, rediss://, amqp:// or amqps:// URL",
    )
    name = Str(required=True)
    group = Str()
    body_field = Str()
    claim_idle = Duration(minimum=0, exclusive_minimum=True)
    prefetch = Int(minimum=1)
    dedupe_ttl = Duration(integer=True, minimum=1)
    events = Nested(EventFieldsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _transport_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("transport", "redis_stream")
        errors: dict[str, list[str]] = {}
        if kind == "amqp":
            if original_data.get("url") is None:
                errors["url"] = ['required for transport "amqp"']
            for key in ("group", "body_field", "claim_idle"):
                if key in original_data:
                    errors[key] = ['not used by transport "amqp"']
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> QueueIntakeConfig:
        return QueueIntakeConfig(**data)


class RealtimeSchema(StrictSchema):
    window = Duration(minimum=0)
    batch_size = Int(
        minimum=1, maximum=100, maximum_reason="Akeneo accepts at most 100 assets per request"
    )
    poll_enabled = Bool()
    batch_lease = Duration(minimum=0, exclusive_minimum=True)
    max_retries = Int(minimum=0)
    log_maxlen = Int(minimum=1)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> RealtimeConfig:
        return RealtimeConfig(**data)
