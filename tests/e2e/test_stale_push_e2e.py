"""End to end: a push of an abandoned run, held back until a newer run (real `celery -A
tasks worker`, sandbox DAM and PIM over HTTP) wrote the asset, is dropped as superseded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.dam.factory import build_source
from connector.pipeline import run_report, start_run
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.transform.codes import asset_code
from tests.e2e.expected import family_of
from tests.e2e.world import SOURCE, World
from tests.pipeline_fakes import QueueEnqueuer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    broker = os.environ.get("E2E_BROKER_URL") or redis_url
    w = World(Path(tmp_path_factory.mktemp("stale")), broker, 40)
    try:
        w.start()
        w.start_worker(concurrency=2)
        yield w
    finally:
        w.stop()


def _pim_values(world: World, dam_id: str) -> str:
    assert world.pim is not None
    code = asset_code(dam_id)
    found = [a for a in world.pim.dump_assets("packshots") if a["code"] == code]
    return json.dumps(found[0].get("values") if found else None)


def test_a_held_push_of_an_abandoned_run_keeps_the_newer_value(world: World) -> None:
    assert world.sync(timeout=120)["state"] == "succeeded"
    assert world.dam is not None and world.config is not None
    dam_id = next(d for d in world.dam.ids() if family_of(world.dam.record(d) or {}) == "packshots")
    world.dam.edit(dam_id, {"description": "version A (older)"})

    # Run A, in this process: fetch and transform, its push messages held back.
    held = QueueEnqueuer()
    services_a = Services(
        world.config, get_redis(world.redis_url), Keys(world.namespace), client=world.client(),
        sources={SOURCE: build_source(world.config.source(SOURCE))}, enqueuer=held,
    )
    held.services = services_a
    run_a = start_run(SOURCE, "schedule", services=services_a)
    assert run_a.started and run_a.run_id
    pushes: list[tuple[str, tuple[Any, ...]]] = []
    while held.queue:
        kind, args = held.queue.popleft()
        if kind == "push":
            pushes.append((kind, args))
        else:
            held.run_one(kind, args)
    assert pushes and "version A" not in _pim_values(world, dam_id)

    # A's lock expires; the DAM moves on; run B (real workers) writes the newer version.
    services_a.redis.delete(services_a.runs.lock_key(SOURCE))
    world.dam.edit(dam_id, {"description": "version B (newer)"})
    report_b = world.sync(timeout=120)
    assert report_b["state"] == "succeeded" and report_b["counts"]["updated"] >= 1
    assert "version B" in _pim_values(world, dam_id)

    for kind, args in pushes:  # A's stalled push finally runs
        held.run_one(kind, args)
    assert "version B" in _pim_values(world, dam_id)
    assert "version A" not in _pim_values(world, dam_id)
    counts = run_report(run_a.run_id, services=services_a)["counts"]
    assert counts["superseded"] == 1 and counts["dead_lettered"] == 0, counts
    services_a.close()
