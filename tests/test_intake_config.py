"""The intake blocks of the config: examples/webhooks.yaml loads and drives verification."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from connector.config import ConfigError, load_config, parse_config
from connector.config.schemas.intake import RealtimeSchema, WebhookSchema
from connector.intake.signature import verify

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "webhooks.yaml"
ENV = {
    "CLOUDINARY_API_KEY": "k",
    "CLOUDINARY_API_SECRET": "cld-secret",
    "CLOUDINARY_CLOUD_NAME": "acme",
    "DAM_TOKEN": "t",
    "DAM_WEBHOOK_SECRET": "hook-secret",
    "DAM_QUEUE_URL": "amqp://guest:guest@127.0.0.1:5672//",
}


def test_example_loads_and_both_shapes_verify_without_code():
    config = load_config(EXAMPLE, env=ENV)
    cld = config.source("cloudinary").webhook
    generic = config.source("sandbox").webhook
    assert cld is not None and generic is not None
    body, ts = b'{"notification_type":"upload","public_id":"p"}', "1800000000"
    sig = hashlib.sha1(body + ts.encode() + b"cld-secret").hexdigest()
    verify(cld, {"X-Cld-Signature": sig, "X-Cld-Timestamp": ts}, body, now=1800000000)
    sig2 = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    verify(generic, {"X-Signature": sig2}, body)
    stream, rabbit = config.source("sandbox_stream").queue, config.source("sandbox_amqp").queue
    assert stream is not None and stream.transport == "redis_stream"
    assert rabbit is not None and str(rabbit.url).startswith("amqp://")
    assert config.source("cloudinary").realtime.poll_enabled is True


def _with_webhook(webhook: dict) -> dict:
    return {
        "families": {"f": {"match": {"always": True}, "mapping": {"a": "b"}}},
        "sources": {"s": {"type": "folder", "folder": {"path": "/tmp"}, "webhook": webhook}},
    }


def test_literal_secret_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_config(_with_webhook({"secret": "literal", "events": {"asset_id": "id"}}), env={})
    assert any("sources.s.webhook.secret" in e for e in err.value.errors)
    assert "literal" not in str(err.value)


def test_digest_without_secret_in_payload_is_refused():
    raw = _with_webhook({"verification": "digest", "secret": "${S}", "payload": "{body}"})
    with pytest.raises(ConfigError) as err:
        parse_config(raw, env={"S": "x"})
    assert any("webhook.payload" in e for e in err.value.errors)


def test_schemas_are_importable_from_the_intake_package():
    assert RealtimeSchema().load({"window": "500ms", "batch_size": 50}).window == 0.5
    with pytest.raises(Exception):  # noqa: B017 - marshmallow's ValidationError
        RealtimeSchema().load({"batch_size": 500})
    assert WebhookSchema is not None


def test_bearer_verification_defaults_to_the_authorization_header():
    raw = _with_webhook(
        {"verification": "bearer", "secret": "${S}", "events": {"asset_id": "id"}}
    )
    webhook = parse_config(raw, env={"S": "tok"}).source("s").webhook
    assert webhook is not None
    assert (webhook.header, webhook.prefix) == ("Authorization", "Bearer ")
