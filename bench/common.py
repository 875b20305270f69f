"""Shared benchmark harness: sandboxes as subprocesses, a config, real Celery workers.

A `Harness` owns one benchmark world:

- the sandbox DAM and PIM run as `connector sandbox dam|pim` subprocesses on free ports of
  127.0.0.1, so their CPU is not the connector's (it is still measured, and reported);
- a config written from examples/demo.yaml (one source, no schedules, pointed at the
  sandbox DAM; PIM and DAM request rates opened up like tests/e2e/world.py does);
- the real Redis, under a unique CONNECTOR_NAMESPACE whose keys are deleted on stop;
- real `celery -A tasks worker` processes, started per queue set, whose process trees
  (prefork children included, recycled ones too) are measured with psutil.

Runs are started in this process with `connector.pipeline.start_run` (the messages go out
through a Celery app of our own, like tests/e2e/world.py: this process must not import
`tasks`, whose config is read from the environment once) and followed with `run_report`.

What every sandbox world does (environment, worker command line on the routing table's
queues, child processes in their own session, namespace cleanup) is sandbox/harness.py's,
shared with tests/e2e/world.py and tests/model/support.py; CPU accounting is the bench's.

Every benchmark prints its figures and the exact command that reproduces them, then one
line of JSON (the last line of stdout), which tests/test_bench_smoke.py and run_all read.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402

from connector.config import load_config  # noqa: E402
from connector.config.model import Config  # noqa: E402
from connector.pim.client import AkeneoClient  # noqa: E402
from connector.pipeline.services import Services  # noqa: E402
from connector.redis_conn import Keys, get_redis  # noqa: E402
from connector.settings import PimCredentials  # noqa: E402
from sandbox import harness as shared  # noqa: E402
from sandbox.harness import (  # noqa: E402
    ALL_QUEUES,
    CELERY,
    DAM_TOKEN,
    SOURCE,
    SendTaskEnqueuer,
    delete_namespace,
    free_port,
    wait_until,
)

__all__ = [
    "ALL_QUEUES", "BUDGET_PIM", "CELERY", "DAM_TOKEN", "ROOT", "SOURCE", "TRANSPORT", "Child",
    "Harness", "RunResult", "Sandbox", "SendTaskEnqueuer", "add_transport_args",
    "bulk_asset_requests", "bulk_window", "delete_namespace", "diff_counters", "emit",
    "free_port", "harness", "last_json", "machine", "pim_writes", "start_dam", "start_pim",
    "wait_until", "write_config",
]

PYTHON = sys.executable
#: a connector process of a benchmark gets none of the caller's connector settings
FOREIGN_ENV = (*shared.FOREIGN_ENV, "CONNECTOR_")
#: the PIM budget of the "proof" issue: 4 concurrent requests, 300 ms per bulk request
BUDGET_PIM = {"max_concurrency": 4, "bulk_latency": 0.3}
#: a second Akeneo connection for media uploads (`--media-connection`): the sandbox PIM
#: accepts it, limits it to 4 concurrent calls like the first and the instance to 10
MEDIA_CLIENT, MEDIA_SECRET = "bench-media-client", "bench-media-secret"
MEDIA_PIM = {"extra_clients": {MEDIA_CLIENT: MEDIA_SECRET}, "max_concurrency_instance": 10}


# ---------------------------------------------------------------------- transport

#: every benchmark's sandboxes serve HTTPS with keep-alive unless `--plain-http` was given
TLS_BY_DEFAULT = True
#: connections and TLS handshakes of every run measured in this process (for `emit`)
TRANSPORT: list[dict[str, Any]] = []


class _PlainHttp(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        global TLS_BY_DEFAULT
        TLS_BY_DEFAULT = False
        setattr(namespace, self.dest, True)


def add_transport_args(parser: argparse.ArgumentParser) -> None:
    """`--plain-http`: the sandboxes without TLS (default: HTTPS, keep-alive, a CA made at
    start and trusted through REQUESTS_CA_BUNDLE) — for every Harness of this process."""
    parser.add_argument("--plain-http", action=_PlainHttp, nargs=0, default=False,
                        help="serve the sandboxes over plain HTTP instead of HTTPS")


def transport_lines() -> list[str]:
    """One line per measured run: connections and handshakes per sandbox."""
    return [
        f"transport ({'TLS' if run['tls'] else 'plain HTTP'}, keep-alive) run {i}: "
        + ", ".join(f"{host} {c['connections']} connections/{c['tls_handshakes']} handshakes"
                    for host, c in run["hosts"].items())
        for i, run in enumerate(TRANSPORT, 1)
    ]


# ---------------------------------------------------------------------- small helpers


def command_line() -> str:
    """The command that reproduces this benchmark (printed with its figures)."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return " ".join([".venv/bin/python", shown, *map(shlex.quote, sys.argv[1:])])


