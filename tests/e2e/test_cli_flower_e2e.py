"""The operator's view, end to end: the `connector` CLI as a separate process and Flower's
API, against a real worker, real Redis and the sandbox servers.

Shows: `sync --wait --json` ends with the run report and the documented exit code; a
second `sync` while one runs is refused (exit 1, "busy"); `status`, `failures list`,
`quarantine list` and `explain` report what happened; Flower refuses requests without
credentials and its `/api/tasks` lists the pipeline's tasks by name while a run goes on.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks import routing
from tests.e2e.world import ROOT, SOURCE, World, env_int
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(300)

CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
FLOWER_USER, FLOWER_PASSWORD = "ops", "flower-pw-e2e-3f9c"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("cli")), redis_url, env_int("E2E_CLI_ASSETS", 400))
    try:
        w.start()
        w.start_worker(concurrency=2)
        yield w
    finally:
        w.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def flower(world: World) -> Iterator[str]:
    port = _free_port()
    env = dict(world.env(), FLOWER_BASIC_AUTH=f"{FLOWER_USER}:{FLOWER_PASSWORD}")
    log = open(world.tmp / "flower.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [CONNECTOR, "flower", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (world.tmp / "flower.log").read_text()
        try:
            return requests.get(f"{url}/healthcheck", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, interval=0.2, what="Flower to answer")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


def cli(world: World, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONNECTOR, *args],
        cwd=ROOT,
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_flower_refuses_requests_without_credentials(flower: str) -> None:
    assert requests.get(f"{flower}/api/tasks", timeout=5).status_code == 401
    wrong = requests.get(f"{flower}/api/tasks", auth=(FLOWER_USER, "nope"), timeout=5)
    assert wrong.status_code == 401
    ok = requests.get(f"{flower}/api/tasks", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=5)
    assert ok.status_code == 200


def test_sync_wait_json_reports_the_run_and_flower_sees_its_tasks(
    world: World, flower: str
) -> None:
    proc = subprocess.Popen(
        [CONNECTOR, "sync", SOURCE, "--wait", "--json"],
        cwd=ROOT,
        env=world.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    wanted = {routing.FETCH_TASK, routing.TRANSFORM_TASK, routing.PUSH_TASK}

    def flower_lists_the_pipeline_tasks() -> bool:
        tasks = requests.get(
            f"{flower}/api/tasks", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=5
        ).json()
        seen.update(t.get("name") for t in tasks.values() if t.get("name"))
        return wanted <= seen

    wait_for(
        flower_lists_the_pipeline_tasks,
        timeout=120,
        interval=0.3,
        what=f"Flower to list {wanted} (saw {seen})",
    )
    out, err = proc.communicate(timeout=240)
    payload = json.loads(out)
    (report,) = payload["runs"]
    assert report["state"] == "succeeded", (report, err)
    counts = report["counts"]
    assert counts["created"] > 0 and counts["dead_lettered"] == 0
    # The sandbox DAM seeds deliberately bad records: they are quarantined, so not
    # everything synced → exit 1, as documented.
    assert counts["quarantined"] > 0
    assert proc.returncode == 1


def test_a_second_sync_while_one_runs_is_refused(world: World) -> None:
    from connector.pipeline import start_run

    world.pim.update_settings(bulk_latency=1.0)  # type: ignore[union-attr]  # a slow PIM
    try:
        first = start_run(SOURCE, "test", full=True, force=True, services=world.services)
        assert first.started and first.run_id is not None
        second = cli(world, "sync", SOURCE)
        assert world.services.runs.holder(SOURCE) == first.run_id  # type: ignore[union-attr]
        assert second.returncode == 1
        assert f"busy with run {first.run_id}" in second.stderr
        world.wait_run(first.run_id, timeout=240)
    finally:
        world.pim.update_settings(bulk_latency=0.0)  # type: ignore[union-attr]


def test_status_failures_quarantine_and_explain(world: World) -> None:
    status = cli(world, "status", SOURCE, "--json")
    assert status.returncode == 0, status.stderr
    (st,) = json.loads(status.stdout)
    assert st["watermark"] and st["lock_holder"] is None
    assert st["runs"][0]["state"] == "succeeded"

    human = cli(world, "status", SOURCE)
    assert "succeeded" in human.stdout and "watermark" in human.stdout

    failures = cli(world, "failures", "list", SOURCE)
    assert failures.returncode == 0 and "no failures" in failures.stdout

    quarantined = cli(world, "quarantine", "list", SOURCE, "--json")
    entries: list[dict[str, Any]] = json.loads(quarantined.stdout)[SOURCE]
    assert entries and all(e.get("reason") for e in entries)

    dam = world.dam
    assert dam is not None
    bad_ids = {b["id"] for b in dam.bad_records()}
    good = next(
        i
        for i in dam.ids()
        if i not in bad_ids and str((dam.record(i) or {}).get("folder", "")).startswith("products/")
    )
    explained = cli(world, "explain", good, "--json")
    assert explained.returncode == 0, explained.stderr
    info = json.loads(explained.stdout)
    assert info["dam"]["id"] == good
    assert info["last_push"] is not None
    assert info["would_push"] is False

    text = cli(world, "explain", good)
    assert "last push" in text.stdout and "would push now: no" in text.stdout


def test_dry_run_shows_value_differences_and_writes_nothing(world: World) -> None:
    dam, pim = world.dam, world.pim
    assert dam is not None and pim is not None
    bad_ids = {b["id"] for b in dam.bad_records()}
    target = next(
        i
        for i in dam.ids()
        if i not in bad_ids and (dam.record(i) or {}).get("folder") == "products/videos"
    )
    dam.edit(target, {"name": "Renamed by the dry-run test"})
    writes_before = pim.counters()["bulk_asset_requests"]

    result = cli(world, "sync", SOURCE, "--dry-run", "--wait")
    assert result.returncode == 0, result.stderr
    assert "update" in result.stdout
    assert "title[-|-]: PIM " in result.stdout
    assert "→ DAM 'Renamed by the dry-run test'" in result.stdout
    assert pim.counters()["bulk_asset_requests"] == writes_before  # nothing written

    as_json = cli(world, "sync", SOURCE, "--dry-run", "--wait", "--json")
    (diffs,) = json.loads(as_json.stdout)["differences"].values()
    (change,) = [d for d in diffs if d["dam_id"] == target]
    assert change["action"] == "update"
    assert {"attribute": "title", "locale": None, "channel": None}.items() <= (
        change["differences"][0].items()
    )
    # the real sync then writes exactly that asset
    real = cli(world, "sync", SOURCE, "--wait", "--json")
    (report,) = json.loads(real.stdout)["runs"]
    assert report["counts"]["updated"] == 1, report


def test_usage_and_config_errors_exit_2(world: World, tmp_path: Path) -> None:
    assert cli(world, "sync", "no-such-source").returncode == 2
    assert cli(world, "sync", SOURCE, "--full", "--since", "2026-01-01").returncode == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("families: {}\nsources: {x: {type: nope}}\n")
    result = cli(world, "status", "--config", str(broken))
    assert result.returncode == 2
    assert "sources.x.type" in result.stderr
