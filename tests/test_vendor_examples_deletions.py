"""Each vendor example says how deletions arrive, with what the real API offers (issue 14,
item 4): Cloudinary delete notifications (webhook), S3 ObjectRemoved events (SQS), Bynder
SNS webhook events and the scheduled reconcile. None depends on the sandbox-only
"deleted since" listings (`/api/v4/media/deleted/`, `/resources/deleted`), which stay for
the generic shapes (examples/demo.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector.config.loader import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {
    "CLOUDINARY_CLOUD_NAME": "demo", "CLOUDINARY_API_KEY": "k", "CLOUDINARY_API_SECRET": "s",
    "BYNDER_DOMAIN": "acme.bynder.com", "BYNDER_TOKEN": "t",
    "S3_BUCKET": "assets", "AWS_REGION": "eu-west-1", "SQS_QUEUE_URL": "https://sqs.x/q",
}
# the sandbox DAM's extensions: real Cloudinary and Bynder have no such listing
SANDBOX_ONLY = re.compile(r"^[^#\n]*(/media/deleted|/resources/deleted|\bdeletions:)", re.M)


@pytest.mark.parametrize("name", ["cloudinary.yaml", "bynder.yaml", "s3.yaml"])
def test_vendor_examples_use_no_sandbox_only_deletion_listing(name):
    text = (EXAMPLES / name).read_text()
    assert not SANDBOX_ONLY.search(text), SANDBOX_ONLY.search(text)


def _source(name: str, source: str):
    config = load_config(EXAMPLES / name, env=ENV)
    return config.source(source)


def test_cloudinary_deletions_come_as_delete_notifications():
    src = _source("cloudinary.yaml", "cloudinary")
    assert src.rest is not None and src.rest.deletions is None
    assert src.webhook is not None and src.webhook.events.actions["delete"] == "delete"
    assert src.reconcile_schedule is not None          # a lost notification is caught


def test_bynder_deletions_come_through_sns_and_the_reconcile():
    src = _source("bynder.yaml", "bynder")
    assert src.rest is not None and src.rest.deletions is None
    assert src.webhook is not None and src.webhook.verification == "sns"
    assert src.webhook.events.actions["asset_bank.media.deleted"] == "delete"
    assert src.reconcile_schedule is not None


def test_s3_deletions_come_as_object_removed_events():
    src = _source("s3.yaml", "bucket")
    assert src.queue is not None and src.queue.transport == "sqs"
