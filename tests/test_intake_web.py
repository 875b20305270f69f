"""The webhook WSGI app in-process (werkzeug test client, real Redis): statuses and effects.

The same app under gunicorn with a real worker is covered by tests/e2e/test_webhooks_e2e.py.
"""

from __future__ import annotations

import json
import time

import pytest
from werkzeug.test import Client

from connector.config.model import (
    Config,
    EventFieldsConfig,
    RealtimeConfig,
    SourceConfig,
    WebhookConfig,
)
from connector.intake.signature import compute_signature
from connector.intake.store import IntakeStore
from connector.intake.web import WebhookApp
from connector.redis_conn import Keys
from connector.settings import Secret
from tests.helpers import samples

EVENTS = EventFieldsConfig(
    event_type="event",
    asset_id="asset_id",
    delivery_id_header="X-Delivery",
    actions={"asset.updated": "upsert", "asset.deleted": "delete"},
)
GENERIC = WebhookConfig(
    header="X-Signature",
    prefix="sha256=",
    secret=Secret("s3cret"),
    max_body_bytes=2048,
    events=EVENTS,
)
CLOUDINARY = WebhookConfig(
    verification="digest",
    header="X-Cld-Signature",
    algorithm="sha1",
    payload="{body}{timestamp}{secret}",
    timestamp_header="X-Cld-Timestamp",
    tolerance=600,
    secret=Secret("cld"),
    events=EventFieldsConfig(
        event_type="notification_type",
        asset_id="public_id",
        actions={"upload": "upsert"},
    ),
)


@pytest.fixture
def env(namespace, redis_client):
    config = Config(
        families=(),
        sources=(
            SourceConfig(name="dam", type="rest", webhook=GENERIC,
                         realtime=RealtimeConfig(window=5, batch_size=3)),
            SourceConfig(name="cld", type="rest", webhook=CLOUDINARY),
            SourceConfig(name="polled", type="rest"),
        ),
    )
    scheduled: list[tuple[str, float]] = []
    app = WebhookApp(config, redis_client, Keys(namespace),
                     schedule=lambda s, c: scheduled.append((s, c)))
    store = IntakeStore(redis_client, Keys(namespace), "dam", RealtimeConfig(batch_size=3))
    return Client(app), store, scheduled, app


def post(client, body, *, cfg=GENERIC, path="/webhooks/dam", headers=None, sign=True):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    if sign:
        h[cfg.header] = compute_signature(cfg, raw)
    h.update(headers or {})
    return client.post(path, data=raw, headers=h)


def test_signed_event_is_recorded_and_a_flush_scheduled(env):
    client, store, scheduled, _ = env
    r = post(client, {"event": "asset.updated", "asset_id": "A1"})
    assert r.status_code == 202 and r.json == {"status": "accepted", "events": 1}
    assert store.pending_ids() == ["A1"] and store.log_length() == 1
    assert scheduled == [("dam", 5.0)]


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("too_large", 413),
        ("bad_json", 400),
        ("bad_signature", 401),
        ("missing_signature", 401),
        ("no_id", 400),
        ("unknown_source", 404),
        ("no_webhook_source", 404),
        ("get", 405),
    ],
)
def test_rejections_leave_nothing_queued(env, kind, status):
    client, store, scheduled, _ = env
    if kind == "too_large":
        r = post(client, {"event": "asset.updated", "asset_id": "A", "pad": "x" * 3000})
    elif kind == "bad_json":
        r = post(client, b"{not json")
    elif kind == "bad_signature":
        r = post(client, {"event": "asset.updated", "asset_id": "A"}, sign=False,
                 headers={"X-Signature": "sha256=" + "ab" * 32})
    elif kind == "missing_signature":
        r = post(client, {"event": "asset.updated", "asset_id": "A"}, sign=False)
    elif kind == "no_id":
        r = post(client, {"event": "asset.updated"})
    elif kind == "unknown_source":
        r = post(client, {"event": "asset.updated", "asset_id": "A"}, path="/webhooks/nope")
    elif kind == "no_webhook_source":
        r = post(client, {"event": "asset.updated", "asset_id": "A"}, path="/webhooks/polled")
    else:
        r = client.get("/webhooks/dam")
    assert r.status_code == status
    assert "error" in r.json
    assert store.log_length() == 0 and store.pending_count() == 0
    assert scheduled == []


def test_unknown_event_type_is_acknowledged_and_ignored(env):
    client, store, _, _ = env
    r = post(client, {"event": "asset.viewed", "asset_id": "A"})
    assert r.status_code == 202 and r.json["status"] == "ignored"
    assert store.log_length() == 0


