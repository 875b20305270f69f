"""examples/s3.yaml end to end, in process: a bucket of 1,000 PDFs in moto's S3 synced
through the pipeline into the sandbox PIM (PDFs uploaded, titles from user metadata), then
an edit and a delete arriving as S3 event notifications through moto's SQS, flushed to the
PIM. The pipeline's steps run in this process (tests/pipeline_fakes.QueueEnqueuer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import parse_config
from connector.config.model import Config, PimConfig
from connector.intake.flush import flush_source
from connector.intake.sqs import SqsConsumer
from connector.intake.store import IntakeStore
from connector.pim.client import AkeneoClient
from connector.pipeline import run_report, start_run, sync_assets_by_id
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.structure import apply_structure, load_structure_file
from connector.transform.codes import asset_code
from sandbox.harness import SandboxSecrets
from tests.aws_moto import REGION, Aws
from tests.helpers import wait_for
from tests.pipeline_fakes import QueueEnqueuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
N = 1000  # issue 14's size: 20 ListObjectsV2 pages of 50, ~1 min on a laptop
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
SOURCE = "bucket"


def _config(aws: Aws, bucket: str, queue: str) -> Config:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "s3.yaml").read_text())
    source = data["sources"][SOURCE]
    source["s3"].update(endpoint_url=aws.url, page_size=50)
    source["queue"].update(endpoint_url=aws.url, wait_time=1)
    source.pop("schedule"), source.pop("reconcile_schedule")
    data["pim"]["requests_per_second"] = 10_000
    return parse_config(data, {"S3_BUCKET": bucket, "S3_EVENTS_QUEUE": queue,
                               "AWS_REGION": REGION})


@pytest.fixture
def pim(pim_server: Any, namespace: str) -> Iterator[AkeneoClient]:
    sandbox, server = pim_server
    sandbox.reset()
    limits = PimConfig(requests_per_second=10_000, option_writes_per_second=10_000)
    client = AkeneoClient(SandboxSecrets().credentials(server.url), limits, get_redis(),
                          Keys(namespace))
    assert apply_structure(client, load_structure_file(EXAMPLES / "structure.yaml")).ok
    yield client
    client.close()


def _guide(i: int) -> str:
    locale = "fr_FR" if i % 2 else "en_US"
    return f"guides/{locale[:2]}/sku{i:04d}_user_guide_{locale}.pdf"


def test_bucket_syncs_to_the_pim_and_events_carry_edits_and_deletes(
    aws: Aws, namespace: str, pim: AkeneoClient
) -> None:
    bucket = aws.bucket()
    queue, queue_url = aws.queue()
    for i in range(N):
        aws.s3.put_object(Bucket=bucket, Key=_guide(i), Body=f"%PDF-1.4 guide {i}".encode(),
                          Metadata={"title": f"Guide {i}"})
    aws.s3.put_object(Bucket=bucket, Key="other/ignored.pdf", Body=b"%PDF")  # not under guides/
    config = _config(aws, bucket, queue)
    enqueuer = QueueEnqueuer()
    services = Services(config, get_redis(), Keys(namespace), client=pim, enqueuer=enqueuer)
    enqueuer.services = services

    started = start_run(SOURCE, "test", services=services)
    assert started.started and started.run_id, started.message
    enqueuer.drain()
    report = run_report(started.run_id, services=services)
    assert report["state"] == "succeeded", report
    assert report["counts"]["created"] == N, report["counts"]
    first = pim.get_asset("user_guides", asset_code(_guide(1)))
    assert first is not None
    assert first["values"]["title"] == [{"locale": "fr_FR", "channel": None, "data": "Guide 1"}]
    assert first["values"]["file"][0]["data"]  # the PDF was uploaded from S3

    # an edit (new metadata: S3 rewrites the object) and a delete, as S3 events through SQS
    aws.notify(bucket, queue)
    aws.s3.copy_object(Bucket=bucket, Key=_guide(1), CopySource={"Bucket": bucket,
                       "Key": _guide(1)}, Metadata={"title": "Guide 1, revised"},
                       MetadataDirective="REPLACE")
    aws.s3.delete_object(Bucket=bucket, Key=_guide(2))
    source = config.source(SOURCE)
    assert source.queue is not None and source.s3 is not None
    store = IntakeStore(get_redis(), Keys(namespace), SOURCE, source.realtime)
    consumer = SqsConsumer(source.queue, store, source.s3)
    wait_for(lambda: consumer.poll_once() >= 0 and store.deleted_ids()
             and _guide(1) in store.pending_ids(), timeout=20, what="the two S3 events")
    assert aws.visible(queue_url) == (0, 0)

    outcome = flush_source(
        store, "flush-1",
        lambda *a, **kw: sync_assets_by_id(*a, services=services, **kw),
    )
    assert (outcome.upserts, outcome.deletes) == (1, 1)
    edited = pim.get_asset("user_guides", asset_code(_guide(1)))
    assert edited is not None and edited["values"]["title"][0]["data"] == "Guide 1, revised"
    assert pim.get_asset("user_guides", asset_code(_guide(2))) is None
    services.close()
