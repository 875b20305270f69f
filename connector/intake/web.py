"""The webhook receiver: a small WSGI app (`tasks.web:app` wires it for gunicorn).

`POST /webhooks/<source>` answers in milliseconds: size cap (413), authenticity (401),
JSON (400), then the events are appended to Redis in one Lua call and the answer is 202.
Nothing is transformed or pushed inside the request. `GET /healthz`, `GET /metrics` (every
pipeline metric: connector.metrics.collector). A `verification: sns` source (Bynder) may
make one outbound GET inside a request: AWS's signing certificate the first time a URL is
seen (then cached), or a subscription's SubscribeURL (connector/intake/sns.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connector.config.model import Config, SourceConfig, WebhookConfig
from connector.intake.events import MalformedEvent, delivery_id_of, parse_json
from connector.intake.flush import FlushScheduler
from connector.intake.recorder import record_document
from connector.intake.signature import VerificationError, verify
from connector.intake.sns import SnsError, SnsMessage, SnsVerifier
from connector.intake.store import IntakeStore
from connector.metrics import collector as metrics
from connector.redis_conn import Keys

log = logging.getLogger(__name__)

VIA = "webhook"


# a refused SNS envelope: not JSON / not SNS → 400; AWS's certificate out of reach → 503
# (SNS delivers again after a 5xx, so nothing is lost); anything else → 401
_REFUSAL_STATUS = {"invalid_json": 400, "malformed": 400, "certificate_unavailable": 503}


def _json(status: int, body: Mapping[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


class WebhookApp:
    """WSGI callable; one instance per process, safe to call from many threads."""

    def __init__(
        self,
        config: Config,
        client: redis.Redis,
        keys: Keys,
        schedule: FlushScheduler | None = None,
        last_success: metrics.LastSuccess | None = None,
        queues: Sequence[str] = (),
        broker: redis.Redis | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.schedule = schedule
        self.last_success = last_success
        # every pipeline metric, read from Redis at each scrape (connector.metrics)
        self.collector = metrics.PipelineCollector(
            client, keys, config, queues, last_success=last_success, broker=broker
        )
        self.sources: dict[str, SourceConfig] = {s.name: s for s in config.sources}
        self.stores: dict[str, IntakeStore] = {
            s.name: IntakeStore(client, keys, s.name, s.realtime) for s in config.sources
        }
        # sources fed by Amazon SNS (Bynder): AWS's certificates cached per source
        self.sns: dict[str, SnsVerifier] = {
            s.name: SnsVerifier(s.webhook.sns)
            for s in config.sources
            if s.webhook is not None and s.webhook.verification == "sns"
        }
        self.url_map = Map(
            [
                Rule("/webhooks/<source>", endpoint="webhook", methods=["POST"]),
                Rule("/healthz", endpoint="healthz", methods=["GET"]),
                Rule("/metrics", endpoint="metrics", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            if endpoint == "webhook":
                response = self.webhook(request, args["source"])
            elif endpoint == "healthz":
                response = self.healthz()
            else:
                response = self.metrics()
        except NotFound:
            response = _json(404, {"error": "not found"})
        except HTTPException as exc:
            response = _json(exc.code or 500, {"error": exc.description or exc.name})
        except redis.RedisError as exc:
            # the event was not recorded: make the sender retry later
            log.error("redis unavailable while handling %s: %s", request.path, type(exc).__name__)
            response = _json(503, {"error": "storage unavailable, retry later"})
        return response(environ, start_response)

    # ------------------------------------------------------------ endpoints
    def webhook(self, request: Request, source_name: str) -> Response:
        source = self.sources.get(source_name)
        if source is None or source.webhook is None:
            return _json(404, {"error": f"no webhook configured for source {source_name!r}"})
        cfg: WebhookConfig = source.webhook
        store = self.stores[source_name]
        length = request.content_length
        if length is not None and length > cfg.max_body_bytes:
            store.reject(VIA, "too_large")
            return _json(413, {"error": f"body larger than {cfg.max_body_bytes} bytes"})
        body = request.stream.read(cfg.max_body_bytes + 1)
        if len(body) > cfg.max_body_bytes:
            store.reject(VIA, "too_large")
            return _json(413, {"error": f"body larger than {cfg.max_body_bytes} bytes"})
        delivery_id: str | None = None
        try:
            if cfg.verification == "sns":
                message = self.sns[source_name].parse(body)
                if message.type != "Notification":
                    return self.sns_control(source_name, cfg, message)
                doc: Any = message.document
                delivery_id = message.message_id  # SNS redelivers under the same id
            else:
                verify(cfg, request.headers, body)
        except VerificationError as exc:
            store.reject(VIA, exc.reason)
            log.info("webhook %s refused: %s", source_name, exc.detail)
            status = _REFUSAL_STATUS.get(exc.reason, 401)
            return _json(status, {"error": exc.detail})
        try:
            if cfg.verification != "sns":
                doc = parse_json(body)
            if cfg.events.delivery_id_header:
                delivery_id = request.headers.get(cfg.events.delivery_id_header) or delivery_id
            delivery_id = delivery_id or delivery_id_of(doc, cfg.events)
            outcome = record_document(
                store,
                doc,
                cfg.events,
                via=VIA,
                delivery_id=delivery_id,
                dedupe_ttl=cfg.dedupe_ttl,
                schedule=self.schedule,
            )
        except MalformedEvent as exc:
            bad_json = exc.reason.startswith("invalid JSON")
            store.reject(VIA, "invalid_json" if bad_json else "malformed")
            return _json(400, {"error": exc.reason})
        if outcome.status == "duplicate":
            return _json(200, {"status": "duplicate"})
        return _json(202, {"status": outcome.status, "events": outcome.events})

    def sns_control(self, source_name: str, cfg: WebhookConfig, message: SnsMessage) -> Response:
        """A verified SubscriptionConfirmation is confirmed (GET SubscribeURL); an
        UnsubscribeConfirmation is only logged. Neither records anything."""
        if message.type == "UnsubscribeConfirmation":
            log.warning("webhook %s: unsubscribed from %s", source_name, message.topic_arn)
            return _json(200, {"status": "unsubscribed"})
        if not cfg.sns.confirm_subscriptions:
            log.warning("webhook %s: subscription to %s left unconfirmed (confirm_"
                        "subscriptions: false)", source_name, message.topic_arn)
            return _json(200, {"status": "not confirmed"})
        try:
            self.sns[source_name].confirm(message)
        except SnsError as exc:
            log.error("webhook %s: %s", source_name, exc)
            return _json(502, {"error": str(exc)})  # SNS sends the confirmation again
        log.info("webhook %s: subscribed to %s", source_name, message.topic_arn)
        return _json(200, {"status": "subscribed"})

    def healthz(self) -> Response:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return _json(503, {"status": "unhealthy", "redis": type(exc).__name__})
        return _json(200, {"status": "ok", "redis": "ok"})

    def metrics(self) -> Response:
        text = metrics.exposition(self.collector)
        return Response(text, status=200, content_type=metrics.CONTENT_TYPE)
