"""examples/s3.yaml end to end through real processes (issue 14's "Done when"): a bucket of
1,000 PDFs in moto's S3 (server mode, on loopback) synced by `connector sync bucket --wait`
through real `celery -A tasks worker` subprocesses into the sandbox PIM; then the real
`connector intake sqs bucket` consumer reads an edit and a delete from S3 event
notifications in moto's SQS, and the flushes it enqueues to the workers bring both to the
PIM. Nothing runs in this process but the servers (moto, the sandbox PIM) and the polling.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery

from connector.config.model import PimConfig
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys, get_redis
from connector.transform.codes import asset_code
from sandbox import harness
from sandbox.harness import ROOT, Child
from tests.aws_moto import REGION, Aws
from tests.helpers import wait_for

CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
SOURCE = "bucket"
N = 1000  # issue 14's size, at every CONNECTOR_TEST_SIZE: ~40 s on two cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _guide(i: int) -> str:
    locale = "fr_FR" if i % 2 else "en_US"
    return f"guides/{locale[:2]}/sku{i:04d}_user_guide_{locale}.pdf"


def _config(aws: Aws) -> dict[str, Any]:
    """examples/s3.yaml on moto: its endpoint in both blocks, a short long-poll, no
    schedules (nothing but this test starts runs)."""
    data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "s3.yaml").read_text())
    source = data["sources"][SOURCE]
    source["s3"].update(endpoint_url=aws.url, page_size=200)  # 5 ListObjectsV2 pages
    source["queue"].update(endpoint_url=aws.url, wait_time=1)
    source.pop("schedule"), source.pop("reconcile_schedule")
    source["realtime"] = {"window": 0.5}
    data["pim"]["requests_per_second"] = 10_000
    return data


class S3World:
    """moto + the sandbox PIM + real workers and CLI processes sharing one namespace."""

    def __init__(self, tmp: Path, redis_url: str, aws: Aws) -> None:
        self.tmp, self.redis_url, self.aws = tmp, redis_url, aws
        self.namespace = f"e2e-s3-{uuid.uuid4().hex[:10]}"
        self.bucket = aws.bucket()
        self.queue, self.queue_url = aws.queue()
        self.pim = harness.local_pim(seed=3)
        self.pim_server = self.pim.serve("127.0.0.1", 0)
        self.config_path = harness.write_yaml(tmp / "s3.yaml", _config(aws))
        self.children: list[Child] = []
        limits = PimConfig(requests_per_second=10_000, option_writes_per_second=10_000)
        self.client = AkeneoClient(harness.SandboxSecrets().credentials(self.pim_server.url),
                                   limits, get_redis(redis_url), Keys(f"{self.namespace}-test"))
        harness.apply_demo_structure(self.client)

    def env(self) -> dict[str, str]:
        """A connector process's environment: the world's namespace and PIM, and the AWS
        side the way docs/sources/s3.md tells a user to set it (moto accepts any key)."""
        return harness.connector_env(
            namespace=self.namespace, redis_url=self.redis_url, broker_url=self.redis_url,
            pim_url=self.pim_server.url, config_path=self.config_path,
            extra={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                   "S3_BUCKET": self.bucket, "S3_EVENTS_QUEUE": self.queue,
                   "PYTHONUNBUFFERED": "1"},
        )

    def start(self, name: str, argv: list[str]) -> Child:
        """`name`: the worker's hostname (what a ping answers to), or a label."""
        log = self.tmp / f"{name.split('@')[0]}.log"
        child = Child(name, harness.start_process(argv, self.env(), log), log)
        self.children.append(child)
        return child

    def start_workers(self) -> None:
        app = Celery("e2e-s3", broker=self.redis_url)
        app.conf.update(harness.sender_conf(self.namespace, self.redis_url))
        hostname = f"w-{self.namespace}@127.0.0.1"
        worker = self.start(hostname, harness.worker_argv(hostname, concurrency=2))
        harness.wait_workers(app, [worker])

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail()}" for c in self.children)

    def asset(self, key: str) -> dict[str, Any] | None:
        return self.client.get_asset("user_guides", asset_code(key))

    def stop(self) -> None:
        harness.stop_processes([c.proc for c in self.children], timeout=15, kill_timeout=5)
        self.client.close()
        self.pim_server.stop()
        harness.delete_namespace(self.namespace, self.redis_url)
        harness.delete_namespace(f"{self.namespace}-test", self.redis_url)


@pytest.fixture
def world(tmp_path: Path, redis_url: str, aws: Aws) -> Iterator[S3World]:
    w = S3World(tmp_path, redis_url, aws)
    try:
        w.start_workers()
        yield w
    finally:
        w.stop()


def test_a_bucket_syncs_through_workers_and_sqs_events_carry_an_edit_and_a_delete(
    world: S3World, aws: Aws
) -> None:
    for i in range(N):
        aws.s3.put_object(Bucket=world.bucket, Key=_guide(i),
                          Body=f"%PDF-1.4 guide {i}".encode(), Metadata={"title": f"Guide {i}"})
    aws.s3.put_object(Bucket=world.bucket, Key="other/ignored.pdf", Body=b"%PDF")  # no prefix

    sync = subprocess.run([CONNECTOR, "sync", SOURCE, "--wait", "--json", "--timeout", "400"],
                          cwd=ROOT, env=world.env(), capture_output=True, text=True,
                          timeout=450, check=False)
    assert sync.returncode == 0, f"{sync.stdout}\n{sync.stderr}\n{world.logs()}"
    (report,) = json.loads(sync.stdout)["runs"]
    assert report["state"] == "succeeded", report
    assert report["counts"]["created"] == N, report["counts"]
    first = world.asset(_guide(1))
    assert first is not None
    assert first["values"]["title"] == [{"locale": "fr_FR", "channel": None, "data": "Guide 1"}]
    assert first["values"]["file"][0]["data"]  # the PDF, read from S3 by a worker

    # the consumer as docs/sources/s3.md runs it; S3 events as the bucket sends them
    aws.notify(world.bucket, world.queue)
    consumer = world.start("intake", [CONNECTOR, "intake", "sqs", SOURCE])
    wait_for(lambda: "consuming sqs" in consumer.log_tail() or not consumer.alive(),
             timeout=60, what="the SQS consumer to start")
    assert consumer.alive(), world.logs()
    aws.s3.copy_object(Bucket=world.bucket, Key=_guide(1),
                       CopySource={"Bucket": world.bucket, "Key": _guide(1)},
                       Metadata={"title": "Guide 1, revised"}, MetadataDirective="REPLACE")
    aws.s3.delete_object(Bucket=world.bucket, Key=_guide(2))

    def edited_and_deleted() -> bool:
        assert consumer.alive(), world.logs()
        edited = world.asset(_guide(1))
        return (edited is not None and edited["values"]["title"][0]["data"] == "Guide 1, revised"
                and world.asset(_guide(2)) is None)

    try:
        wait_for(edited_and_deleted, timeout=90, interval=0.5,
                 what="the edit and the delete to reach the PIM")
    except AssertionError:
        raise AssertionError(f"events did not reach the PIM\n{world.logs()}") from None
    assert world.asset(_guide(3)) is not None  # nothing else was touched
    wait_for(lambda: aws.visible(world.queue_url) == (0, 0), timeout=30,
             what="the SQS messages to be deleted once recorded")
