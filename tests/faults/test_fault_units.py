"""Unit-sized checks of the three fixes the fault tests led to (fast, no worker):

- a media upload the PIM refuses transiently is retried a few times in place (a chunk of
  dozens of files otherwise never gets through a flaky PIM), and a refused credential is
  never blamed on the file (PimAuthError propagates, nothing is quarantined);
- a process whose credentials the PIM refused does not ask again for every batch;
- a pipeline step waits in-process for an unreachable Redis (Celery cannot publish its
  retry while Redis, the broker, is down).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from connector.dam.base import DamAsset, DamSource, Page
from connector.pim.client import AkeneoClient
from connector.pim.errors import PimAuthError, TransientPimError
from connector.pim.structure import Attribute
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.transform.media import MediaFileHandler
from sandbox.pim import PimSandbox
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
PDF = Attribute("file", "media_file", allowed_extensions=("pdf",))


class OneFileDam(DamSource):
    name = "dam"

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        return iter(())

    def get(self, asset_id: str) -> DamAsset | None:
        return None

    @contextmanager
    def open_binary(self, asset: DamAsset) -> Iterator[IO[bytes]]:
        yield io.BytesIO(b"%PDF-1.4 " + asset.id.encode())


class FlakyUploader:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls: list[bytes] = []

    def upload_media_file(self, path_or_fileobj: Any, filename: str) -> str:
        self.calls.append(path_or_fileobj.read())
        if self.failures:
            raise self.failures.pop(0)
        return f"code/{filename}"


def _asset(dam_id: str) -> DamAsset:
    return DamAsset(id=dam_id, source="dam", properties={}, filename="guide.pdf")


def test_transient_upload_refusals_are_retried_in_place(
    namespace: str, redis_client: redis.Redis
) -> None:
    uploader = FlakyUploader([TransientPimError("busy", status=503),
                              TransientPimError("slow down", status=429, retry_after=0.05)])
    handler = MediaFileHandler(OneFileDam(), uploader, redis_client, Keys(),
                               upload_retry_delay=0.01)
    assert handler.media_code(_asset("A"), "user_guides", PDF) == "code/guide.pdf"
    assert len(uploader.calls) == 3
    assert len(set(uploader.calls)) == 1 and uploader.calls[0]  # the whole file each time


def test_upload_retries_are_bounded(namespace: str, redis_client: redis.Redis) -> None:
    uploader = FlakyUploader([TransientPimError("busy", status=503) for _ in range(10)])
    handler = MediaFileHandler(OneFileDam(), uploader, redis_client, Keys(),
                               upload_attempts=3, upload_retry_delay=0.01)
    with pytest.raises(TransientPimError):
        handler.media_code(_asset("B"), "user_guides", PDF)
    assert len(uploader.calls) == 3


def test_refused_credentials_are_not_the_file_s_fault(
    namespace: str, redis_client: redis.Redis
) -> None:
    uploader = FlakyUploader([PimAuthError("token grant refused: No user found", status=422)])
    handler = MediaFileHandler(OneFileDam(), uploader, redis_client, Keys())
    with pytest.raises(PimAuthError):  # not a ConversionError: the asset is not quarantined
        handler.media_code(_asset("C"), "user_guides", PDF)
    assert len(uploader.calls) == 1


def test_a_refused_process_does_not_ask_for_a_token_per_batch(
    namespace: str, redis_client: redis.Redis
) -> None:
    pim = PimSandbox()
    server = pim.serve()
    try:
        creds = PimCredentials(server.url, "sandbox-client", Secret("sandbox-secret"),
                               "sandbox", Secret("not-the-password"))
        client = AkeneoClient(creds, redis=redis_client, keys=Keys())
        client.tokens.refused_backoff = 0.5
        for _ in range(5):
            with pytest.raises(PimAuthError) as info:
                client.get_asset_family("packshots")
            assert "No user found" in str(info.value)
        assert pim.counters()["token_failures"] == 1  # asked once, remembered the answer
        pim.update_settings(password="not-the-password")  # the PIM admin fixes it

        def works() -> bool:
            try:
                client.get_asset_family("packshots")
            except PimAuthError:
                return False
            return True

        wait_for(works, timeout=5, interval=0.1, what="recovery after the refusal window")
        assert pim.counters()["token_grants"] == 1
        assert pim.counters()["token_failures"] == 1
        client.close()
    finally:
        server.stop()


_PATIENTLY = textwrap.dedent(
    """
    import redis
    from connector.pim.errors import TransientPimError
    from tasks.pipeline import patiently

    wrapped = TransientPimError("token store unavailable")
    wrapped.__cause__ = redis.TimeoutError("still down")
    outcomes = [redis.ConnectionError("down"), wrapped, "done"]

    def body():
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert patiently(body, patience=10) == "done"
    try:  # anything else is not waited for
        patiently(lambda: int("bug"), patience=10)
    except ValueError:
        pass
    else:
        raise AssertionError("a bug was retried")

    def always_down():
        raise redis.ConnectionError("down for good")

    try:
        patiently(always_down, patience=0.2)
    except redis.ConnectionError:
        print("ok")
    """
)


def test_a_step_waits_for_redis_to_come_back() -> None:
    # In a child interpreter: importing `tasks` here would fix celeryconfig's environment
    # for every later test of this process.
    out = subprocess.run([sys.executable, "-c", _PATIENTLY], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
