"""Secrets never show, and Flower never opens without credentials.

One world for the module: the sandboxes accept distinctive random secrets (PIM client
secret and password, DAM token), the config names a webhook secret, a worker logs at
DEBUG, and Flower runs as the Procfile starts it (`connector flower`, FLOWER_BASIC_AUTH).
The runs walk the error paths (PIM 5xx/429 and retries, an expired token, a DAM that
refuses its token, revoked PIM credentials, bad webhook signatures); then every worker log
line, Flower's log, CLI output, in-process log record and Flower's task views are
searched for the secrets.
"""

from __future__ import annotations

import logging
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from werkzeug.test import Client

from connector.config.model import WebhookConfig
from connector.intake.signature import compute_signature
from connector.intake.web import WebhookApp
from connector.pipeline import dead_letters, run_report, set_services, start_run
from connector.redis_conn import Keys, get_redis
from tests.e2e.expected import family_of
from tests.e2e.world import ROOT, SOURCE, World
from tests.faults.support import free_port, scan_for, sized, stop_worker, wait_run_end
from tests.helpers import wait_for

ASSETS = sized(1000, 150)
SECRETS = {
    "PIM client secret": f"pim-client-secret-{secrets.token_hex(10)}",
    "PIM password": f"pim-password-{secrets.token_hex(10)}",
    "DAM token": f"dam-token-{secrets.token_hex(10)}",
    "webhook secret": f"webhook-secret-{secrets.token_hex(10)}",
    "Flower password": f"flower-password-{secrets.token_hex(10)}",
}
FLOWER_AUTH = f"admin:{SECRETS['Flower password']}"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(900, 240))]


class Flower:
    """`connector flower` as the Procfile runs it, on a free port, output in a file."""

    def __init__(self, world: World, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        handle = log.open("wb")
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "connector"), "flower", "--port", str(self.port)],
            cwd=ROOT, env=world.env(), stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()

    def get(self, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=10)

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            try:
                return self.get("/", self.credentials()).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=60, interval=0.2, what="Flower")

    @staticmethod
    def credentials() -> tuple[str, str]:
        user, _, password = FLOWER_AUTH.partition(":")
        return user, password

    def stop(self) -> None:
        stop_worker(self.proc)  # SIGTERM to its group, then SIGKILL if it lingers


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(
        Path(tmp_path_factory.mktemp("secrets")), redis_url, ASSETS,
        pim_secret=SECRETS["PIM client secret"], pim_password=SECRETS["PIM password"],
        dam_token=SECRETS["DAM token"],
        extra_env={"WEBHOOK_SECRET": SECRETS["webhook secret"], "FLOWER_BASIC_AUTH": FLOWER_AUTH,
                   "FLOWER_PORT": "0"},
    )
    try:
        w.start()
        w.edit_config(lambda data: data["sources"][SOURCE].update(webhook={
            "header": "X-Signature", "prefix": "sha256=", "secret": "${WEBHOOK_SECRET}",
            "events": {"event_type": "event", "asset_id": "asset_id",
                       "actions": {"asset.updated": "upsert", "asset.deleted": "delete"}},
        }))
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def flower(world: World) -> Iterator[Flower]:
    f = Flower(world, world.tmp / "flower.log")
    try:
        f.wait_ready()
        yield f
    finally:
        f.stop()


# ---------------------------------------------------------------- Flower auth


def test_flower_refuses_requests_without_valid_credentials(flower: Flower) -> None:
    for path in ("/", "/tasks", "/workers", "/broker", "/api/tasks", "/api/workers"):
        assert flower.get(path).status_code == 401, path
        assert flower.get(path, ("admin", "wrong")).status_code == 401, path
    assert flower.get("/", flower.credentials()).status_code == 200
    assert flower.get("/api/tasks", flower.credentials()).status_code == 200


@pytest.mark.parametrize("auth", [None, "", "admin", ":password", "admin:pw,bad"])
def test_connector_flower_will_not_start_without_credentials(
    auth: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.cli import main

    if auth is None:
        monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)
    else:
        monkeypatch.setenv("FLOWER_BASIC_AUTH", auth)
    result = CliRunner().invoke(main, ["flower", "--port", str(free_port())])
    assert result.exit_code == 2, result.output
    assert "FLOWER_BASIC_AUTH" in result.output


# ---------------------------------------------------------------- secrets


def _cli(world: World, *args: str) -> str:
    from connector.cli import main

    set_services(None)
    try:
        result = CliRunner().invoke(main, list(args), env=world.env())
    finally:
        set_services(None)
    assert result.exit_code in (0, 1), (args, result.output, result.exception)
    return result.output


def _cli_process(world: World, *args: str) -> str:
    """The CLI in its own process (it enqueues through `tasks`, whose celeryconfig reads
    the environment once per process)."""
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "connector"), *args], cwd=ROOT,
                         env=world.env(), capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode in (0, 1), (args, out.stdout, out.stderr)
    assert re.search(r"run \S+ \(sandbox, manual\): (succeeded|failed)", out.stdout), out
    return out.stdout + out.stderr


def _run(world: World, timeout: float = 120) -> dict[str, Any]:
    started = start_run(SOURCE, "test", services=world.services)
    assert started.started and started.run_id, started.message
    run_id = started.run_id
    return wait_run_end(lambda: run_report(run_id, services=world.services), timeout)


