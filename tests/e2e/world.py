"""The end-to-end world: sandbox DAM + sandbox PIM on 127.0.0.1, the demo structure
applied, a config file pointing at them, and `celery -A tasks worker` subprocesses.

Sizes come from the environment so that bigger runs can be made by hand:
  E2E_ASSETS          sandbox DAM size of the core suite (default 2000)
  E2E_RABBIT_ASSETS   size of the RabbitMQ suite (default 300)
  E2E_CONCURRENCY     worker processes (default 3)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from celery import Celery

from connector.config import load_config
from connector.config.model import Config
from connector.pim.client import AkeneoClient
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.settings import PimCredentials, Secret
from connector.structure import apply_structure, load_structure_file
from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer
from tasks import routing
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "sandbox"
DAM_TOKEN = "sandbox-dam-token"
QUEUES = ",".join((*routing.QUEUES, routing.DEFAULT_QUEUE))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def write_config(path: Path, dam_url: str, **sync: Any) -> Path:
    """examples/demo.yaml, pointed at the sandbox DAM, one source, no schedules, fast retries."""
    data = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    source = data["sources"][SOURCE]
    source["rest"]["base_url"] = dam_url
    source["rest"]["max_retries"] = 1
    source["rest"]["requests_per_second"] = 1000
    source.pop("schedule", None)
    source.pop("reconcile_schedule", None)
    data["sources"] = {SOURCE: source}
    data["pim"]["requests_per_second"] = 1000
    data["sync"].update({"max_retries": 10, "backoff_base": 0.2, "backoff_max": 2,
                         "watermark_overlap": 1}, **sync)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class SendTaskEnqueuer:
    """tasks.pipeline.CeleryEnqueuer's messages, sent from a Celery app of the test's own
    (the test process cannot build the `tasks` app: celeryconfig reads the environment
    once; tasks.routing, plain data, names the tasks and queues)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def fetch(self, source: str, run_id: str) -> None:
        self.app.send_task(routing.FETCH_TASK, kwargs={"source": source, "run_id": run_id},
                           queue=routing.queue_of(routing.FETCH_TASK))

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        self.app.send_task(routing.TRANSFORM_TASK, (run_id, chunk_id),
                           queue=routing.transform_queue(media))

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        self.app.send_task(routing.PUSH_TASK, (run_id, batch_id),
                           queue=routing.queue_of(routing.PUSH_TASK),
                           countdown=countdown or None)


