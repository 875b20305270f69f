"""Shared fixtures: a real Redis, one key namespace per test, a sandbox PIM per module."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

# moto's S3/SQS in server mode (`moto_url`, `aws`) for the S3 source and the SQS intake
pytest_plugins = ["tests.aws_moto"]

if TYPE_CHECKING:
    from sandbox.pim import PimSandbox
    from sandbox.server import BackgroundServer

REDIS_URL = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"tests need a Redis server at {REDIS_URL}: {exc}")
    return REDIS_URL


@pytest.fixture
def namespace(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A unique CONNECTOR_NAMESPACE (and REDIS_URL) for this test; its keys are removed after."""
    ns = f"test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("CONNECTOR_NAMESPACE", ns)
    monkeypatch.setenv("REDIS_URL", redis_url)
    yield ns
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="module")
def pim_server() -> Iterator[tuple[PimSandbox, BackgroundServer]]:
    """A sandbox PIM on 127.0.0.1 for the whole module (a server per test costs 0.5 s),
    without a concurrency limit, accepting the sandbox defaults; a test that needs it
    empty resets it (the modules' `pim` / `env` fixtures do)."""
    from sandbox.harness import local_pim

    sandbox = local_pim()
    server = sandbox.serve()
    yield sandbox, server
    server.stop()
