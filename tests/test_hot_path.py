"""Per-asset costs the minimal-floor profile found (bench/minimal_floor.py, issue 13):
work done once per asset or per file must not copy the environment or deep-copy state."""

from __future__ import annotations

import dataclasses
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
        namespace: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
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
    monkeypatch.setattr(redis.Redis, "execute_command", one)
    monkeypatch.setattr(redis.client.Pipeline, "execute", batch)
    assert media.media_code(asset, "user_guides", PDF) == "a/b/1_guide.pdf"
    # plan: fingerprint known? content hash known? — execute: uploaded meanwhile? — then
    # one pipeline that records the code (was: a SET, then a pipeline)
    assert trips == ["HMGET", "GET", "GET", "pipeline"]
    monkeypatch.undo()
    again = handler(dam, FakeUploader(), redis_client)  # another worker: both records there
    assert again.media_code(asset, "user_guides", PDF) == "a/b/1_guide.pdf"
    assert dam.opened == ["A"]
    dam.files["B"] = b"%PDF-1 v1"
    assert again.media_code(DamAsset(id="B", source="dam", properties={"original": "x"},
                                     filename="guide.pdf"), "user_guides", PDF) == \
        "a/b/1_guide.pdf"  # same content, no fingerprint: found by its hash