@dataclass
class World:
    tmp: Path
    broker_url: str
    assets: int
    namespace: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex[:10]}")
    dam: DamSandbox | None = None
    pim: PimSandbox | None = None
    dam_server: BackgroundServer | None = None
    pim_server: BackgroundServer | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    config_path: Path | None = None
    config: Config | None = None
    services: Services | None = None
    app: Celery | None = None
    # Redis of the connector state (and of the broker when broker_url names it); the
    # secrets the sandboxes accept; more environment for every subprocess.
    redis_url: str = field(
        default_factory=lambda: os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    pim_secret: str = "sandbox-secret"
    pim_password: str = "sandbox-password"
    dam_token: str = DAM_TOKEN
    extra_env: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ setup

    def start(self, **sync: Any) -> World:
        self.dam = DamSandbox(assets=self.assets, shape="bynder", seed=7, token=self.dam_token)
        self.dam_server = self.dam.serve("127.0.0.1", 0)
        self.pim = PimSandbox(PimSandboxSettings(
            seed=3, max_concurrency=0, secret=self.pim_secret, password=self.pim_password,
        ))
        self.pim_server = self.pim.serve("127.0.0.1", 0)
        self.config_path = write_config(self.tmp / "config.yaml", self.dam_server.url, **sync)
        self.config = load_config(self.config_path, env=self.env())
        client = self.client()
        report = apply_structure(client, load_structure_file(ROOT / "examples" / "structure.yaml"))
        assert report.ok, report.to_dict()
        self.app = Celery("e2e", broker=self.broker_url)
        self.app.conf.update(
            task_serializer="json", accept_content=["json"], broker_connection_retry=True,
            broker_transport_options=self._transport_options(),
        )
        from connector.dam.factory import build_source

        self.services = Services(
            self.config, get_redis(self.redis_url), Keys(self.namespace), client=client,
            sources={SOURCE: build_source(self.config.source(SOURCE))},
            enqueuer=SendTaskEnqueuer(self.app),
        )
        return self

    def _transport_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"visibility_timeout": 7200}
        if self.broker_url.startswith("redis"):
            options["global_keyprefix"] = f"{self.namespace}:celery:"
        return options

    def credentials(self) -> PimCredentials:
        assert self.pim_server is not None
        return PimCredentials(url=self.pim_server.url, client_id="sandbox-client",
                              client_secret=Secret(self.pim_secret), username="sandbox",
                              password=Secret(self.pim_password))

    def client(self) -> AkeneoClient:
        assert self.config is not None
        return AkeneoClient(
            self.credentials(), self.config.pim, get_redis(self.redis_url), Keys(self.namespace)
        )

    def env(self) -> dict[str, str]:
        assert self.pim_server is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AKENEO_", "CELERY_"))}
        env.update({
            "CONNECTOR_NAMESPACE": self.namespace,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "AKENEO_URL": self.pim_server.url,
            "AKENEO_CLIENT_ID": "sandbox-client",
            "AKENEO_CLIENT_SECRET": self.pim_secret,
            "AKENEO_USERNAME": "sandbox",
            "AKENEO_PASSWORD": self.pim_password,
            "DAM_TOKEN": self.dam_token,
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        })
        if self.config_path is not None:
            env["CONNECTOR_CONFIG"] = str(self.config_path)
        return env

    def start_worker(
        self, concurrency: int | None = None, loglevel: str = "WARNING", app: str = "tasks"
    ) -> subprocess.Popen[bytes]:
        concurrency = concurrency or env_int("E2E_CONCURRENCY", 3)
        name = f"w{len(self.workers)}-{self.namespace}@127.0.0.1"
        log = open(self.tmp / f"worker{len(self.workers)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "celery"), "-A", app, "worker", "-l", loglevel,
             "-c", str(concurrency), "-Q", QUEUES, "-n", name, "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for server in (self.dam_server, self.pim_server):
            if server is not None:
                server.stop()
        if self.services is not None:
            self.services.close()
        redis = get_redis(self.redis_url)
        keys = list(redis.scan_iter(match=f"{self.namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            redis.delete(*keys[i : i + 500])

    def worker_log(self) -> str:
        return "\n".join(
            (self.tmp / f"worker{i}.log").read_text(errors="replace")[-4000:]
            for i in range(len(self.workers))
        )

    # ------------------------------------------------------------------ runs

    def wait_run(self, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
        from connector.pipeline import run_report

        assert self.services is not None
        for proc in self.workers:
            assert proc.poll() is None, f"worker died:\n{self.worker_log()}"

        def done() -> dict[str, Any] | None:
            report = run_report(run_id, services=self.services)
            return report if report["state"] in ("succeeded", "failed") else None

        try:
            found = wait_for(done, timeout=timeout, interval=0.2, what=f"run {run_id}")
            assert found is not None
            return found
        except AssertionError:
            raise AssertionError(
                f"run {run_id} did not end: {run_report(run_id, services=self.services)}\n"
                f"{self.worker_log()}"
            ) from None

    def sync(self, timeout: float = 120.0, **kw: Any) -> dict[str, Any]:
        from connector.pipeline import start_run

        started = start_run(SOURCE, "test", services=self.services, **kw)
        assert started.started, started.message
        assert started.run_id is not None
        return self.wait_run(started.run_id, timeout)

    def sync_via_subprocess(self, timeout: float = 120.0) -> dict[str, Any]:
        """Start a run the way the CLI does: a separate process, the real `tasks` enqueuer."""
        code = ("import json; from tasks.wiring import install; install(); "
                "from connector.pipeline import start_run; "
                f"print(json.dumps(start_run({SOURCE!r}, 'manual').to_dict()))")
        out = subprocess.run([sys.executable, "-c", code], env=self.env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        import json

        started = json.loads(out.stdout.strip().splitlines()[-1])
        assert started["run_id"] and not started["busy"], started
        return self.wait_run(started["run_id"], timeout)

