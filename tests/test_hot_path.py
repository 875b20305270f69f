"""Per-asset costs the minimal-floor profile found (bench/minimal_floor.py, issue 13):
work done once per asset or per file must not copy the environment or deep-copy state."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.client

from connector import settings
from connector.dam.base import DamAsset
from connector.pipeline import stores
from connector.pipeline.stores import PushedState
from connector.redis_conn import Keys


class _NoCopyEnviron(dict[str, str]):
    """An environment that may be read by key but not copied or scanned."""

    def keys(self) -> Any:
        raise AssertionError("the environment was copied")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the environment was scanned")


def test_default_namespace_reads_one_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # metrics.add() builds Keys() for every downloaded file: a copy of os.environ each time
    monkeypatch.setattr(os, "environ",
                        _NoCopyEnviron(CONNECTOR_NAMESPACE="hot-ns", REDIS_URL="redis://x:1/0"))
    assert Keys().namespace == "hot-ns"
    assert settings.key_namespace() == "hot-ns"
    assert settings.redis_url() == "redis://x:1/0"
    assert os.environ is not None  # monkeypatch restores the real one


def test_pushed_state_json_is_written_without_a_deep_copy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # one PushedState per pushed asset: dataclasses.asdict deep-copies its result dict
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("asdict called")

    monkeypatch.setattr(stores, "asdict", refuse)
    state = PushedState(code="A_1__cu", family="packshots", content_hash="h1",
                        status="created", result={"status_code": 201, "errors": [{"a": 1}]},
                        run_id="r1", at="2026-12-03T00:00:00+00:00", in_pim=True)
    raw = state.to_json()
    assert PushedState.from_json(raw) == state
    # every field is written (a field added later must be added to to_json too)
    assert list(json.loads(raw)) == [f.name for f in dataclasses.fields(PushedState)]


def test_an_uploaded_file_is_remembered_in_one_round_trip(
        namespace: str, redis_client: redis.Redis) -> None:
    # per media file: the code by content hash and by the asset's fingerprint, together
    from tests.test_transform_media import PDF, FakeDam, FakeUploader, handler

    trips: list[str] = []
    command = redis.Redis.execute_command
    execute = redis.client.Pipeline.execute

    def one(self: redis.Redis, *args: Any, **options: Any) -> Any:
        trips.append(str(args[0]))
        return command(self, *args, **options)

    def batch(self: redis.client.Pipeline, *args: Any, **kw: Any) -> Any:
        trips.append("pipeline")
        return execute(self, *args, **kw)

    dam = FakeDam({"A": b"%PDF-1 v1"})
    media = handler(dam, FakeUploader(), redis_client)
    asset = DamAsset(id="A", source="dam", properties={"original": "x"}, filename="guide.pdf",
                     media_url="http://dam/media/A/guide.pdf",
                     updated=datetime(2026, 11, 2, tzinfo=UTC))
    with pytest.MonkeyPatch.context() as counting:  # undone alone: the namespace stays
        counting.setattr(redis.Redis, "execute_command", one)
        counting.setattr(redis.client.Pipeline, "execute", batch)
        assert media.media_code(asset, "user_guides", PDF) == "a/b/1_guide.pdf"
    # plan: fingerprint known? content hash known? — then one pipeline that records the
    # code (was: a SET, then a pipeline). No second look-up of the hash in execute: the
    # plan that kept the download looked it up a moment before
    assert trips == ["HMGET", "GET", "pipeline"]
    again = handler(dam, FakeUploader(), redis_client)  # another worker: both records there
    assert again.media_code(asset, "user_guides", PDF) == "a/b/1_guide.pdf"
    assert dam.opened == ["A"]
    dam.files["B"] = b"%PDF-1 v1"
    assert again.media_code(DamAsset(id="B", source="dam", properties={"original": "x"},
                                     filename="guide.pdf"), "user_guides", PDF) == \
        "a/b/1_guide.pdf"  # same content, no fingerprint: found by its hash


def test_execute_of_an_earlier_plan_still_looks_for_a_meanwhile_upload(
        namespace: str, redis_client: redis.Redis) -> None:
    # a plan without the download (dry run, explain) may be old: before uploading,
    # execute asks again whether another worker uploaded the same content meanwhile
    from tests.test_transform_media import PDF, FakeDam, FakeUploader, handler

    dam = FakeDam({"A": b"%PDF-1 meanwhile"})
    uploader = FakeUploader()
    media = handler(dam, uploader, redis_client)
    asset = DamAsset(id="A", source="dam", properties={"original": "x"}, filename="guide.pdf")
    pending = media.plan(asset, "user_guides", PDF)
    assert pending.binary is None and pending.code is None
    redis_client.set(media.hash_key(str(pending.sha256)), "x/y/0_other.pdf")
    assert media.execute(asset, pending) == "x/y/0_other.pdf"
    assert uploader.uploads == []


def test_a_small_upload_body_is_read_in_one_piece() -> None:
    # the opening boundary, the file and the closing boundary came in three reads, i.e.
    # three TLS records and system calls per upload: one read fills the block instead
    from connector.pim.multipart import MultipartFile

    data = bytes(range(256)) * 16
    part = MultipartFile("file", "guide.pdf", io.BytesIO(data))
    block = part.read(16384)  # urllib3's block size
    assert len(block) == len(part) and data in block
    assert block.endswith(b"--\r\n") and part.read(16384) == b""
    part.seek(0)  # pieces split across blocks of any size still give the same bytes
    assert b"".join(iter(lambda: part.read(7), b"")) == block
    part.seek(3)
    assert part.read(len(block)) == block[3:]