def test_repeated_delivery_is_recorded_once(env):
    client, store, _, _ = env
    body = {"event": "asset.updated", "asset_id": "A"}
    first = post(client, body, headers={"X-Delivery": "d-42"})
    again = post(client, body, headers={"X-Delivery": "d-42"})
    other = post(client, body, headers={"X-Delivery": "d-43"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.json == {"status": "duplicate"}
    assert store.log_length() == 2


def test_full_batch_asks_for_a_flush_now(env):
    client, _, scheduled, _ = env
    for i in range(3):
        post(client, {"event": "asset.updated", "asset_id": f"A{i}"})
    assert scheduled == [("dam", 5.0), ("dam", 0.0)]


def test_cloudinary_shape_and_stale_timestamp(env, namespace, redis_client):
    client, _, _, _ = env
    store = IntakeStore(redis_client, Keys(namespace), "cld")
    raw = json.dumps({"notification_type": "upload", "public_id": "shoe"}).encode()

    def send(ts: int):
        sig = compute_signature(CLOUDINARY, raw, str(ts))
        return client.post("/webhooks/cld", data=raw, headers={
            "X-Cld-Signature": sig, "X-Cld-Timestamp": str(ts)})

    assert send(int(time.time()) - 3600).status_code == 401
    assert store.log_length() == 0
    assert send(int(time.time())).status_code == 202
    assert store.pending_ids() == ["shoe"]


def test_healthz_and_metrics(env):
    client, _, _, _ = env
    post(client, {"event": "asset.updated", "asset_id": "A"})
    post(client, b"{bad")
    post(client, {"event": "asset.updated", "asset_id": "A"}, sign=False)
    assert client.get("/healthz").json == {"status": "ok", "redis": "ok"}
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain; version=0.0.4")
    text = r.get_data(as_text=True)
    found = samples(text)
    hook = (("source", "dam"), ("via", "webhook"))
    assert found[("connector_intake_events_received_total", hook)] == 3
    assert found[("connector_intake_events_accepted_total", hook)] == 1
    assert found[("connector_intake_events_rejected_total",
                  (("reason", "invalid_json"), ("source", "dam"), ("via", "webhook")))] == 1
    assert found[("connector_intake_events_rejected_total",
                  (("reason", "missing_signature"), ("source", "dam"), ("via", "webhook")))] == 1
    assert found[("connector_intake_queue_depth", (("source", "dam"),))] == 1
    assert "# TYPE connector_intake_assets_pushed_total counter" in text


def test_redis_down_answers_503(namespace):
    import redis

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    app = WebhookApp(Config(families=(), sources=(
        SourceConfig(name="dam", type="rest", webhook=GENERIC),)), dead, Keys(namespace))
    client = Client(app)
    assert post(client, {"event": "asset.updated", "asset_id": "A"}).status_code == 503
    assert client.get("/healthz").status_code == 503


def test_last_successful_run_gauge(namespace, redis_client):
    def last_success(source: str) -> float | None:
        if source == "broken":
            raise RuntimeError("run store unreadable")
        return 1_800_000_000.5 if source == "dam" else None

    config = Config(families=(), sources=(
        SourceConfig(name="dam", type="rest", webhook=GENERIC),
        SourceConfig(name="quiet", type="rest"),
        SourceConfig(name="broken", type="rest"),
    ))
    app = WebhookApp(config, redis_client, Keys(namespace), last_success=last_success)
    found = samples(Client(app).get("/metrics").get_data(as_text=True))
    name = "connector_last_successful_run_timestamp_seconds"
    assert found[(name, (("source", "dam"),))] == 1800000000.5
    assert (name, (("source", "quiet"),)) not in found
    assert (name, (("source", "broken"),)) not in found


def test_gunicorn_entry_reads_last_success_from_the_run_store(namespace, redis_client,
                                                               monkeypatch):
    from datetime import UTC, datetime
    from pathlib import Path

    from connector.pipeline.runs import RunStore

    example = Path(__file__).resolve().parent.parent / "examples" / "webhooks.yaml"
    monkeypatch.setenv("CONNECTOR_CONFIG", str(example))
    for name in ("CLOUDINARY_API_KEY", "CLOUDINARY_API_SECRET", "CLOUDINARY_CLOUD_NAME",
                 "DAM_TOKEN", "DAM_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DAM_QUEUE_URL", "amqp://guest:guest@127.0.0.1:5672//")
    from tasks import web

    runs = RunStore(redis_client, Keys(namespace))
    for state, finished in (("succeeded", "2026-01-01T00:00:00+00:00"), ("failed", "")):
        run_id = runs.new_run_id() + state
        runs.create(run_id, "sandbox", "schedule", full=False, since=None, asset_ids=None,
                    force=False, dry_run=False, watermark=None)
        runs.set_fields(run_id, state=state, finished_at=finished)
    assert web.last_success("sandbox") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert web.last_success("cloudinary") is None
    assert isinstance(web.app, WebhookApp)
