"""moto's server mode as the AWS side of the S3/SQS tests: a real S3 and SQS HTTP API on
127.0.0.1 (moto's `ThreadedMotoServer`), driven with boto3 like the real services. No
hand-written fake: what moto accepts and answers is what the adapters are tested against.

tests/conftest.py registers this module as a plugin: every test can ask for `aws`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@dataclass
class Aws:
    """boto3 clients on the moto server, for the test's own setup and assertions."""

    url: str
    s3: Any
    sqs: Any

    def bucket(self, prefix: str = "dam") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=name)
        return name

    def queue(self, name: str | None = None) -> tuple[str, str]:
        """(name, url) of a new queue."""
        name = name or f"events-{uuid.uuid4().hex[:12]}"
        return name, str(self.sqs.create_queue(QueueName=name)["QueueUrl"])

    def notify(self, bucket: str, queue_name: str) -> None:
        """S3 event notifications of `bucket` to the queue, as one configures them on AWS."""
        self.s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"QueueConfigurations": [{
                "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}",
                "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*"],
            }]},
        )

    def visible(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages of a queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (int(attrs["ApproximateNumberOfMessages"]),
                int(attrs["ApproximateNumberOfMessagesNotVisible"]))


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    pytest.importorskip("boto3", reason="the S3/SQS tests need the [dev] extra (boto3, moto)")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Standard AWS environment variables (the adapters' credentials come from there) and
    clients for the test's own setup."""
    import boto3

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return Aws(
        moto_url,
        boto3.client("s3", endpoint_url=moto_url, region_name=REGION),
        boto3.client("sqs", endpoint_url=moto_url, region_name=REGION),
    )