def machine() -> dict[str, Any]:
    """Where and when: the figures mean little without the load they were taken under."""
    load = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": psutil.cpu_count(),
        "load_avg_1m": round(load[0], 2),
        "python": platform.python_version(),
    }


def emit(name: str, result: dict[str, Any], lines: Sequence[str]) -> None:
    """Human-readable figures, the reproducing command, then the JSON (last line)."""
    result = {"benchmark": name, "command": command_line(), "machine": machine(), **result}
    result.setdefault("transport", {"tls": TLS_BY_DEFAULT, "runs": list(TRANSPORT)})
    print(f"== {name} ==")
    for line in [*lines, *transport_lines()]:
        print(line)
    print(f"reproduce: {result['command']}")
    print(f"machine: {result['machine']}")
    print(json.dumps(result, sort_keys=True, default=str), flush=True)


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON line a benchmark printed last (for run_all and the smoke test)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
    raise ValueError("no JSON result line in the benchmark's output")


# ---------------------------------------------------------------------- processes


class ProcessTree:
    """CPU and memory of a process and all its descendants, measured with psutil.

    CPU = user+sys of the live processes + what the root has reaped from dead children
    (prefork children recycled by max_tasks_per_child), so the difference between two
    samples is the tree's CPU in between, whatever children came and went.
    """

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                total += times.user + times.system
                if proc.pid == self.root.pid:
                    total += times.children_user + times.children_system
        return total

    def rss(self) -> dict[int, int]:
        """RSS in bytes per live process of the tree."""
        out: dict[int, int] = {}
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                out[proc.pid] = proc.memory_info().rss
        return out


class Child(shared.Child):
    """A subprocess of the harness (sandbox or worker) in its own session, measured."""

    @property
    def tree(self) -> ProcessTree:
        return ProcessTree(self.proc.pid)


# ---------------------------------------------------------------------- sandboxes


