"""End to end: with AKENEO_MEDIA_* set, a real worker uploads every media file through the
second Akeneo connection and writes everything else through the first; the sandbox PIM
limits concurrent calls per connection (4, as Akeneo documents) and the run gets no 429.

Why it matters: on one connection every upload takes one of the 4 slots the 300 ms bulk
PATCHes need (docs/performance.md, section 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.harness import PIM_PASSWORD, PIM_USERNAME
from tests.e2e.expected import check_pim_matches_dam
from tests.e2e.world import SOURCE, World

pytestmark = pytest.mark.timeout(300)
MEDIA_CLIENT, MEDIA_SECRET = "sandbox-media-client", "media-secret"
UPLOAD = "POST /api/rest/v1/asset-media-files"


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    w = World(tmp_path, redis_url, 600, extra_env={
        "AKENEO_MEDIA_CLIENT_ID": MEDIA_CLIENT, "AKENEO_MEDIA_CLIENT_SECRET": MEDIA_SECRET,
        "AKENEO_MEDIA_USERNAME": PIM_USERNAME, "AKENEO_MEDIA_PASSWORD": PIM_PASSWORD,
    })
    try:
        w.start()
        assert w.pim is not None
        w.pim.update_settings(extra_clients={MEDIA_CLIENT: MEDIA_SECRET}, max_concurrency=4,
                              bulk_latency=0.2, latency=0.01)
        yield w
    finally:
        w.stop()


def test_uploads_use_the_media_connection_and_writes_the_main_one(world: World) -> None:
    assert world.pim is not None and world.dam is not None
    world.start_worker(4)
    report = world.sync(timeout=240)
    assert report["state"] == "succeeded", (report, world.worker_log())
    checked = check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]
    assert checked["landed"] > 0

    calls = [r for r in world.pim.log() if r["template"] != "/api/oauth/v1/token"]
    uploads = [r for r in calls if f"{r['method']} {r['template']}" == UPLOAD]
    others = [r for r in calls if f"{r['method']} {r['template']}" != UPLOAD]
    assert len(uploads) >= 20, "the demo catalogue has user guides with PDFs"
    assert {r["client"] for r in uploads} == {MEDIA_CLIENT}
    assert {r["client"] for r in others} == {"sandbox-client"}
    assert all(r["status"] == 201 for r in uploads)
    counters = world.pim.counters()
    assert not any(key.endswith(" 429") for key in counters["requests"]), counters["requests"]
    busiest = counters["max_concurrent_by_client"]
    assert busiest[MEDIA_CLIENT] <= 4 and busiest["sandbox-client"] <= 4, busiest


def test_a_partial_media_connection_fails_the_run_saying_which_variable(
    tmp_path: Path, redis_url: str
) -> None:
    """A new user sets three of the four AKENEO_MEDIA_* variables: no upload goes out on
    a half-configured connection, nothing is written to the PIM through the main one in
    its place, and the run's error names the missing variable."""
    w = World(tmp_path, redis_url, 60, extra_env={
        "AKENEO_MEDIA_CLIENT_ID": MEDIA_CLIENT, "AKENEO_MEDIA_CLIENT_SECRET": MEDIA_SECRET,
        "AKENEO_MEDIA_USERNAME": PIM_USERNAME,
    })
    try:
        w.start()
        assert w.pim is not None
        w.start_worker(2)
        report = w.sync(timeout=120)
        assert report["state"] == "failed", report
        assert "AKENEO_MEDIA_PASSWORD" in (report["error"] or ""), report
        uploads = [r for r in w.pim.log() if f"{r['method']} {r['template']}" == UPLOAD]
        assert uploads == []
        assert w.services is not None
        assert w.services.runs.watermark(SOURCE) is None  # a failed run moves nothing
    finally:
        w.stop()
