"""What the test worlds and the benchmarks share to stand up a sandbox world.

Why here: tests/e2e/world.py, tests/model/support.py, tests/faults/support.py and
bench/common.py each start the sandboxes, build the environment of a connector process,
start real `celery worker` subprocesses on the routing table's queues and stop them; one
copy of that keeps them in step (a queue added to tasks/routing.py, a new sandbox secret,
a worker flag). What is specific to one world (the model test's DAM switch, the benchmark's
CPU accounting, the fault tests' private Redis) stays with it.

Not the product: nothing in connector/ or tasks/ imports this. It imports `tasks.routing`
(plain data: the queue and task names) and never Celery itself, so a sending app is passed
in (`CeleryLike`). Paths (examples/, PYTHONPATH) are those of a source checkout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import yaml

from connector.redis_conn import get_redis
from connector.settings import PimCredentials, Secret
from sandbox.pim import PimSandbox, PimSandboxSettings
from tasks import routing

if TYPE_CHECKING:
    from connector.config.model import Config
    from connector.pim.client import AkeneoClient
    from connector.pipeline.services import Enqueuer, Services

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "demo.yaml"
DEMO_STRUCTURE = ROOT / "examples" / "structure.yaml"
#: the demo config's source (examples/demo.yaml), the one a sandbox world keeps
SOURCE = "sandbox"
#: what the sandboxes accept by default (sandbox/pim.py PimSandboxSettings, sandbox/dam.py)
PIM_CLIENT_ID = "sandbox-client"
PIM_USERNAME = "sandbox"
PIM_SECRET = "sandbox-secret"
PIM_PASSWORD = "sandbox-password"
DAM_TOKEN = "sandbox-dam-token"
#: the stage queues (tasks/routing.py), as `celery worker -Q` takes them
ALL_QUEUES = ",".join(routing.QUEUES)
#: the stage queues and the default one: a test worker consumes everything
QUEUES_AND_DEFAULT = ",".join((*routing.QUEUES, routing.DEFAULT_QUEUE))
#: the `celery` of the running interpreter's environment (the project's .venv)
CELERY = str(Path(sys.executable).parent / "celery")
#: environment variables of the caller that must not leak into a world's processes
FOREIGN_ENV = ("AKENEO_", "CELERY_")


# ---------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (for a subprocess to bind)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Poll with a deadline (never sleep to synchronise); TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def broker_prefix(namespace: str) -> str:
    """The Redis key prefix of a world's broker (its queues, `unacked`, bindings)."""
    return f"{namespace}:celery:"


def transport_options(
    namespace: str, broker_url: str, visibility_timeout: float | None = 7200
) -> dict[str, Any]:
    """Broker transport options of a world: its own key prefix on a Redis broker."""
    options: dict[str, Any] = {}
    if visibility_timeout is not None:
        options["visibility_timeout"] = visibility_timeout
    if broker_url.startswith("redis"):
        options["global_keyprefix"] = broker_prefix(namespace)
    return options


def delete_namespace(
    namespace: str, redis_url: str | None = None, *, keep_prefix: str | None = None
) -> int:
    """Remove every key of a world's namespace (never anything else), except those
    starting with `keep_prefix` (e.g. the broker's, while a worker is bound to them)."""
    if not namespace or ":" in namespace or "*" in namespace:
        raise ValueError(f"refusing to delete namespace {namespace!r}")
    client = get_redis(redis_url)
    deleted = 0
    batch: list[Any] = []

    def flush() -> int:
        count = cast(int, client.delete(*batch)) if batch else 0
        batch.clear()
        return count

    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        if keep_prefix and key.decode(errors="replace").startswith(keep_prefix):
            continue
        batch.append(key)
        if len(batch) >= 500:
            deleted += flush()
    return deleted + flush()


# ---------------------------------------------------------------------- environment


