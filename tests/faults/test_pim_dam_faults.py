"""The PIM and the DAM misbehave under a running worker: chaos (5xx, 429 with Retry-After,
responses slower than the client timeout), a DAM outage during a scheduled run, PIM
credentials revoked mid-run. Each test ends with every product asset in the PIM.

One world (sandboxes + one `celery worker`) for the module; every test leaves the PIM
complete and the sandboxes healthy for the next one. Sizes: 2,000 DAM assets
(CONNECTOR_TEST_SIZE=full), 300 otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connector.pipeline import (
    dead_letters,
    list_runs,
    retry_dead_letters,
    run_report,
    set_services,
)
from tasks import routing
from tests.e2e.expected import check_pim_matches_dam, family_of
from tests.e2e.world import SOURCE, World
from tests.faults.support import sized, wait_run_end
from tests.helpers import wait_for

ASSETS = sized(2000, 300)
PIM_TIMEOUT = 2.0  # seconds: PimConfig.timeout of the worker
WORKER_CONCURRENCY = 2
REFUSAL_MEMORY = 10.0  # connector.pim.auth.TokenManager refused_backoff default

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(900, 300))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("faults")), redis_url, ASSETS)
    try:
        w.start()
        assert w.config_path is not None
        # One PIM request in flight fleet-wide: then no request can already be on the wire
        # when a 429 is answered, and every "early" request is the connector's fault. (With
        # more in flight, a request sent a millisecond before the 429 counts as early too.)
        w.edit_config(lambda data: data["pim"].update(timeout=PIM_TIMEOUT, max_in_flight=1))
        w.start_worker(WORKER_CONCURRENCY, loglevel="INFO")
        first = w.sync(timeout=sized(600, 120))
        assert first["state"] == "succeeded", first
        yield w
    finally:
        w.stop()


def _check(world: World) -> dict[str, Any]:
    return check_pim_matches_dam(world.dam, world.pim, world.dam_server.url)  # type: ignore[union-attr]


def _product_ids(world: World, n: int, family: str | None = None) -> list[str]:
    assert world.dam is not None
    bad = {b["id"] for b in world.dam.bad_records()}
    found = []
    for dam_id in world.dam.ids():
        rec = world.dam.record(dam_id) or {}
        fam = family_of(rec)
        if dam_id not in bad and fam is not None and (family is None or fam == family):
            found.append(dam_id)
            if len(found) == n:
                break
    return found


def _edit(world: World, ids: list[str], tag: str) -> None:
    assert world.dam is not None
    for dam_id in ids:
        rec = world.dam.record(dam_id) or {}
        field = "name" if family_of(rec) == "videos" else "description"
        world.dam.edit(dam_id, {field: f"{tag} {dam_id[:8]}"})


# ---------------------------------------------------------------- PIM chaos


def test_pim_chaos_every_asset_synced_and_no_request_before_retry_after(world: World) -> None:
    pim = world.pim
    assert pim is not None
    ids = _product_ids(world, sized(1000, 200))
    _edit(world, ids, "chaos")
    t0 = pim.log()[-1]["t"] if pim.log() else 0.0
    # The first response is surely slow (a few dozen calls at 5% might see none), then 5%.
    pim.update_settings(
        error_rate_5xx=0.2, error_rate_429=0.1, retry_after=1, slow_rate=1.0,
        slow_seconds=PIM_TIMEOUT + 1.5, reject_early=True,
    )
    try:
        run_id = _start(world)
        wait_for(lambda: pim.counters()["slow_responses"] >= 1, timeout=60,
                 what="a response slower than the client timeout")
        pim.update_settings(slow_rate=0.05)
        report = wait_run_end(lambda: run_report(run_id, services=world.services),
                              timeout=sized(900, 240))
    finally:
        pim.update_settings(error_rate_5xx=0.0, error_rate_429=0.0, slow_rate=0.0,
                            reject_early=False)
    counts = report["counts"]
    assert report["state"] == "succeeded", (report, world.worker_log())
    assert counts["failed"] == 0 and counts["updated"] == len(ids), counts
    _check(world)
    calls = [c for c in pim.log() if c["t"] > t0]
    injected = {kind: sum(1 for c in calls if (c["injected"] or "").startswith(kind))
                for kind in ("429", "5", "slow")}
    assert all(injected.values()), f"the chaos did not happen: {injected}"
    early = [c for c in calls if c["early"]]
    assert not early, f"{len(early)} requests sent before Retry-After expired: {early[:3]}"
    assert pim.counters()["early_requests"] == 0


# ---------------------------------------------------------------- DAM outage


def _cli_status(world: World) -> str:
    """`connector status --runs 3` as an operator runs it (its own config loading)."""
    from connector.cli import main

    set_services(None)
    try:
        result = CliRunner().invoke(main, ["status", SOURCE, "--runs", "3"], env=world.env())
    finally:
        set_services(None)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_dam_down_during_a_scheduled_run_fails_it_and_the_next_run_catches_up(
    world: World,
) -> None:
    assert world.dam is not None and world.services is not None and world.app is not None
    services = world.services
    edited = _product_ids(world, 12)
    _edit(world, edited, "outage")
    mark_before = services.runs.watermark(SOURCE)
    runs_before = {r["run_id"] for r in list_runs(SOURCE, 50, services=services)}
    world.dam_server.stop()  # type: ignore[union-attr]
    try:
        # what beat sends: the fetch task with a source and no run id
        world.app.send_task(routing.FETCH_TASK,
                            kwargs={"source": SOURCE, "trigger": "schedule"},
                            queue=routing.queue_of(routing.FETCH_TASK))

        def scheduled_run() -> str | None:
            for r in list_runs(SOURCE, 5, services=services):
                if r["run_id"] not in runs_before:
                    return str(r["run_id"])
            return None

        found = wait_for(scheduled_run, timeout=60, what="the scheduled run")
        assert found is not None
        run_id: str = found
        report = wait_run_end(lambda: run_report(run_id, services=services), timeout=120)
    finally:
        world.dam_server = world.dam.serve("127.0.0.1", world.dam_server.port)  # type: ignore[union-attr]
    assert report["trigger"] == "schedule"
    assert report["state"] == "failed", report
    assert "fetch failed" in report["error"], report["error"]
    assert "DAM" in report["error"] or "connect" in report["error"].lower(), report["error"]
    assert services.runs.watermark(SOURCE) == mark_before
    assert services.runs.holder(SOURCE) is None

    status = _cli_status(world)
    run_line = next(line for line in status.splitlines() if run_id in line)
    assert "failed" in run_line and "[schedule]" in run_line, status
    assert f"error: {report['error']}" in status, status
    assert str(mark_before.isoformat() if mark_before else "(none") in status

    caught_up = world.sync()
    assert caught_up["state"] == "succeeded", caught_up
    assert caught_up["counts"]["updated"] == len(edited), caught_up["counts"]
    _check(world)
    after = _cli_status(world)
    assert "succeeded" in next(line for line in after.splitlines() if caught_up["run_id"] in line)


# ---------------------------------------------------------------- credentials revoked

REVOKED_PASSWORD = "changed-by-the-pim-admin"


def test_revoked_credentials_dead_letter_with_an_auth_reason_without_a_token_storm(
    world: World,
) -> None:
    """What the pipeline does: the assets it could not push are dead letters whose reason
    is the refused token grant; the run itself succeeds (dead letters never fail a run)
    and a retry of the dead letters lands them once the credentials work again. Each
    worker process asks the PIM for a token at most once per refusal window."""
    pim, services = world.pim, world.services
    assert pim is not None and services is not None
    edited = _product_ids(world, sized(600, 120), "packshots") + _product_ids(
        world, sized(300, 60), "videos")
    _edit(world, edited, "revoked")
    t0 = time.time()
    # The PIM admin changes the password and revokes every token right after the first
    # bulk write of the run has been answered: a deterministic "mid-run".
    original = pim._bulk_assets
    revoked = threading.Event()

    def bulk_then_revoke(request: Any, call: Any, family: str) -> Any:
        response = original(request, call, family)
        if not revoked.is_set():
            revoked.set()
            pim.update_settings(password=REVOKED_PASSWORD)
            pim.revoke_tokens()
        return response

    pim._bulk_assets = bulk_then_revoke  # type: ignore[method-assign]
    try:
        run_id = _start(world)
        report = wait_run_end(lambda: run_report(run_id, services=services), timeout=180)
    finally:
        del pim._bulk_assets
    assert revoked.is_set()
    calls = [c for c in pim.log() if c["t"] >= t0]
    token_calls = [c for c in calls if c["template"] == "/api/oauth/v1/token"]
    counts = report["counts"]
    letters = dead_letters(SOURCE, limit=10_000, services=services)

    # a clear failure: every asset not written is a dead letter with the auth reason
    assert report["state"] == "succeeded", report
    assert counts["updated"] >= 1 and counts["failed"] >= 1, counts
    assert counts["updated"] + counts["failed"] == len(edited), counts
    assert {d["dam_id"] for d in letters} <= set(edited) and len(letters) == counts["failed"]
    for letter in letters:
        assert letter["status"] in (401, 422), letter
        assert "token grant refused" in letter["message"], letter
        assert "No user found" in letter["message"], letter
    # no retry storm: per worker process at most one refresh + one password grant
    # (the refusal is remembered), whatever the number of batches
    assert token_calls and all(c["status"] == 422 for c in token_calls), token_calls
    assert len(token_calls) <= 2 * WORKER_CONCURRENCY, token_calls
    refused_bulk = [c for c in calls if c["template"].endswith("/assets") and c["status"] == 401]
    assert len(refused_bulk) <= WORKER_CONCURRENCY, refused_bulk

    # recovery: the credentials work again → retrying the dead letters lands everything
    pim.update_settings(password=world.pim_password)
    last_refusal = max(c["t"] for c in token_calls)
    wait_for(lambda: time.time() > last_refusal + REFUSAL_MEMORY + 0.5,
             timeout=REFUSAL_MEMORY + 5, what="the workers' refusal memory to lapse")
    retried = retry_dead_letters(SOURCE, services=services)
    again = wait_run_end(lambda: run_report(retried["run_id"], services=services), 120)
    assert again["state"] == "succeeded" and again["counts"]["failed"] == 0, again
    assert again["counts"]["updated"] == len(letters), again["counts"]
    assert dead_letters(SOURCE, services=services) == []
    _check(world)


def _start(world: World) -> str:
    from connector.pipeline import start_run

    started = start_run(SOURCE, "test", services=world.services)
    assert started.started and started.run_id, started.message
    run_id: str = started.run_id
    return run_id