def test_no_secret_in_logs_cli_output_or_flower(
    world: World, flower: Flower, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pim, dam, services = world.pim, world.dam, world.services
    assert pim is not None and dam is not None and services is not None
    world.start_worker(2, loglevel="DEBUG")
    texts: list[tuple[str, str]] = []

    # 1. a first sync; then edits pushed through 5xx/429 and retries; an expired token
    first = _run(world, sized(600, 120))
    assert first["state"] == "succeeded", first
    bad = {b["id"] for b in dam.bad_records()}
    packshots = [i for i in dam.ids()
                 if i not in bad and family_of(dam.record(i) or {}) == "packshots"]
    for dam_id in packshots[:40]:
        dam.edit(dam_id, {"description": f"through the storm {dam_id[:6]}"})
    pim.expire_tokens()
    pim.update_settings(error_rate_429=1.0, retry_after=1)  # surely one 429, then one 5xx
    try:
        started = start_run(SOURCE, "test", services=services)
        assert started.started and started.run_id
        stormy_id = started.run_id
        wait_for(lambda: pim.counters()["injected_429"] >= 1, timeout=60, what="a 429")
        pim.update_settings(error_rate_429=0.0, error_rate_5xx=1.0)
        wait_for(lambda: pim.counters()["injected_5xx"] >= 1, timeout=60, what="a 5xx")
    finally:
        pim.update_settings(error_rate_5xx=0.0, error_rate_429=0.0)
    stormy = wait_run_end(lambda: run_report(stormy_id, services=services), 120)
    assert stormy["state"] == "succeeded" and stormy["counts"]["updated"] == 40, stormy

    # 2. the DAM refuses our token: the run fails, with its reason
    dam.credentials["token"] = "rotated-in-the-dam"
    try:
        refused = _run(world)
    finally:
        dam.credentials["token"] = SECRETS["DAM token"]
    assert refused["state"] == "failed" and "401" in refused["error"], refused

    # 3. the PIM password changes: the edited assets become dead letters (auth reason)
    edited = packshots[40:70]
    for dam_id in edited:
        dam.edit(dam_id, {"description": f"after rotation {dam_id[:6]}"})
    pim.update_settings(password="rotated-in-the-pim")
    pim.revoke_tokens()
    rotated = _run(world)
    assert rotated["counts"]["failed"] == len(edited), rotated
    letters = dead_letters(SOURCE, services=services)
    assert letters and "token grant refused" in letters[0]["message"]

    # 4. the operator looks around with the CLI (the worker is still failing auth)
    texts += [
        ("connector status", _cli(world, "status", "--runs", "5")),
        ("connector status --json", _cli(world, "status", "--json")),
        ("connector failures list", _cli(world, "failures", "list")),
        ("connector failures list --json", _cli(world, "failures", "list", "--json")),
        ("connector quarantine list", _cli(world, "quarantine", "list")),
        ("connector explain", _cli(world, "explain", edited[0])),
        ("connector explain --json", _cli(world, "explain", edited[0], "--json")),
        ("connector sync --wait", _cli_process(world, "sync", SOURCE, "--wait")),
    ]
    pim.update_settings(password=SECRETS["PIM password"])

    # 5. webhook deliveries, good and forged, through the webhook app (logs captured here)
    assert world.config is not None
    source = world.config.source(SOURCE)
    assert isinstance(source.webhook, WebhookConfig)
    app = WebhookApp(world.config, get_redis(world.redis_url), Keys(world.namespace),
                     schedule=lambda s, c: None)
    client = Client(app)
    body = b'{"event": "asset.updated", "asset_id": "%s"}' % edited[0].encode()
    good = client.post(f"/webhooks/{SOURCE}", data=body, headers={
        "Content-Type": "application/json", "X-Signature": compute_signature(source.webhook, body)})
    forged = client.post(f"/webhooks/{SOURCE}", data=body, headers={
        "Content-Type": "application/json", "X-Signature": "sha256=" + "00" * 32})
    assert (good.status_code, forged.status_code) == (202, 401)
    texts += [("webhook answers", good.get_data(as_text=True) + forged.get_data(as_text=True))]
    texts += [("/metrics", client.get("/metrics").get_data(as_text=True))]

    # 6. Flower's task views, with auth, after all that
    auth = flower.credentials()
    listing = flower.get("/api/tasks?limit=5000", auth)
    assert listing.status_code == 200
    tasks = listing.json()
    assert len(tasks) >= 10, "Flower saw no task events"
    states = {t.get("state") for t in tasks.values()}
    assert "SUCCESS" in states, states
    texts.append(("Flower /api/tasks", listing.text))
    texts.append(("Flower /tasks", flower.get("/tasks", auth).text))
    interesting = sorted(tasks, key=lambda i: tasks[i].get("state") == "SUCCESS")[:25]
    for task_id in interesting:
        page = flower.get(f"/task/{task_id}", auth)
        assert page.status_code == 200, task_id
        texts.append((f"Flower /task/{task_id}", page.text))
        texts.append((f"Flower /api/task/info/{task_id}",
                      flower.get(f"/api/task/info/{task_id}", auth).text))

    # the logs: every worker log line, Flower's, this process's records
    stop_worker(world.workers[-1])
    for i in range(len(world.workers)):
        texts.append((f"worker{i}.log", (world.tmp / f"worker{i}.log").read_text(errors="replace")))
    texts.append(("flower.log", flower.log.read_text(errors="replace")))
    texts.append(("captured log records", caplog.text))
    worker_log = texts[-3][1]
    # the error paths were really logged (else this test proves little)
    for logged in ("DEBUG", "renewing the token", "re-authenticating", "DamAuthError",
                   "PIM token: refreshed"):
        assert logged in worker_log, logged
    assert re.search(r"→ (429|50[023])", worker_log), "no refused request was logged"

    leaks = scan_for(texts, {k: v for k, v in SECRETS.items() if k != "Flower password"})
    assert not leaks, leaks
    # Flower's own password only lives in its environment, never in its output
    flower_texts = [t for t in texts if not t[0].startswith("Flower /")]
    assert not scan_for(flower_texts, {"Flower password": SECRETS["Flower password"]})
