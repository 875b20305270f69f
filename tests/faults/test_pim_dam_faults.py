"""The PIM and the DAM misbehave under a running worker: chaos (5xx, 429 with Retry-After,
responses slower than the client timeout), a DAM outage during a scheduled run, PIM
credentials revoked mid-run. Each test ends with every product asset in the PIM.

One world (sandboxes + one `celery worker`) for the module; every test leaves the PIM
complete and the sandboxes healthy for the next one. Sizes: 2,000 DAM assets
(CONNECTOR_TEST_SIZE=full), 300 otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.pipeline import (
    dead_letters,
    list_runs,
    retry_dead_letters,
    run_report,
    set_services,
)
from tests.e2e.expected import check_pim_matches_dam, family_of
from tests.e2e.world import SOURCE, World
from tests.faults.support import sized, wait_run_end
from tests.helpers import wait_for

ASSETS = sized(2000, 300)
PIM_TIMEOUT = 2.0  # seconds: PimConfig.timeout of the worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(900, 300))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("faults")), redis_url, ASSETS)
    try:
        w.start()
        assert w.config_path is not None
        data = yaml.safe_load(w.config_path.read_text())
        data["pim"]["timeout"] = PIM_TIMEOUT
        w.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        w.start_worker(2)
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
    pim.update_settings(
        error_rate_5xx=0.2, error_rate_429=0.1, retry_after=1, slow_rate=0.05,
        slow_seconds=PIM_TIMEOUT + 1.5, reject_early=True,
    )
    try:
        report = world.sync(timeout=sized(900, 240))
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
        world.app.send_task("tasks.pipeline.fetch_changed_assets",
                            kwargs={"source": SOURCE, "trigger": "schedule"}, queue="fetch")

        def scheduled_run() -> str | None:
            for r in list_runs(SOURCE, 5, services=services):
                if r["run_id"] not in runs_before:
                    return str(r["run_id"])
            return None

        run_id = wait_for(scheduled_run, timeout=60, what="the scheduled run")
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
    assert "succeeded" in _cli_status(world).splitlines()[5]


# ---------------------------------------------------------------- credentials revoked


def test_revoked_credentials_dead_letter_with_an_auth_reason_without_a_token_storm(
    world: World,
) -> None:
    pim, services = world.pim, world.services
    assert pim is not None and services is not None
    edited = _product_ids(world, sized(1000, 250))
    _edit(world, edited, "revoked")
    t0 = pim.log()[-1]["t"]
    pim.update_settings(bulk_latency=0.5)  # the run spans the revocation
    try:
        run_id = _start(world)
        wait_for(lambda: pim.counters()["bulk_asset_requests"] >= 1 and _bulk_since(pim, t0),
                 timeout=60, what="the first bulk write")
        pim.update_settings(password="changed-by-the-pim-admin")
        pim.revoke_tokens()
        report = wait_run_end(lambda: run_report(run_id, services=services), timeout=180)
    finally:
        pim.update_settings(bulk_latency=0.0)
    calls = [c for c in pim.log() if c["t"] > t0]
    token_calls = [c for c in calls if c["template"] == "/api/oauth/v1/token"]
    refused = [c for c in token_calls if c["status"] != 200]
    counts = report["counts"]
    letters = dead_letters(SOURCE, limit=10_000, services=services)

    # a clear failure: the assets not yet written are dead letters with the auth reason
    assert report["state"] == "succeeded", report  # dead letters do not fail a run
    assert counts["failed"] > 0 and counts["failed"] == len(letters), counts
    assert counts["failed"] + counts["updated"] == len(edited), counts
    for letter in letters:
        assert letter["status"] in (401, 422), letter
        assert "token grant refused" in letter["message"], letter
    # no retry storm: at most a refresh and a password grant per batch that tried
    batches = counts["batches_total"]
    assert refused, "the PIM never saw the connector try the new situation"
    assert len(token_calls) <= 2 * batches + 2, (len(token_calls), batches)
    assert len(calls) <= 4 * batches + 10, f"{len(calls)} PIM calls for {batches} batches"

    # recovery: the credentials work again → a retry of the dead letters lands everything
    pim.update_settings(password=world.pim_password)
    retried = retry_dead_letters(SOURCE, services=services)
    again = wait_run_end(lambda: run_report(retried["run_id"], services=services), 120)
    assert again["state"] == "succeeded" and again["counts"]["failed"] == 0, again
    assert dead_letters(SOURCE, services=services) == []
    _check(world)


def _start(world: World) -> str:
    from connector.pipeline import start_run

    started = start_run(SOURCE, "test", services=world.services)
    assert started.started and started.run_id, started.message
    return started.run_id


def _bulk_since(pim: Any, t0: float) -> bool:
    return any(c["t"] > t0 and c["template"].endswith("/assets") and c["method"] == "PATCH"
               for c in pim.log())
