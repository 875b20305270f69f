"""The core end-to-end path with RabbitMQ as the broker (Redis still holds the state).

Skipped, with the reason, only when nothing answers on 127.0.0.1:5672.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.expected import check_pim_matches_dam
from tests.e2e.world import World, env_int

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(300)]

AMQP_URL = os.environ.get("E2E_AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672//"


def _reachable(host: str = "127.0.0.1", port: int = 5672) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    if not _reachable():
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672 (amqp e2e not run)")
    w = World(Path(tmp_path_factory.mktemp("e2e-amqp")), AMQP_URL,
              env_int("E2E_RABBIT_ASSETS", 300))
    try:
        w.start()
        w.start_worker()
        yield w
    finally:
        w.stop()


def test_sync_over_rabbitmq_lands_everything_then_has_nothing_to_do(world: World) -> None:
    first = world.sync_via_subprocess(timeout=120)
    assert first["state"] == "succeeded", first
    checked = check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    assert first["counts"]["created"] == checked["landed"]
    second = world.sync()
    assert second["state"] == "succeeded"
    assert second["counts"]["requests"] == 0
    # and an edit travels through the amqp queues too
    dam_id = next(iter(world.dam.ids()))  # type: ignore[union-attr]
    world.dam.edit(dam_id, {"description": "via rabbit"})  # type: ignore[union-attr]
    third = world.sync()
    assert third["counts"]["seen"] == 1
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
