"""The validated configuration of real-time intake (webhooks, queues, micro-batches).

Kept apart from connector.config.model (which re-exports every name) so that each module
stays readable; a source's `webhook`, `queue` and `realtime` blocks are these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from connector.settings import Secret

EventAction = Literal["upsert", "delete", "ignore"]


@dataclass(frozen=True)
class EventFieldsConfig:
    """Where an incoming change event keeps its facts (dotted paths; `a[].b` maps over a list).

    One body may hold one event (an object) or several (a JSON array of objects).
    """

    event_type: str | None = "type"        # None = every event gets `default_action`
    asset_id: str | tuple[str, ...] = "id"  # a path, or paths tried in order (first id wins)
    delivery_id: str | None = None         # body path of the sender's delivery id
    delivery_id_header: str | None = None  # webhooks: header carrying the delivery id
    record: str | None = None              # full DAM record carried by the event, if any
    actions: dict[str, EventAction] = field(default_factory=dict)  # event type → action
    default_action: EventAction = "ignore" # event types not in `actions`


WebhookVerification = Literal["hmac", "digest", "bearer", "none", "sns"]

#: Where SNS serves certificates and confirmations; `{region}`: the TopicArn's region.
SNS_DEFAULT_HOSTS: tuple[str, ...] = ("sns.{region}.amazonaws.com",)


@dataclass(frozen=True)
class SnsConfig:
    """`verification: sns` (Bynder's webhooks come through Amazon SNS): which hosts the
    signing certificate and the SubscribeURL may come from (`*` = one DNS label,
    `{region}` = the TopicArn's region), and which topics are accepted (empty: any)."""

    cert_hosts: tuple[str, ...] = SNS_DEFAULT_HOSTS
    subscribe_hosts: tuple[str, ...] = SNS_DEFAULT_HOSTS
    topic_arns: tuple[str, ...] = ()
    confirm_subscriptions: bool = True
    timeout: float = 10.0


@dataclass(frozen=True)
class WebhookConfig:
    """How `POST /webhooks/<source>` authenticates a delivery and reads its events.

    hmac: HMAC(secret, payload); digest: hash(payload) where the payload template holds
    `{secret}` (Cloudinary: sha1/sha256 hex of body + timestamp + api secret); bearer: the
    header equals `prefix + secret`. `payload` is a template over `{body}`, `{timestamp}` and
    `{secret}` with literal text between them. sns: an Amazon SNS message whose RSA
    signature is checked against AWS's certificate (connector/intake/sns.py).
    """

    verification: WebhookVerification = "hmac"
    header: str = "X-Signature"
    algorithm: Literal["sha1", "sha256"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""                       # e.g. "sha256=" or "Bearer "
    payload: str = "{body}"
    timestamp_header: str | None = None
    tolerance: float = 300.0               # seconds either side of now
    secret: Secret | None = field(default=None, repr=False)
    max_body_bytes: int = 1024 * 1024
    dedupe_ttl: int = 7 * 24 * 3600        # seconds a delivery id is remembered
    events: EventFieldsConfig = field(default_factory=EventFieldsConfig)
    sns: SnsConfig = field(default_factory=SnsConfig)  # verification: sns only


@dataclass(frozen=True)
class QueueIntakeConfig:
    """A queue the DAM publishes change messages to (Redis stream, AMQP queue, or an SQS
    queue of S3 event notifications)."""

    transport: Literal["redis_stream", "amqp", "sqs"] = "redis_stream"
    url: str | None = field(default=None, repr=False)  # None: REDIS_URL / required (amqp)
    name: str = ""                         # stream key / queue name, as the DAM writes it
    group: str = "connector"               # redis_stream consumer group
    body_field: str = "payload"            # redis_stream: entry field holding the JSON body
    claim_idle: float = 60.0               # seconds before a dead consumer's message is claimed
    prefetch: int = 100
    dedupe_ttl: int = 7 * 24 * 3600
    events: EventFieldsConfig = field(default_factory=EventFieldsConfig)
    region: str | None = None              # sqs: None = the s3 block's, else AWS env
    endpoint_url: str | None = None        # sqs: an SQS-compatible endpoint; None: AWS
    wait_time: int = 20                    # sqs: long polling, seconds (≤ 20)
    visibility_timeout: int = 60           # sqs: seconds a received message stays hidden


@dataclass(frozen=True)
class RealtimeConfig:
    """Micro-batching of real-time events into bulk work."""

    window: float = 2.0                    # seconds an event may wait for company
    batch_size: int = 100                  # assets per flush (≤ 100: one bulk request)
    poll_enabled: bool = True              # keep the scheduled poll as a reconciliation pass
    batch_lease: float = 60.0              # seconds a silent in-flight batch is trusted
    max_retries: int = 8                   # transient failures of one flush
    log_maxlen: int = 100_000              # approximate length cap of the event log stream
