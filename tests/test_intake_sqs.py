"""The SQS intake (connector/intake/sqs.py) against moto's S3 + SQS in server mode: S3 sends
its own event notifications to the queue; the consumer records them, deletes a message
only once it is recorded, parks what it cannot read, and a consumer that dies before
recording leaves the message to come back after the visibility timeout."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from connector.config.model import QueueIntakeConfig, RealtimeConfig, S3SourceConfig
from connector.intake.consumer import RecordingFailed
from connector.intake.s3_events import parse_s3_events
from connector.intake.sqs import SqsConsumer
from connector.intake.store import IntakeStore
from connector.redis_conn import Keys, get_redis
from tests.aws_moto import REGION, Aws
from tests.helpers import wait_for


def _world(aws: Aws, namespace: str, **queue_kw: Any) -> tuple[str, str, Any]:
    bucket = aws.bucket()
    name, url = aws.queue()
    aws.notify(bucket, name)

    def consumer(store: IntakeStore | None = None, **kw: Any) -> SqsConsumer:
        cfg = QueueIntakeConfig(transport="sqs", name=name, endpoint_url=aws.url, wait_time=1,
                                prefetch=10, **{**queue_kw, **kw})
        store = store or IntakeStore(get_redis(), Keys(namespace), "bucket", RealtimeConfig())
        s3 = S3SourceConfig(bucket=bucket, region=REGION, endpoint_url=aws.url)
        return SqsConsumer(cfg, store, s3)

    return bucket, url, consumer


def _drain(c: SqsConsumer, until: Any) -> None:
    wait_for(lambda: c.poll_once() >= 0 and until(), timeout=20, what="the SQS messages")


class WatchedStore(IntakeStore):
    """Records what the queue looked like at the moment each event was recorded."""

    def __init__(self, *args: Any, aws: Aws, url: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.seen: list[tuple[int, int]] = []
        self.aws, self.url = aws, url

    def record(self, events: Any, **kw: Any) -> Any:
        self.seen.append(self.aws.visible(self.url))
        return super().record(events, **kw)


def test_object_created_is_recorded_before_its_message_is_deleted(
    aws: Aws, namespace: str
) -> None:
    bucket, url, consumer = _world(aws, namespace)
    store = WatchedStore(get_redis(), Keys(namespace), "bucket", RealtimeConfig(), aws=aws,
                         url=url)
    c = consumer(store)
    aws.s3.put_object(Bucket=bucket, Key="guides/allie jean.pdf", Body=b"%PDF")

    _drain(c, lambda: store.pending_ids())

    assert store.pending_ids() == ["guides/allie jean.pdf"]  # URL-decoded key
    # recorded while its message was still in flight (moto also sends ObjectTagging:Put
    # for a PutObject: two records of the same key)
    assert store.seen and all(in_flight >= 1 for _, in_flight in store.seen)
    assert aws.visible(url) == (0, 0)  # ... and deleted after (the test event too)


def test_unreadable_messages_are_parked_and_deleted(aws: Aws, namespace: str) -> None:
    bucket, url, consumer = _world(aws, namespace)
    c = consumer()
    other = {"Records": [{"eventName": "ObjectCreated:Put", "eventTime": "2026-01-01T00:00:00Z",
                          "s3": {"bucket": {"name": "another-bucket"}, "object": {"key": "a"}}}]}
    for body in ("not json", json.dumps({"hello": "world"}), json.dumps(other)):
        aws.sqs.send_message(QueueUrl=url, MessageBody=body)

    _drain(c, lambda: len(c.store.parked()) == 3)

    reasons = sorted(p["reason"] for p in c.store.parked())
    assert reasons[0].startswith("Records[0]: event for bucket 'another-bucket', but this "
                                 f"source reads '{bucket}'")
    assert reasons[1] == (
        'expected an S3 event notification ({"Records": [{"eventName": …, "s3": {…}}]}): '
        "no Records list")
    assert reasons[2].startswith("invalid JSON")
    assert c.store.pending_ids() == []
    wait_for(lambda: aws.visible(url) == (0, 0), timeout=5, what="an empty queue")


def test_object_removed_becomes_a_deletion(aws: Aws, namespace: str) -> None:
    bucket, url, consumer = _world(aws, namespace)
    c = consumer()
    aws.s3.put_object(Bucket=bucket, Key="guides/x+y.pdf", Body=b"%PDF")
    aws.s3.delete_object(Bucket=bucket, Key="guides/x+y.pdf")

    _drain(c, lambda: c.store.deleted_ids())

    assert c.store.deleted_ids() == {"guides/x+y.pdf"}
    assert c.store.pending_ids() == ["guides/x+y.pdf"]  # pending as a deletion
    assert aws.visible(url) == (0, 0)


def test_a_consumer_that_dies_before_recording_leaves_the_message_to_reappear(
    aws: Aws, namespace: str
) -> None:
    bucket, url, consumer = _world(aws, namespace, visibility_timeout=1)

    class DownStore(IntakeStore):
        def record(self, events: Any, **kw: Any) -> Any:
            raise redis.ConnectionError("Redis went away")

    dying = consumer(DownStore(get_redis(), Keys(namespace), "bucket", RealtimeConfig()))
    aws.s3.put_object(Bucket=bucket, Key="guides/a.pdf", Body=b"%PDF")

    def died() -> bool:
        try:
            dying.poll_once()
        except RecordingFailed:
            return True
        return False

    wait_for(died, timeout=20, what="the consumer to fail recording")
    assert aws.visible(url)[1] >= 1  # not deleted: hidden until the visibility timeout

    survivor = consumer()
    _drain(survivor, lambda: survivor.store.pending_ids())
    assert survivor.store.pending_ids() == ["guides/a.pdf"]
    assert aws.visible(url) == (0, 0)


def test_s3_event_documents(namespace: str) -> None:
    """The parser alone: test event, SNS wrapping, ordering, prefix, ignored kinds."""
    def rec(name: str, key: str, time: str, seq: str = "") -> dict[str, Any]:
        return {"eventName": name, "eventTime": time,
                "s3": {"bucket": {"name": "b-1"}, "object": {"key": key, "sequencer": seq}}}

    assert parse_s3_events({"Service": "Amazon S3", "Event": "s3:TestEvent"}, "b-1") == []
    doc = {"Records": [
        rec("ObjectRemoved:Delete", "p/a%C3%A9+b.jpg", "2026-01-01T00:00:02.000Z"),
        rec("ObjectCreated:Put", "p/a%C3%A9+b.jpg", "2026-01-01T00:00:01.000Z"),
        rec("ObjectTagging:Put", "p/t.jpg", "2026-01-01T00:00:03.000Z"),
        rec("ObjectAcl:Put", "p/acl.jpg", "2026-01-01T00:00:03.000Z"),
        rec("ObjectCreated:Put", "elsewhere/x.jpg", "2026-01-01T00:00:03.000Z"),
        rec("ObjectCreated:Put", "p/dir/", "2026-01-01T00:00:03.000Z"),
    ]}
    sns = {"Type": "Notification", "Message": json.dumps(doc)}
    for document in (doc, sns):
        events = parse_s3_events(document, "b-1", "p/")
        assert [(e.action, e.asset_id) for e in events] == [
            ("upsert", "p/aé b.jpg"), ("delete", "p/aé b.jpg"), ("upsert", "p/t.jpg")]


@pytest.mark.parametrize("body, reason", [
    ([1], "expected an S3 event notification"),
    ({"Records": [{"s3": {}}]}, "Records[0]: no eventName"),
    ({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b-1"},
                                                           "object": {}}}]},
     "Records[0]: no s3.object.key"),
])
def test_s3_event_documents_that_are_not(body: Any, reason: str) -> None:
    from connector.intake.events import MalformedEvent

    with pytest.raises(MalformedEvent) as exc:
        parse_s3_events(body, "b-1")
    assert exc.value.reason.startswith(reason)


def test_cli_intake_sqs_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """`connector intake sqs SOURCE`: the transport must match, boto3 must be installed."""
    import sys
    from pathlib import Path

    from click.testing import CliRunner

    from connector.cli import main

    example = str(Path(__file__).resolve().parent.parent / "examples" / "s3.yaml")
    monkeypatch.setenv("S3_BUCKET", "dam-assets")
    runner = CliRunner()
    wrong = runner.invoke(main, ["intake", "redis-stream", "bucket", "-c", example])
    assert wrong.exit_code == 2
    assert "source 'bucket' uses transport 'sqs', not 'redis_stream'" in wrong.output
    monkeypatch.setitem(sys.modules, "boto3", None)
    missing = runner.invoke(main, ["intake", "sqs", "bucket", "-c", example])
    assert missing.exit_code == 2
    assert ("connector intake sqs needs boto3, which is not installed: "
            "pip install 'dam-akeneo-connector[s3]'") in missing.output