@dataclass(frozen=True)
class SandboxSecrets:
    """The secrets a world's sandboxes accept, and how a connector process is given them."""

    pim_secret: str = PIM_SECRET
    pim_password: str = PIM_PASSWORD
    dam_token: str = DAM_TOKEN

    def credentials(self, pim_url: str) -> PimCredentials:
        return PimCredentials(url=pim_url, client_id=PIM_CLIENT_ID,
                              client_secret=Secret(self.pim_secret), username=PIM_USERNAME,
                              password=Secret(self.pim_password))

    def env(self, pim_url: str) -> dict[str, str]:
        """AKENEO_* and DAM_TOKEN (the ${DAM_TOKEN} of the configs) for `pim_url`."""
        return {
            "AKENEO_URL": pim_url,
            "AKENEO_CLIENT_ID": PIM_CLIENT_ID,
            "AKENEO_CLIENT_SECRET": self.pim_secret,
            "AKENEO_USERNAME": PIM_USERNAME,
            "AKENEO_PASSWORD": self.pim_password,
            "DAM_TOKEN": self.dam_token,
        }


def base_env(foreign: Sequence[str] = FOREIGN_ENV, **extra: str) -> dict[str, str]:
    """This process's environment without the caller's `foreign` prefixes, with the
    checkout on PYTHONPATH (a child imports `tasks`, `sandbox`, `tests` from it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(foreign))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def connector_env(
    *, namespace: str, redis_url: str, broker_url: str, pim_url: str,
    secrets: SandboxSecrets = SandboxSecrets(), config_path: Path | None = None,
    foreign: Sequence[str] = FOREIGN_ENV, extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a connector process (worker, CLI) of one world."""
    env = base_env(foreign)
    env.update({"CONNECTOR_NAMESPACE": namespace, "REDIS_URL": redis_url,
                "CELERY_BROKER_URL": broker_url, **secrets.env(pim_url)})
    if config_path is not None:
        env["CONNECTOR_CONFIG"] = str(config_path)
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------- sandboxes


def local_pim(secrets: SandboxSecrets = SandboxSecrets(), **settings: Any) -> PimSandbox:
    """An in-process sandbox PIM without a concurrency limit (a test's own requests must
    not queue behind each other), accepting `secrets`; `settings`: PimSandboxSettings."""
    return PimSandbox(PimSandboxSettings(**{
        "max_concurrency": 0, "secret": secrets.pim_secret, "password": secrets.pim_password,
        **settings,
    }))


# ---------------------------------------------------------------------- config


def demo_config(dam_url: str, source: str = SOURCE) -> dict[str, Any]:
    """examples/demo.yaml with one source, pointed at the sandbox DAM, no schedules, the
    request rates opened up (the sandboxes are local; the PIM's limit is its concurrency)."""
    data: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())
    rest_source = data["sources"][source]
    rest_source["rest"]["base_url"] = dam_url
    rest_source["rest"]["requests_per_second"] = 1000
    rest_source.pop("schedule", None)
    rest_source.pop("reconcile_schedule", None)
    data["sources"] = {source: rest_source}
    data["pim"]["requests_per_second"] = 1000
    data["sync"]["watermark_overlap"] = 1
    return data


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
    return path


def apply_demo_structure(client: AkeneoClient) -> None:
    """The demo structure (examples/structure.yaml), as `connector structure apply`."""
    from connector.structure import apply_structure, load_structure_file

    report = apply_structure(client, load_structure_file(DEMO_STRUCTURE))
    if not report.ok:
        raise RuntimeError(f"structure apply failed: {report.to_dict()}")


def sender_conf(namespace: str, broker_url: str, **more: Any) -> dict[str, Any]:
    """`app.conf` of a world's own sending app: JSON, the world's broker key prefix."""
    return {"task_serializer": "json", "accept_content": ["json"],
            "broker_transport_options": transport_options(namespace, broker_url),
            **routing.broker_conf(namespace, broker_url), **more}


def world_services(
    config: Config, redis_url: str, namespace: str, *, client: AkeneoClient,
    enqueuer: Enqueuer, source: str = SOURCE,
) -> Services:
    """This process's Services of a world: its namespace, its one source, runs queued
    through `enqueuer` to the world's workers."""
    from connector.dam.factory import build_source
    from connector.pipeline.services import Services
    from connector.redis_conn import Keys

    return Services(config, get_redis(redis_url), Keys(namespace), client=client,
                    sources={source: build_source(config.source(source))}, enqueuer=enqueuer)


