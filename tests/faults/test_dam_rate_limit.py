"""A rate-limited DAM under real workers: a first full sync with media files finishes in
one run, and no request of the fleet goes out before a Retry-After has expired; a binary
the DAM keeps refusing is a `dam` dead letter, its chunk's other assets are written, and
`failures retry` lands it once the DAM serves it again.

One world for the module: sandbox DAM + PIM, one `celery worker` with 2 processes. The DAM
answers 429 (Retry-After: 1) to every 7th request: listing pages, gets and downloads.
Sizes: 600 DAM assets (≈110 binaries) in both profiles; it runs in well under a minute.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.pipeline import dead_letters, list_runs, run_report, set_services, start_run
from tests.e2e.expected import check_pim_matches_dam, family_of
from tests.e2e.world import SOURCE, World
from tests.faults.support import sized, wait_run_end

ASSETS = sized(600, 600)
WORKER_CONCURRENCY = 2
EVERY_NTH = 7
RETRY_AFTER = 1

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(600, 300))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("dam429")), redis_url, ASSETS)
    try:
        w.start()
        assert w.config_path is not None
        w.edit_config(lambda data: data["sources"][SOURCE]["rest"].update({
            "max_retries": 5,                # the default
            "requests_per_second": 200,
            # one DAM request in flight fleet-wide: then no request can already be on the
            # wire when a 429 is answered, and every "early" request is the connector's fault
            "max_in_flight": 1,
            "backoff_base": 0.05,
            "backoff_max": 0.5,
        }))
        w.start_worker(WORKER_CONCURRENCY, loglevel="INFO")
        yield w
    finally:
        w.stop()


def _cli(world: World, *args: str) -> str:
    """The CLI as an operator runs it (its own config loading)."""
    from tasks.cli import main

    set_services(None)
    try:
        result = CliRunner().invoke(main, list(args), env=world.env())
    finally:
        set_services(None)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def test_first_full_sync_of_a_rate_limited_dam_is_one_run_and_respects_retry_after(
    world: World,
) -> None:
    dam, services = world.dam, world.services
    assert dam is not None and services is not None
    dam.configure(inject_429_every=EVERY_NTH, retry_after=RETRY_AFTER, limit_media=True)
    try:
        report = world.sync(timeout=sized(600, 240))
    finally:
        dam.configure(inject_429_every=0, limit_media=False)
    counts = report["counts"]
    assert report["state"] == "succeeded", (report, world.worker_log())
    assert len(list_runs(SOURCE, 10, services=services)) == 1
    assert counts["failed"] == 0 and counts["created"] > 0, counts
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]

    log = sorted(dam.request_log(), key=lambda e: e["t"])
    refused = [e for e in log if e["status"] == 429]
    kinds = {"listing" if e["rule"] == "/api/v4/media/" else
             "download" if e["rule"].startswith("/media/") else e["rule"] for e in refused}
    assert {"listing", "download"} <= kinds, kinds
    assert sum(1 for e in log if e["rule"].startswith("/media/") and e["status"] == 200) >= 50
    # fleet-wide: after a 429, nothing reached the DAM before its Retry-After expired
    for before, after in itertools.pairwise(log):
        if before["status"] == 429:
            assert after["t"] - before["t"] >= RETRY_AFTER, (before, after)
    assert dam.counters()["early_after_429"] == 0


def _user_guides(world: World, n: int) -> list[str]:
    assert world.dam is not None
    bad = {b["id"] for b in world.dam.bad_records()}
    found = [i for i in world.dam.ids()
             if i not in bad and family_of(world.dam.record(i) or {}) == "user_guides"]
    return found[:n]


def test_a_binary_the_dam_keeps_refusing_is_a_dam_dead_letter_then_retried(
    world: World,
) -> None:
    dam, services = world.dam, world.services
    assert dam is not None and services is not None
    ids = _user_guides(world, 3)
    for dam_id in ids:  # a new file version: the next run downloads all three again
        dam.edit(dam_id, {"description": f"new version {dam_id[:8]}"})
    broken = ids[1]
    dam.configure(fail_media=(broken,))
    try:
        report = _run(world)
    finally:
        dam.configure(fail_media=())
    counts = report["counts"]
    assert report["state"] == "succeeded", (report, world.worker_log())
    assert counts["failed"] == 1 and counts["updated"] == 2, counts
    letters = dead_letters(SOURCE, services=services)
    assert [(d["dam_id"], d["kind"]) for d in letters] == [(broken, "dam")], letters
    assert "503" in letters[0]["message"], letters[0]

    listed = _cli(world, "failures", "list", SOURCE)
    assert broken in listed and "DAM kept failing" in listed, listed
    status = _cli(world, "status", SOURCE, "--runs", "1")
    assert "dead letters  1" in status and "failed 1" in status, status
    assert broken not in _cli(world, "quarantine", "list", SOURCE)  # not the record's fault

    retried = _cli(world, "failures", "retry", SOURCE, "--all", "--wait", "--json")
    assert '"state": "succeeded"' in retried, retried
    assert dead_letters(SOURCE, services=services) == []
    check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def _run(world: World) -> dict[str, Any]:
    started = start_run(SOURCE, "test", services=world.services)
    assert started.started and started.run_id, started.message
    run_id: str = started.run_id
    return wait_run_end(lambda: run_report(run_id, services=world.services), timeout=120)