class Sandbox(Child):
    """A `connector sandbox pim|dam` subprocess and its admin endpoints.

    Admin calls share one kept-alive session, so reading the counters adds no connection
    (or TLS handshake) of its own to what a run is measured with."""

    @property
    def _admin_session(self) -> requests.Session:
        session: requests.Session | None = self.__dict__.get("_session")
        if session is None:
            session = requests.Session()
            session.verify = _trust()
            session.trust_env = False
            self.__dict__["_session"] = session
        return session

    def admin(self, path: str) -> Any:
        response = self._admin_session.get(f"{self.url}/_sandbox/{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def counters(self) -> dict[str, Any]:
        data: dict[str, Any] = self.admin("counters")
        return data

    def transport(self) -> dict[str, int]:
        """Connections accepted and TLS handshakes completed so far (sandbox counters)."""
        counters = self.counters()
        return {key: int(counters.get(key) or 0) for key in ("connections", "tls_handshakes")}

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._admin_session.post(f"{self.url}/_sandbox/{path}", json=body or {},
                                            timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self, timeout: float = 20.0) -> None:
        session = self.__dict__.pop("_session", None)
        if session is not None:
            session.close()
        super().stop(timeout)


def _wait_http(child: Sandbox, timeout: float = 60.0) -> None:
    def up() -> bool:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited:\n{child.log_tail()}")
        try:
            requests.get(f"{child.url}/_sandbox/counters", timeout=1, verify=_trust())
            return True
        except requests.RequestException:
            return False

    wait_until(up, timeout, f"{child.name} at {child.url}")


def _trust() -> str | bool:
    """What this process verifies a sandbox's certificate with (the CA of `--tls`)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or True


def _tls_argv(ca_dir: Path | None) -> list[str]:
    """`--tls --ca-dir D`: HTTPS with a certificate of the CA kept in D (one CA for both)."""
    return ["--tls", "--ca-dir", str(ca_dir)] if ca_dir is not None else []


def start_pim(log_dir: Path, env: dict[str, str], *, wait: bool = True,
              ca_dir: Path | None = None, **settings: Any) -> Sandbox:
    """`connector sandbox pim --port <free> --set k=v …` (PimSandboxSettings fields);
    over HTTPS with `ca_dir` (see `_tls_argv`)."""
    port = free_port()
    argv = [PYTHON, "-m", "connector.cli", "sandbox", "pim", "--port", str(port),
            *_tls_argv(ca_dir)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    log = log_dir / "sandbox-pim.log"
    proc = shared.start_process(argv, env, log)
    scheme = "https" if ca_dir is not None else "http"
    child = Sandbox("sandbox-pim", proc, log, url=f"{scheme}://127.0.0.1:{port}")
    if wait:
        _wait_http(child)
    return child


def start_dam(log_dir: Path, env: dict[str, str], assets: int, seed: int = 7, *,
              wait: bool = True, ca_dir: Path | None = None) -> Sandbox:
    """`connector sandbox dam --port <free> --assets N --seed S` (bad records included);
    over HTTPS with `ca_dir` (see `_tls_argv`)."""
    port = free_port()
    argv = [PYTHON, "-m", "connector.cli", "sandbox", "dam", "--port", str(port),
            "--assets", str(assets), "--seed", str(seed), *_tls_argv(ca_dir)]
    log = log_dir / "sandbox-dam.log"
    proc = shared.start_process(argv, env, log)
    scheme = "https" if ca_dir is not None else "http"
    child = Sandbox("sandbox-dam", proc, log, url=f"{scheme}://127.0.0.1:{port}")
    if wait:
        _wait_http(child)
    return child


# ---------------------------------------------------------------------- config


def write_config(
    path: Path, dam_url: str, *, pim: dict[str, Any] | None = None,
    sync: dict[str, Any] | None = None,
) -> Path:
    """examples/demo.yaml with one source pointed at the sandbox DAM and no schedules.

    Like tests/e2e/world.py, the request rates are opened up (the sandboxes are local and
    the PIM's real limit here is its concurrency); `pim`/`sync` override config keys.
    """
    data = shared.demo_config(dam_url)
    data["pim"].update(pim or {})
    data["sync"].update({"backoff_base": 0.5, "backoff_max": 10})
    data["sync"].update(sync or {})
    return shared.write_yaml(path, data)


# ---------------------------------------------------------------------- the harness


class MachineCpu:
    """CPU of everything on the machine between `start` and `stop`: the busy share of all
    cores (/proc/stat), Redis's own CPU (INFO cpu) and this process's. Why: a figure that
    misses its target must say whether the machine had CPU left; the worker and sandbox
    process trees alone do not show Redis, the benchmark or the kernel."""

    def __init__(self, redis_url: str) -> None:
        self.redis = get_redis(redis_url)
        self._start: tuple[list[int], float, float, float] | None = None

    @staticmethod
    def _jiffies() -> list[int]:
        try:
            with open("/proc/stat") as stat:
                return [int(v) for v in stat.readline().split()[1:9]]
        except OSError:  # not Linux: no machine-wide figure
            return []

    def _redis_cpu(self) -> float:
        try:
            info = self.redis.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
        except Exception:  # a managed Redis may refuse INFO
            return float("nan")

    def start(self) -> None:
        self._start = (self._jiffies(), self._redis_cpu(), time.process_time(),
                       time.monotonic())

    def stop(self) -> dict[str, float]:
        assert self._start is not None
        jiffies0, redis0, own0, wall0 = self._start
        jiffies1 = self._jiffies()
        out = {"wall_s": round(time.monotonic() - wall0, 2),
               "cores": os.cpu_count() or 1,
               "redis_cpu_s": round(self._redis_cpu() - redis0, 2),
               "benchmark_cpu_s": round(time.process_time() - own0, 2)}
        if jiffies0 and jiffies1:
            deltas = [b - a for a, b in zip(jiffies0, jiffies1, strict=True)]
            total = sum(deltas) or 1
            idle = deltas[3] + deltas[4]  # idle + iowait
            out["busy_share"] = round(1 - idle / total, 3)
            out["busy_cpu_s"] = round((1 - idle / total) * out["wall_s"] * out["cores"], 2)
        return out


@dataclass
class RunResult:
    """A finished run: its report, wall time seen from here, CPU of the workers."""

    report: dict[str, Any]
    wall: float
    worker_cpu: float
    sandbox_cpu: dict[str, float]
    rss_peak: dict[str, int] = field(default_factory=dict)
    #: seconds after start_run when every chunk was transformed (None: not observed)
    transformed_at: float | None = None
    #: connections and TLS handshakes each sandbox accepted during the run
    transport: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the whole machine during the run (`MachineCpu`): every core's busy share, this
    #: benchmark's own process, Redis's server CPU — what the process trees leave out
    machine: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = self.report.get("counts") or {}
        return counts

    @property
    def duration(self) -> float:
        """Run start (record) to finished state (record), as the pipeline saw it."""
        value = self.report.get("duration") or self.counts.get("duration")
        return float(value) if value is not None else self.wall


class Harness:
    """One benchmark world; use as a context manager (everything is stopped on exit)."""

    def __init__(
        self, assets: int, *, pim_settings: dict[str, Any] | None = None,
        pim: dict[str, Any] | None = None, sync: dict[str, Any] | None = None,
        label: str = "bench", tls: bool | None = None, media_connection: bool = False,
    ) -> None:
        self.assets = assets
        #: workers upload media through a second connection (AKENEO_MEDIA_*, MEDIA_PIM)
        self.media_connection = media_connection
        if media_connection:
            pim_settings = {**(pim_settings or {}), **MEDIA_PIM}
        self.tls = TLS_BY_DEFAULT if tls is None else tls
        self.pim_settings = {"seed": 3, **(pim_settings or {})}
        self.pim_config = pim or {}
        self.sync_config = sync or {}
        self.namespace = f"{label}-{uuid.uuid4().hex[:10]}"
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{label}-")
        self.tmp = Path(self._tmp.name)
        self.redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
        self.broker_url = os.environ.get("BENCH_BROKER_URL") or self.redis_url
        self.dam: Sandbox | None = None
        self.pim: Sandbox | None = None
        self.workers: list[Child] = []
        self.config_path = self.tmp / "config.yaml"
        self.config: Config | None = None
        self.services: Services | None = None
        self.app: Celery | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Harness:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ca_dir(self) -> Path | None:
        """With tls: where the sandboxes' CA is kept (ca.pem is REQUESTS_CA_BUNDLE)."""
        return self.tmp / "ca" if self.tls else None

    def base_env(self) -> dict[str, str]:
        env = shared.base_env(FOREIGN_ENV, PYTHONUNBUFFERED="1", REDIS_URL=self.redis_url)
        if self.ca_dir is not None:
            env["REQUESTS_CA_BUNDLE"] = str(self.ca_dir / "ca.pem")
        return env

    def env(self) -> dict[str, str]:
        """What a worker (or any connector process) of this world needs."""
        assert self.pim is not None and self.pim.url is not None
        return shared.connector_env(
            namespace=self.namespace, redis_url=self.redis_url, broker_url=self.broker_url,
            pim_url=self.pim.url, config_path=self.config_path, foreign=FOREIGN_ENV,
            extra={"PYTHONUNBUFFERED": "1",
                   **({"REQUESTS_CA_BUNDLE": str(self.ca_dir / "ca.pem")} if self.ca_dir else {}),
                   **(self.media_env() if self.media_connection else {})},
        )

    def media_env(self) -> dict[str, str]:
        """AKENEO_MEDIA_*: the sandbox's second connection (same user as the first)."""
        credentials = self.credentials()
        return {"AKENEO_MEDIA_CLIENT_ID": MEDIA_CLIENT, "AKENEO_MEDIA_CLIENT_SECRET": MEDIA_SECRET,
                "AKENEO_MEDIA_USERNAME": credentials.username,
                "AKENEO_MEDIA_PASSWORD": credentials.password.reveal()}

    def start(self) -> Harness:
        env = self.base_env()
        if self.ca_dir is not None:  # one CA for both sandboxes, made before either starts
            from sandbox.server import SandboxCA

            SandboxCA(self.ca_dir)
            # this process's own clients (structure, start_run, admin) trust it too
            os.environ["REQUESTS_CA_BUNDLE"] = env["REQUESTS_CA_BUNDLE"]
        self.pim = start_pim(self.tmp, env, wait=False, ca_dir=self.ca_dir,
                             **self.pim_settings)
        self.dam = start_dam(self.tmp, env, self.assets, wait=False, ca_dir=self.ca_dir)
        _wait_http(self.pim)
        _wait_http(self.dam)
        assert self.dam.url is not None
        write_config(self.config_path, self.dam.url, pim=self.pim_config, sync=self.sync_config)
        self.config = load_config(self.config_path, env=self.env())
        self.apply_structure()
        self.app = Celery("bench", broker=self.broker_url)
        self.app.conf.update(shared.sender_conf(self.namespace, self.broker_url,
                                                 broker_connection_retry_on_startup=True))
        self.services = shared.world_services(
            self.config, self.redis_url, self.namespace, client=self.client(),
            enqueuer=SendTaskEnqueuer(self.app),
        )
        return self

    def apply_structure(self) -> None:
        """The demo structure (examples/structure.yaml), as `connector structure apply`."""
        # setup, not measured: the fleet's 3 option writes/s would only slow the start
        client = self.client(option_writes_per_second=1000.0)
        try:
            shared.apply_demo_structure(client)
        finally:
            client.close()

    def credentials(self) -> PimCredentials:
        assert self.pim is not None and self.pim.url is not None
        return shared.SandboxSecrets().credentials(self.pim.url)

    def client(self, namespace: str | None = None, **pim: Any) -> AkeneoClient:
        """A PIM client of this world (`pim` overrides PimConfig fields)."""
        assert self.config is not None
        config = dataclasses.replace(self.config.pim, **pim) if pim else self.config.pim
        return AkeneoClient(self.credentials(), config, get_redis(self.redis_url),
                            Keys(namespace or self.namespace))

    def start_worker(
        self, queues: str = ALL_QUEUES, concurrency: int = 2, *, name: str | None = None,
        extra: Sequence[str] = (),
    ) -> Child:
        """`celery -A tasks worker -Q queues -c concurrency` (prefork), not yet waited for."""
        index = len(self.workers)
        hostname = f"{name or 'w'}{index}-{self.namespace}@127.0.0.1"
        argv = shared.worker_argv(hostname, queues=queues, concurrency=concurrency,
                                   extra=extra)
        log = self.tmp / f"worker{index}.log"
        proc = shared.start_process(argv, self.env(), log)
        child = Child(hostname, proc, log, queues=queues, concurrency=concurrency)
        self.workers.append(child)
        return child

    def wait_workers(self, timeout: float = 120.0) -> None:
        """Until every worker answers a ping (its consumer is up, its pool forked)."""
        assert self.app is not None
        shared.wait_workers(self.app, self.workers, timeout)

    def stop_workers(self) -> None:
        shared.stop_processes([w.proc for w in self.workers], timeout=20)
        self.workers = []

    def stop(self) -> None:
        self.stop_workers()
        for sandbox in (self.dam, self.pim):
            if sandbox is not None:
                sandbox.stop()
        if self.services is not None:
            with contextlib.suppress(Exception):
                self.services.close()
        with contextlib.suppress(Exception):
            delete_namespace(self.namespace, self.redis_url)
        self._tmp.cleanup()

    # ------------------------------------------------------------------ measuring

    def transport(self) -> dict[str, dict[str, int]]:
        """Connections and TLS handshakes each sandbox accepted so far."""
        return {name: sandbox.transport()
                for name, sandbox in (("pim", self.pim), ("dam", self.dam)) if sandbox}

    def worker_cpu(self) -> float:
        return sum(w.tree.cpu_seconds() for w in self.workers)

    def sandbox_cpu(self) -> dict[str, float]:
        return {s.name: round(s.tree.cpu_seconds(), 2)
                for s in (self.dam, self.pim) if s is not None}

    def worker_rss(self) -> dict[str, int]:
        """Summed RSS per worker process tree."""
        return {w.name: sum(w.tree.rss().values()) for w in self.workers}

    def _sample_rss(self, peak: dict[str, int]) -> None:
        """Peak summed RSS per worker tree (`name`) and of its largest process (`name:max`)."""
        for worker in self.workers:
            sizes = worker.tree.rss()
            if not sizes:
                continue
            peak[worker.name] = max(peak.get(worker.name, 0), sum(sizes.values()))
            key = f"{worker.name}:max"
            peak[key] = max(peak.get(key, 0), max(sizes.values()))

    def run(
        self, timeout: float = 3600.0, poll: float = 0.05, sample_rss: bool = False,
        on_transformed: Callable[[], None] | None = None, **kw: Any,
    ) -> RunResult:
        """start_run → poll run_report until succeeded/failed; CPU measured around it.

        `on_transformed` is called once, when every chunk has been transformed (e.g. to
        start the push workers only then, and so time the push stage alone); workers
        started from it count their start-up CPU too.
        """
        from connector.pipeline import run_report, start_run

        assert self.services is not None
        transport0 = self.transport()
        machine = MachineCpu(self.redis_url)
        machine.start()
        cpu0 = self.worker_cpu()
        sandbox0 = self.sandbox_cpu()
        peak: dict[str, int] = {}
        t0 = time.monotonic()
        started = start_run(SOURCE, "bench", services=self.services, **kw)
        if not started.started or started.run_id is None:
            raise RuntimeError(started.message)
        run_id = started.run_id
        deadline = t0 + timeout
        last_rss = 0.0
        transformed_at: float | None = None
        while True:
            report = run_report(run_id, services=self.services)
            if report["state"] in ("succeeded", "failed"):
                break
            now = time.monotonic()
            progress = report.get("counts") or {}
            if transformed_at is None and report.get("finished_at") is None and (
                progress.get("chunks_total") and
                progress.get("chunks_done") == progress.get("chunks_total")
                and progress.get("seen", 0) >= self.assets * 0.99
            ):
                transformed_at = now - t0
                if on_transformed is not None:
                    on_transformed()
            if sample_rss and now - last_rss > 1.0:
                last_rss = now
                self._sample_rss(peak)
            for worker in self.workers:
                if not worker.alive():
                    raise RuntimeError(f"worker {worker.name} died:\n{worker.log_tail()}")
            if now > deadline:
                raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f}s: {report}")
            time.sleep(poll)
        wall = time.monotonic() - t0
        machine_cpu = machine.stop()
        cpu = self.worker_cpu() - cpu0
        sandbox1 = self.sandbox_cpu()
        transport1 = self.transport()
        transport = {host: {k: v - transport0[host][k] for k, v in counts.items()}
                     for host, counts in transport1.items()}
        TRANSPORT.append({"tls": self.tls, "hosts": transport})
        return RunResult(
            report=dict(report), wall=wall, worker_cpu=cpu,
            sandbox_cpu={k: round(sandbox1[k] - sandbox0.get(k, 0.0), 2) for k in sandbox1},
            rss_peak=peak, transformed_at=transformed_at, transport=transport,
            machine=machine_cpu,
        )


# ---------------------------------------------------------------------- PIM counters


def pim_writes(counters: dict[str, Any]) -> int:
    """Write requests the PIM received (asset/option/media/product/structure writes)."""
    total = 0
    for key, count in (counters.get("requests") or {}).items():
        method = key.split(" ", 1)[0]
        if method in ("PATCH", "POST", "PUT", "DELETE") and "/oauth/" not in key:
            total += int(count)
    return total


def bulk_asset_requests(counters: dict[str, Any]) -> int:
    return int(counters.get("bulk_asset_requests") or 0)


def machine_line(machine: dict[str, float]) -> str:
    """`MachineCpu`'s figures for people: was the machine out of CPU during the run?"""
    if not machine:
        return "machine: not measured"
    busy = (f"all {machine['cores']} cores {machine['busy_share']:.0%} busy "
            f"({machine['busy_cpu_s']} CPU-s in {machine['wall_s']} s)"
            if "busy_share" in machine else "busy share unknown (no /proc/stat)")
    return (f"machine during the run: {busy}; Redis {machine['redis_cpu_s']} CPU-s, "
            f"this benchmark's process {machine['benchmark_cpu_s']} CPU-s")


def diff_counters(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """after - before for numbers and for flat dicts of numbers (sandbox counters)."""
    out: dict[str, Any] = {}
    for key, value in after.items():
        old = before.get(key)
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int | float):
            out[key] = value - (old if isinstance(old, int | float) else 0)
        elif isinstance(value, dict):
            old_dict = old if isinstance(old, dict) else {}
            out[key] = {
                k: v - old_dict.get(k, 0) for k, v in value.items()
                if isinstance(v, int | float) and v - old_dict.get(k, 0)
            }
        else:
            out[key] = value
    return out


def bulk_window(pim: Sandbox, since: float, bulk_latency: float) -> dict[str, float]:
    """First to last bulk asset PATCH seen in the PIM's request log after `since`
    (start times; the last one is counted as ending `bulk_latency` later)."""
    log = [r for r in pim.admin("log") if r.get("t", 0) >= since
           and r.get("method") == "PATCH" and str(r.get("template", "")).endswith("/assets")
           and r.get("status") == 200]
    if not log:
        return {"requests": 0, "assets": 0, "seconds": 0.0, "slot_utilisation": 0.0}
    first = min(r["t"] for r in log)
    last = max(r["t"] for r in log)
    items = sum(int(r.get("items") or 0) for r in log)
    seconds = last - first + bulk_latency
    slots = int(pim.admin("settings").get("max_concurrency") or 4)
    busy = len(log) * bulk_latency / (slots * seconds) if seconds and bulk_latency else 0.0
    return {"requests": len(log), "assets": items, "seconds": round(seconds, 3),
            "slot_utilisation": round(busy, 3)}


@contextlib.contextmanager
def harness(assets: int, **kw: Any) -> Iterator[Harness]:
    with Harness(assets, **kw) as world:
        yield world