# ---------------------------------------------------------------------- processes


def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """`sig` to the child's whole process group (a worker and its pool children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def kill_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGKILL the whole group, no warning, and reap the child."""
    if proc.poll() is None:
        signal_group(proc, signal.SIGKILL)
    proc.wait(timeout=timeout)


def stop_processes(
    procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20.0, kill_timeout: float = 10.0
) -> None:
    """SIGTERM every group at once (a warm shutdown: running tasks finish, unacked
    messages go back), then SIGKILL a group still there `timeout` seconds into its wait."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            signal_group(proc, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process(proc, kill_timeout)


def start_process(
    argv: Sequence[str], env: Mapping[str, str], log_path: Path | None, *, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    """A child in its own session (its group is signalled as one), stdout and stderr
    appended to `log_path` (or discarded)."""
    if log_path is None:
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


@dataclass
class Child:
    """A subprocess of a world (sandbox or worker) in its own session, with its log."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    queues: str = ""
    concurrency: int = 0

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return log_tail(self.log_path, chars)

    def stop(self, timeout: float = 20.0) -> None:
        stop_processes([self.proc], timeout)


# ---------------------------------------------------------------------- workers


def worker_argv(
    hostname: str, *, app: str = "tasks", queues: str = QUEUES_AND_DEFAULT,
    concurrency: int = 2, loglevel: str = "WARNING", extra: Sequence[str] = (),
    celery: str = CELERY,
) -> list[str]:
    """`celery -A app worker` on `queues` (the routing table's names), without the
    gossip/mingle/heartbeat chatter a test world does not need."""
    return [celery, "-A", app, "worker", "-l", loglevel, "-c", str(concurrency),
            "-Q", queues, "-n", hostname, "--without-gossip", "--without-mingle",
            "--without-heartbeat", *extra]


class _Control(Protocol):
    def ping(self, destination: list[str] | None = ..., timeout: float = ...) -> Any: ...


class CeleryLike(Protocol):
    """The two things a world does with its own Celery app (passed in, never built here)."""

    @property
    def control(self) -> _Control: ...

    def send_task(self, name: str, args: Any = ..., kwargs: Any = ..., **options: Any) -> Any: ...


def wait_workers(app: CeleryLike, workers: Iterable[Child], timeout: float = 120.0) -> None:
    """Until every worker answers a ping (its consumer is up, its pool forked); a worker
    that exits meanwhile fails at once with its log."""
    workers = list(workers)
    pending = {w.name for w in workers}

    def ready() -> bool:
        for worker in workers:
            if not worker.alive():
                raise RuntimeError(f"worker {worker.name} exited:\n{worker.log_tail()}")
        for reply in app.control.ping(destination=sorted(pending), timeout=0.5) or []:
            pending.difference_update(reply)
        return not pending

    wait_until(ready, timeout, "the workers to answer a ping", interval=0.2)


class SendTaskEnqueuer:
    """tasks.pipeline.CeleryEnqueuer's messages, sent from a world's own Celery app (a
    test or benchmark process cannot build the `tasks` app: celeryconfig reads the
    environment once; tasks/routing.py names the tasks and queues)."""

    def __init__(self, app: CeleryLike) -> None:
        self.app = app

    def fetch(self, source: str, run_id: str, part: int = 0) -> None:
        kwargs: dict[str, Any] = {"source": source, "run_id": run_id}
        if part:
            kwargs["part"] = part
        self.app.send_task(routing.FETCH_TASK, kwargs=kwargs,
                           queue=routing.queue_of(routing.FETCH_TASK))

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        self.app.send_task(routing.TRANSFORM_TASK, (run_id, chunk_id),
                           queue=routing.transform_queue(media))

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        self.app.send_task(routing.PUSH_TASK, (run_id, batch_id),
                           queue=routing.queue_of(routing.PUSH_TASK),
                           countdown=countdown or None)
