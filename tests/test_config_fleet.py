"""One config per fleet: runs record their config's fingerprint; a worker with another
config refuses the run's tasks, and the run fails saying which files and why.

The real Celery worker case (a worker started with config A, `connector sync -c B`) is
tests/e2e/test_config_fleet_e2e.py; here the steps run in-process with two Services.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector import pipeline as steps
from connector.config import load_config
from connector.config.fingerprint import config_fingerprint
from connector.config.model import Config
from connector.pipeline.services import Services
from tests.pipeline_fakes import (
    FakeDam,
    FakePim,
    QueueEnqueuer,
    make_asset,
    make_config,
    make_services,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.yaml"
ENV = {"DAM_TOKEN": "token-one", "DAM_URL": "http://127.0.0.1:1", "HOT_FOLDER": "/tmp/hot"}


def _fingerprint_in_a_fresh_interpreter(path: Path, env: dict[str, str]) -> str:
    code = ("import sys; from connector.config import load_config; "
            "from connector.config.fingerprint import config_fingerprint; "
            "print(config_fingerprint(load_config(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], env={**env, "PATH": ""},
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def test_the_fingerprint_is_the_same_in_every_process_and_hides_secrets(tmp_path: Path) -> None:
    here = config_fingerprint(load_config(DEMO, env=ENV))
    # another interpreter (another hash seed) and another path to the same content
    copy = tmp_path / "copy.yaml"
    copy.write_text(DEMO.read_text())
    assert _fingerprint_in_a_fresh_interpreter(copy, ENV) == here
    assert len(here) == 16 and "token-one" not in here
    # a changed secret is a changed config, without the secret being written anywhere
    other_token = config_fingerprint(load_config(DEMO, env={**ENV, "DAM_TOKEN": "token-two"}))
    assert other_token != here
    edited = copy.read_text().replace("push_batch_size: 100", "push_batch_size: 50")
    assert edited != copy.read_text()
    copy.write_text(edited)
    assert config_fingerprint(load_config(copy, env=ENV)) != here


def _pair() -> tuple[Config, Config]:
    """Config B (what the CLI starts runs with) and A (what the worker loaded)."""
    b = dataclasses.replace(make_config(chunk_size=10), path="/etc/connector/b.yaml")
    a = dataclasses.replace(make_config(chunk_size=20), path="/etc/connector/a.yaml")
    return a, b


def _worker(config: Config, cli: Services, queue: QueueEnqueuer) -> Services:
    """Another process's Services on the same Redis, DAM, PIM and task queue."""
    services, _ = make_services(config, cli.source("dam"), cli.client,  # type: ignore[arg-type]
                                namespace=cli.keys.namespace)
    services._enqueuer = queue  # its tasks go to the one queue of the test
    return services


@pytest.mark.parametrize("foreign_step", ["fetch", "transform", "push"])
def test_a_worker_with_another_config_refuses_the_run_and_the_run_fails_saying_why(
    namespace: str, foreign_step: str
) -> None:
    a, b = _pair()
    dam, pim = FakeDam([make_asset(i) for i in range(30)]), FakePim()
    cli, queue = make_services(b, dam, pim, namespace=namespace)  # starts the run, config B
    worker = _worker(a, cli, queue)  # the worker of `foreign_step`, config A
    started = steps.start_run("dam", "manual", services=cli)
    assert started.run_id is not None
    run_id = started.run_id
    record = cli.runs.get(run_id)
    assert record.config_hash == config_fingerprint(b) and record.config_path == b.path

    while queue.queue:  # the other steps run with config B, `foreign_step` with A
        kind, args = queue.queue.popleft()
        queue.services = worker if kind == foreign_step else cli
        queue.run_one(kind, args)

    report = steps.run_report(run_id, services=cli)
    expected = (
        f"config mismatch: run {run_id} was started with config /etc/connector/b.yaml "
        f"(fingerprint {config_fingerprint(b)}), but this worker loaded "
        f"/etc/connector/a.yaml (fingerprint {config_fingerprint(a)}); a worker reads its "
        f"config once, at start: restart every worker with the config that starts the runs"
    )
    assert report["state"] == "failed"
    assert report["error"] == expected
    assert report["config_path"] == b.path and report["config_hash"] == config_fingerprint(b)
    assert pim.requests == [] and pim.assets == {} and pim.product_patches == []
    assert cli.runs.holder("dam") is None  # the lock is released
    assert cli.runs.watermark("dam") is None
    assert cli.dead_letters.count("dam") == 0  # a refusal is not the assets' failure
    assert json.dumps(report).count(expected) >= 1


def test_the_same_config_in_every_process_runs_normally(namespace: str) -> None:
    config = dataclasses.replace(make_config(), path="/etc/connector/a.yaml")
    dam, pim = FakeDam([make_asset(i) for i in range(30)]), FakePim()
    cli, queue = make_services(config, dam, pim, namespace=namespace)
    # the worker read the same content from another mount: the same config
    worker = _worker(dataclasses.replace(config, path="/srv/a.yaml"), cli, queue)
    started = steps.start_run("dam", "manual", services=cli)
    assert started.run_id is not None
    queue.services = worker
    queue.drain()
    report = steps.run_report(started.run_id, services=cli)
    assert report["state"] == "succeeded" and report["error"] is None
    assert report["counts"]["created"] == 30
