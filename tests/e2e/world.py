"""The end-to-end world: sandbox DAM + sandbox PIM on 127.0.0.1, the demo structure
applied, a config file pointing at them, and `celery -A tasks worker` subprocesses.

Sizes come from the environment so that bigger runs can be made by hand:
  E2E_ASSETS          sandbox DAM size of the core suite (default 2000)
  E2E_RABBIT_ASSETS   size of the RabbitMQ suite (default 300)
  E2E_CONCURRENCY     worker processes (default 3)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
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
from connector.settings import PimCredentials
from sandbox import harness
from sandbox.dam import DamSandbox
from sandbox.harness import DAM_TOKEN, ROOT, SOURCE, SendTaskEnqueuer
from sandbox.pim import PimSandbox
from sandbox.server import BackgroundServer
from tasks import routing
from tests.helpers import wait_for

__all__ = ["DAM_TOKEN", "QUEUES", "ROOT", "SOURCE", "SendTaskEnqueuer", "World", "env_int"]

QUEUES = harness.QUEUES_AND_DEFAULT


def delete_amqp_namespace(broker_url: str, namespace: str) -> None:
    """The queues and exchanges a world declared on RabbitMQ (`<namespace>.<queue>`,
    tasks/routing.py broker_conf): durable, they would outlive the test otherwise."""
    from kombu import Connection

    names = [routing.broker_queue(q, namespace, broker_url)
             for q in (*routing.QUEUES, routing.DEFAULT_QUEUE)]
    exchanges = [*names, f"{namespace}.celery.pidbox", f"reply.{namespace}.celery.pidbox",
                 f"{namespace}.celeryev"]
    with Connection(broker_url, connect_timeout=5) as conn:
        for kind, name in [("queue", n) for n in names] + [("exchange", n) for n in exchanges]:
            channel = conn.channel()  # a refused delete closes its channel: one each
            try:
                if kind == "queue":
                    channel.queue_delete(name)
                else:
                    channel.exchange_delete(name)
            except Exception:  # already gone
                pass
            finally:
                with contextlib.suppress(Exception):
                    channel.close()


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def write_config(path: Path, dam_url: str, **sync: Any) -> Path:
    """examples/demo.yaml, pointed at the sandbox DAM, one source, no schedules, fast retries."""
    data = harness.demo_config(dam_url)
    data["sources"][SOURCE]["rest"]["max_retries"] = 1
    data["sync"].update({"max_retries": 10, "backoff_base": 0.2, "backoff_max": 2}, **sync)
    return harness.write_yaml(path, data)


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
    # HTTPS sandboxes: clients trust sandbox.server.default_ca().bundle (REQUESTS_CA_BUNDLE)
    tls: bool = False

    # ------------------------------------------------------------------ setup

    def start(self, **sync: Any) -> World:
        self.dam = DamSandbox(assets=self.assets, shape="bynder", seed=7, token=self.dam_token)
        self.dam_server = self.dam.serve("127.0.0.1", 0, tls=self.tls)
        self.pim = harness.local_pim(self.secrets(), seed=3)
        self.pim_server = self.pim.serve("127.0.0.1", 0, tls=self.tls)
        self.config_path = write_config(self.tmp / "config.yaml", self.dam_server.url, **sync)
        self.config = load_config(self.config_path, env=self.env())
        client = self.client()
        harness.apply_demo_structure(client)
        self.app = Celery("e2e", broker=self.broker_url)
        self.app.conf.update(harness.sender_conf(self.namespace, self.broker_url,
                                                 broker_connection_retry=True))
        self.services = harness.world_services(
            self.config, self.redis_url, self.namespace, client=client,
            enqueuer=SendTaskEnqueuer(self.app),
        )
        return self

    def edit_config(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Rewrite the config file with `change` applied, before any worker starts, and
        reload it here: runs this process starts carry the config's fingerprint, and a
        worker refuses a run started with another config than its own."""
        assert self.config_path is not None and self.app is not None
        data = yaml.safe_load(self.config_path.read_text())
        change(data)
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.config = load_config(self.config_path, env=self.env())
        if self.services is not None:
            self.services.close()
        self.services = harness.world_services(
            self.config, self.redis_url, self.namespace, client=self.client(),
            enqueuer=SendTaskEnqueuer(self.app),
        )

    def secrets(self) -> harness.SandboxSecrets:
        return harness.SandboxSecrets(self.pim_secret, self.pim_password, self.dam_token)

    def credentials(self) -> PimCredentials:
        assert self.pim_server is not None
        return self.secrets().credentials(self.pim_server.url)

    def client(self) -> AkeneoClient:
        assert self.config is not None
        return AkeneoClient(
            self.credentials(), self.config.pim, get_redis(self.redis_url), Keys(self.namespace)
        )

    def env(self) -> dict[str, str]:
        assert self.pim_server is not None
        return harness.connector_env(
            namespace=self.namespace, redis_url=self.redis_url, broker_url=self.broker_url,
            pim_url=self.pim_server.url, secrets=self.secrets(), config_path=self.config_path,
            extra=self.extra_env,
        )

    def start_worker(
        self, concurrency: int | None = None, loglevel: str = "WARNING", app: str = "tasks"
    ) -> subprocess.Popen[bytes]:
        concurrency = concurrency or env_int("E2E_CONCURRENCY", 3)
        name = f"w{len(self.workers)}-{self.namespace}@127.0.0.1"
        argv = harness.worker_argv(name, app=app, queues=QUEUES, concurrency=concurrency,
                                   loglevel=loglevel)
        proc = harness.start_process(argv, self.env(), self.tmp / f"worker{len(self.workers)}.log")
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        harness.stop_processes(self.workers, timeout=15, kill_timeout=5)
        for server in (self.dam_server, self.pim_server):
            if server is not None:
                server.stop()
        if self.services is not None:
            self.services.close()
        harness.delete_namespace(self.namespace, self.redis_url)
        if routing.is_amqp(self.broker_url):
            delete_amqp_namespace(self.broker_url, self.namespace)

    def worker_log(self) -> str:
        return "\n".join(harness.log_tail(self.tmp / f"worker{i}.log")
                         for i in range(len(self.workers)))

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

