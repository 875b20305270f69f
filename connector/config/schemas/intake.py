"""A source's real-time intake blocks: `webhook`, `queue` (and their `events`), `realtime`.

`payload_template_errors` follows the same rules as connector/intake/signature.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, post_load, validates, validates_schema

from connector.config.fields import (
    HEADER_PATTERN,
    Bool,
    ByteSize,
    Choice,
    Duration,
    Int,
    Nested,
    PlainField,
    SecretField,
    Str,
    StrDict,
    StrList,
)
from connector.config.model import (
    EventFieldsConfig,
    QueueIntakeConfig,
    RealtimeConfig,
    SnsConfig,
    WebhookConfig,
)
from connector.config.schemas.base import StrictSchema
from connector.timebudget import countdown_problem

EVENT_ACTIONS = ("upsert", "delete", "ignore")
EVENT_PATH_MESSAGE = 'must be a dotted path such as "data.id" or "resources[].public_id"'
EVENT_PATH_PATTERN = r"[^.\s]+(?:\.[^.\s]+)*"


def EventPath(**kwargs: Any) -> Str:  # reads like a field class
    return Str(pattern=EVENT_PATH_PATTERN, pattern_message=EVENT_PATH_MESSAGE, **kwargs)


class EventPaths(PlainField):
    """One path (kept a string) or a list of paths tried in order (a tuple)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths = StrList(EventPath(), min_items=1)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str | tuple[str, ...]:
        paths: tuple[str, ...] = self.paths.deserialize(value)
        return paths[0] if isinstance(value, str) else paths


class EventFieldsSchema(StrictSchema):
    event_type = EventPath(allow_none=True)
    asset_id = EventPaths()
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


HOST_PATTERN_MESSAGE = (
    'must be a host name; "*" stands for one label, "{region}" for the topic\'s region '
    "(sns.{region}.amazonaws.com)"
)
HOST_PATTERN = r"(?:[A-Za-z0-9*-]+|\{region\})(?:\.(?:[A-Za-z0-9*-]+|\{region\}))*"
SNS_UNUSED = ("secret", "header", "algorithm", "encoding", "prefix", "payload",
              "timestamp_header", "tolerance")


class SnsSchema(StrictSchema):
    cert_hosts = StrList(
        Str(pattern=HOST_PATTERN, pattern_message=HOST_PATTERN_MESSAGE),
        min_items=1,
    )
    subscribe_hosts = StrList(
        Str(pattern=HOST_PATTERN, pattern_message=HOST_PATTERN_MESSAGE),
        min_items=1,
    )
    topic_arns = StrList(
        Str(pattern=r"arn:[a-z-]+:sns:[a-z0-9-]+:\d+:[A-Za-z0-9_-]+",
            pattern_message='must be a topic ARN such as "arn:aws:sns:eu-west-1:123:bynder"')
    )
    confirm_subscriptions = Bool()
    timeout = Duration(minimum=0, exclusive_minimum=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> SnsConfig:
        return SnsConfig(**data)


class WebhookSchema(StrictSchema):
    verification = Choice(("hmac", "digest", "bearer", "none", "sns"))
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
    sns = Nested(SnsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _verification_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("verification", "hmac")
        errors: dict[str, list[str]] = {}
        if kind == "sns":  # signed by AWS's certificate: no shared secret, no template
            for key in SNS_UNUSED:
                if key in original_data:
                    errors[key] = ['not used by verification "sns" (AWS signs the message)']
            if errors:
                raise ValidationError(errors)
            return
        if "sns" in original_data:
            errors["sns"] = ['only used by verification "sns"']
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


SQS_ONLY = ("region", "endpoint_url", "wait_time", "visibility_timeout")
SQS_UNUSED = ("group", "body_field", "claim_idle", "events")


class QueueSchema(StrictSchema):
    transport = Choice(("redis_stream", "amqp", "sqs"))
    url = Str(
        allow_none=True,
        pattern=r"(redis|rediss|amqp|amqps|unix|https?)://\S*",
        pattern_message="must be a redis://, rediss://, amqp:// or amqps:// URL (sqs: the "
        "queue's https:// URL)",
    )
    name = Str(required=True)
    group = Str()
    body_field = Str()
    claim_idle = Duration(minimum=0, exclusive_minimum=True)
    prefetch = Int(minimum=1)
    dedupe_ttl = Duration(integer=True, minimum=1)
    events = Nested(EventFieldsSchema)
    region = Str(
        allow_none=True,
        pattern=r"[a-z0-9][a-z0-9-]*",
        pattern_message='must be a region name such as "eu-west-1"',
    )
    endpoint_url = Str(
        allow_none=True,
        pattern=r"https?://[^\s/?#]+/?",
        pattern_message="must be an http(s) URL without a path",
    )
    wait_time = Duration(
        integer=True, minimum=0, maximum=20, maximum_reason="SQS long polling waits 20 s at most"
    )
    visibility_timeout = Duration(
        integer=True, minimum=0, maximum=43200, maximum_reason="SQS allows 12 hours at most"
    )

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _transport_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("transport", "redis_stream")
        errors: dict[str, list[str]] = {}
        if kind != "sqs":
            for key in SQS_ONLY:
                if key in original_data:
                    errors[key] = ['only used by transport "sqs"']
        else:
            for key in SQS_UNUSED:
                if key in original_data:
                    errors[key] = [
                        'not used by transport "sqs" (it reads S3 event notifications)'
                    ]
            url = original_data.get("url")
            if isinstance(url, str) and not url.startswith(("https://", "http://")):
                errors["url"] = ['transport "sqs" takes the queue\'s https:// URL']
            prefetch = original_data.get("prefetch")
            if isinstance(prefetch, int) and prefetch > 10:
                errors["prefetch"] = ["must be at most 10 for sqs (ReceiveMessage's limit)"]
        if kind in ("redis_stream", "amqp"):
            url = original_data.get("url")
            if isinstance(url, str) and url.startswith(("https://", "http://")):
                errors["url"] = [f'must be a redis:// or amqp:// URL for transport "{kind}"']
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
        if data.get("transport") == "sqs":
            data.setdefault("prefetch", 10)  # ReceiveMessage hands out 10 at most
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

    @validates("window")
    def _fits_the_time_budget(self, value: float, **kwargs: Any) -> None:
        # the flush's countdown (connector/intake/recorder.py; connector/timebudget.py)
        problem = countdown_problem(value)
        if problem is not None:
            raise ValidationError(problem)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> RealtimeConfig:
        return RealtimeConfig(**data)
