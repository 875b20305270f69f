"""One config per fleet, for real: a `celery -A tasks worker` started with config A, and
`connector sync -c B` starting the run. The worker refuses the run's tasks: the run fails
saying which file each side has and that the workers must be restarted (in the sync's
report and in `connector status`), and nothing is written to the PIM. Then a run started
with the workers' own config goes through.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from connector.config import load_config
from connector.config.fingerprint import config_fingerprint
from tests.e2e.world import ROOT, SOURCE, World

pytestmark = pytest.mark.timeout(300)

CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
TOKEN_PATH = "/api/oauth/v1/token"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("fleet")), redis_url, 40)
    try:
        w.start()
        w.start_worker(concurrency=1)  # reads config A: the World's config.yaml
        yield w
    finally:
        w.stop()


def cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONNECTOR, *args], cwd=ROOT, env=world.env(), capture_output=True,
                          text=True, timeout=240, check=False)


def test_a_worker_refuses_a_run_started_with_another_config_and_says_to_restart(
    world: World,
) -> None:
    assert world.config_path is not None and world.pim is not None
    a = world.config_path.resolve()
    b = a.parent / "b.yaml"  # the same config, edited: workers have not been restarted
    data = yaml.safe_load(a.read_text())
    data["sync"]["chunk_size"] = 7
    b.write_text(yaml.safe_dump(data, sort_keys=False))
    hash_a = config_fingerprint(load_config(a, env=world.env()))
    hash_b = config_fingerprint(load_config(b, env=world.env()))
    assert hash_a != hash_b
    since = time.time()

    out = cli(world, "sync", SOURCE, "-c", str(b), "--wait", "--timeout", "120")

    run_id = world.services.runs.run_ids(SOURCE, 1)[0] if world.services else ""
    expected = (
        f"config mismatch: run {run_id} was started with config {b} (fingerprint {hash_b}), "
        f"but this worker loaded {a} (fingerprint {hash_a}); a worker reads its config "
        f"once, at start: restart every worker with the config that starts the runs"
    )
    assert out.returncode == 1, out.stdout + out.stderr + world.worker_log()
    assert f"run {run_id} ({SOURCE}, manual): failed" in out.stdout, out.stdout
    assert f"  error               {expected}" in out.stdout, out.stdout
    writes = [f"{r['method']} {r['path']}" for r in world.pim.log(since)
              if r["method"] not in ("GET", "HEAD") and r["path"] != TOKEN_PATH]
    assert writes == []  # nothing reached the PIM
    assert "config mismatch" in world.worker_log()  # the worker says so in its log too

    status = cli(world, "status", SOURCE, "-c", str(b))
    assert status.returncode == 0, status.stderr
    assert f"      error: {expected}" in status.stdout, status.stdout
    line = next(x for x in status.stdout.splitlines() if x.endswith(run_id))
    assert " failed " in line
    as_json = json.loads(cli(world, "status", SOURCE, "-c", str(b), "--json").stdout)
    run = as_json[0]["runs"][0]
    assert (run["state"], run["config_path"], run["config_hash"]) == ("failed", str(b), hash_b)

    # the workers' own config goes through
    good = cli(world, "sync", SOURCE, "-c", str(a), "--wait", "--timeout", "120")
    assert "config mismatch" not in good.stdout, good.stdout
    assert world.pim.dump_assets("packshots"), good.stdout + good.stderr
