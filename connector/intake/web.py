"""The webhook receiver: a small WSGI app (`tasks.web:app` wires it for gunicorn).

`POST /webhooks/<source>` answers in milliseconds: size cap (413), authenticity (401),
JSON (400), then the events are appended to Redis in one Lua call and the answer is 202.
Nothing is transformed or pushed inside the request. `GET /healthz`, `GET /metrics`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from connector.config.model import Config, SourceConfig, WebhookConfig
from connector.intake import metrics
from connector.intake.events import MalformedEvent, delivery_id_of, parse_json
from connector.intake.flush import FlushScheduler
from connector.intake.recorder import record_document
from connector.intake.signature import VerificationError, verify
from connector.intake.store import IntakeStore
from connector.redis_conn import Keys

log = logging.getLogger(__name__)

VIA = "webhook"


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
    ) -> None:
        self.client = client
        self.keys = keys
        self.schedule = schedule
        self.last_success = last_success
        self.sources: dict[str, SourceConfig] = {s.name: s for s in config.sources}
        self.stores: dict[str, IntakeStore] = {
            s.name: IntakeStore(client, keys, s.name, s.realtime) for s in config.sources
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
        try:
            verify(cfg, request.headers, body)
        except VerificationError as exc:
            store.reject(VIA, exc.reason)
            log.info("webhook %s refused: %s", source_name, exc.detail)
            return _json(401, {"error": exc.detail})
        try:
            doc = parse_json(body)
            delivery_id = None
            if cfg.events.delivery_id_header:
                delivery_id = request.headers.get(cfg.events.delivery_id_header) or None
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

    def healthz(self) -> Response:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return _json(503, {"status": "unhealthy", "redis": type(exc).__name__})
        return _json(200, {"status": "ok", "redis": "ok"})

    def metrics(self) -> Response:
        text = metrics.render(self.client, self.keys, self.stores.values(), self.last_success)
        return Response(text, status=200, content_type=metrics.CONTENT_TYPE)
