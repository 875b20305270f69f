"""Cloudinary's webhook notifications, with the `cloudinary` SDK as the oracle.

The signature: the SDK's own `cloudinary.utils.verify_notification_signature` accepts what
the connector computes, and the connector accepts what the SDK's `compute_hex_hash` signs
(body + X-Cld-Timestamp + API secret; SHA-1 or SHA-256 per the account's
`signature_algorithm`). The payloads: the notification shapes of Cloudinary's "Webhook
notifications" reference (cloudinary.com/documentation/notifications): an upload carries the
asset at the top level, a delete (and a tags/context/metadata change) lists the assets in
`resources[]`. They are read with the `webhook` block of examples/cloudinary.yaml.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cloudinary
import cloudinary.utils
import pytest
from werkzeug.test import Client

from connector.config.loader import load_config
from connector.config.model import Config, SourceConfig, WebhookConfig
from connector.intake.events import parse_events
from connector.intake.signature import compute_signature, verify
from connector.intake.store import IntakeStore
from connector.intake.web import WebhookApp
from connector.redis_conn import Keys

ROOT = Path(__file__).resolve().parent.parent
SECRET = "cld-api-secret-123"
ENV = {"CLOUDINARY_CLOUD_NAME": "demo", "CLOUDINARY_API_KEY": "123",
       "CLOUDINARY_API_SECRET": SECRET}


@pytest.fixture(scope="module")
def example_webhook() -> WebhookConfig:
    config = load_config(str(ROOT / "examples" / "cloudinary.yaml"), env=ENV)
    webhook = config.source("cloudinary").webhook
    assert webhook is not None
    return webhook


@pytest.fixture
def sdk_secret():
    saved = cloudinary.config().api_secret
    cloudinary.config(api_secret=SECRET)
    yield
    cloudinary.config(api_secret=saved)


def with_algorithm(cfg: WebhookConfig, algorithm: str) -> WebhookConfig:
    return WebhookConfig(**{**cfg.__dict__, "algorithm": algorithm})


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_signatures_agree_with_the_sdk(example_webhook, sdk_secret, algorithm):
    cfg = with_algorithm(example_webhook, algorithm)
    body = json.dumps({"notification_type": "upload", "asset_id": "a1", "public_id": "x"})
    ts = str(int(time.time()))
    ours = compute_signature(cfg, body.encode(), ts)
    assert cloudinary.utils.verify_notification_signature(body, ts, ours, algorithm=algorithm)
    theirs = cloudinary.utils.compute_hex_hash(body + ts + SECRET, algorithm)
    verify(cfg, {"X-Cld-Signature": theirs, "X-Cld-Timestamp": ts}, body.encode())


UPLOAD = {
    "notification_type": "upload", "timestamp": "2026-12-03T10:00:00+00:00",
    "request_id": "r1", "asset_id": "3515c6000a548515f1134043f9785c2f",
    "public_id": "products/shoe_1", "version": 1764756000, "resource_type": "image",
    "type": "upload", "format": "jpg", "tags": ["product"],
    "secure_url": "https://res.cloudinary.com/demo/image/upload/v1/products/shoe_1.jpg",
}
DELETE = {
    "notification_type": "delete",
    "resources": [
        {"resource_type": "image", "type": "upload", "asset_id": "aaa1",
         "public_id": "products/shoe_2", "version": 1, "asset_folder": "products"},
        {"resource_type": "image", "type": "upload", "asset_id": "aaa2",
         "public_id": "products/shoe_3", "version": 1, "asset_folder": "products"},
    ],
    "notification_context": {"triggered_at": "2026-12-03T10:00:00Z",
                             "triggered_by": {"source": "ui", "id": "u1"}},
}
TAGS = {
    "notification_type": "resource_tags_changed", "source": "ui",
    "resources": [{"asset_id": "bbb1", "public_id": "products/shoe_4",
                   "resource_type": "image", "type": "upload", "added": ["sale"]}],
}
CONTEXT = {
    "notification_type": "resource_context_changed", "source": "api",
    "resources": [{"asset_id": "ccc1", "public_id": "products/shoe_5",
                   "resource_type": "image", "type": "upload",
                   "added": [{"name": "sku", "value": "SKU-5"}]}],
}
METADATA = {
    "notification_type": "resource_metadata_changed", "source": "ui",
    "resources": [{"asset_id": "ddd1", "public_id": "products/shoe_6",
                   "resource_type": "image", "type": "upload"}],
}


def test_notifications_map_to_upserts_and_deletes(example_webhook):
    def events(doc):
        return [(e.action, e.asset_id) for e in parse_events(doc, example_webhook.events)]

    # ids are asset_ids: the example's rest.list.id_field (a public_id changes on rename)
    assert events(UPLOAD) == [("upsert", "3515c6000a548515f1134043f9785c2f")]
    assert events(DELETE) == [("delete", "aaa1"), ("delete", "aaa2")]
    assert events(TAGS) == [("upsert", "bbb1")]
    assert events(CONTEXT) == [("upsert", "ccc1")]
    assert events(METADATA) == [("upsert", "ddd1")]
    assert events({"notification_type": "eager", "asset_id": "x"}) == []  # ignored


def test_signed_delete_reaches_the_store(example_webhook, namespace, redis_client):
    config = Config(families=(), sources=(
        SourceConfig(name="cloudinary", type="rest", webhook=example_webhook),))
    client = Client(WebhookApp(config, redis_client, Keys(namespace),
                               schedule=lambda s, c: None))
    store = IntakeStore(redis_client, Keys(namespace), "cloudinary")
    raw = json.dumps(DELETE).encode()
    ts = str(int(time.time()))
    sig = cloudinary.utils.compute_hex_hash(raw.decode() + ts + SECRET, "sha1")
    bad = client.post("/webhooks/cloudinary", data=raw,
                      headers={"X-Cld-Signature": "0" * 40, "X-Cld-Timestamp": ts})
    assert bad.status_code == 401 and store.log_length() == 0
    r = client.post("/webhooks/cloudinary", data=raw,
                    headers={"X-Cld-Signature": sig, "X-Cld-Timestamp": ts})
    assert r.status_code == 202 and r.json == {"status": "accepted", "events": 2}
    assert store.deleted_ids() == {"aaa1", "aaa2"}
