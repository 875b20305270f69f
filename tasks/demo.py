"""`connector demo`: the whole product on one machine, on built-in sandbox defaults.

Why in tasks/ and not connector.cli: the demo starts Celery workers and names the queues
they consume, and queue names belong to the composition root (tasks.routing).

Starts the sandbox PIM and DAM, applies the demo structure, drops a few files in a hot
folder, starts a Celery worker, beat and Flower (basic auth), runs a first sync of every
source, prints the reports and the Flower URL, then keeps everything running until Ctrl-C,
SIGTERM or SIGHUP (or stops at once with `--once`). However it is stopped, every child
(sandboxes, workers, beat, Flower) is stopped with it; after SIGTERM or SIGHUP the demo
exits with 128 + the signal's number (143, 129).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from connector.cli.common import EXIT_OK, EXIT_PROBLEMS, fail
from tasks import routing

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_DAM_TOKEN = "sandbox-dam-token"  # the sandbox DAM's built-in demo token


def _free_port(preferred: int) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


#: signals that stop the demo like Ctrl-C does: a process manager's stop, a closed terminal
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Signalled(BaseException):
    """A stop signal, raised into the demo's main flow so that it takes the one stop path
    (every child stopped). A BaseException, like KeyboardInterrupt: no `except Exception`
    on the way may swallow it. The demo then exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signal(signum: int, frame: Any) -> None:
    for sig in STOP_SIGNALS:  # once stopping, a second signal must not cut the stop short
        signal.signal(sig, signal.SIG_IGN)
    raise Signalled(signum)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold stop signals (and Ctrl-C) while a child is started and recorded: one that came
    in between would leave an unrecorded child running. Raised when the block is done."""
    held = [sig for sig in (*STOP_SIGNALS, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN]  # ignored stays ignored
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda n, _f: pending.append(n)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            if pending[0] == signal.SIGINT:
                raise KeyboardInterrupt
            raise Signalled(pending[0])


def _wait_http(url: str, timeout: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise click.ClickException(f"{url} did not answer within {timeout:.0f}s") from None
            time.sleep(0.2)


class Processes:
    """Children started by the demo; all stopped (TERM, then KILL) on exit.

    Each child leads a process group of its own (its children, e.g. Celery's pool, are in
    it), so stopping a child's group stops everything it started. `pids_file` lists them
    ("name pid" lines) while they run, for people and tests; it is removed once stopped.
    """

    def __init__(self, log_dir: Path, env: dict[str, str], pids_file: Path) -> None:
        self.log_dir = log_dir
        self.env = env
        self.pids_file = pids_file
        self.children: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with _signals_held():
            log = (self.log_dir / f"{name}.log").open("ab")
            proc = subprocess.Popen(
                argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
            self.children.append((name, proc, log))
            self.pids_file.write_text("".join(f"{n} {p.pid}\n" for n, p, _ in self.children))
        return proc

    def check_alive(self) -> None:
        for name, proc, _ in self.children:
            if proc.poll() is not None:
                raise click.ClickException(
                    f"{name} exited with code {proc.returncode}; see {self.log_dir / name}.log"
                )

    def stop(self) -> None:
        # a second signal (an impatient process manager, Ctrl-C twice) must not cut the
        # stopping short and leave children behind
        for sig in (*STOP_SIGNALS, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        for _, proc, _ in reversed(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc, log in self.children:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        self.pids_file.unlink(missing_ok=True)


def _hot_folder_files(folder: Path) -> None:
    """A few localized user guides, as someone would drop them into a shared folder."""
    target = folder / "products" / "user-guides"
    target.mkdir(parents=True, exist_ok=True)
    for sku in ("hiking_boot", "trail_jacket"):
        for locale in ("en_US", "fr_FR"):
            path = target / f"{sku}_user_guide_{locale}.pdf"
            if not path.exists():
                path.write_bytes(b"%PDF-1.4\n% demo user guide " + f"{sku} {locale}\n".encode())


@contextlib.contextmanager
def _environment(
    work: Path, dam_port: int, pim_port: int, flower_port: int
) -> Iterator[dict[str, str]]:
    env = dict(os.environ)
    env.update(
        {
            "AKENEO_URL": f"http://127.0.0.1:{pim_port}",
            "AKENEO_CLIENT_ID": "sandbox-client",
            "AKENEO_CLIENT_SECRET": "sandbox-secret",
            "AKENEO_USERNAME": "sandbox",
            "AKENEO_PASSWORD": "sandbox-password",
            "DAM_URL": f"http://127.0.0.1:{dam_port}",
            "DAM_TOKEN": SANDBOX_DAM_TOKEN,
            "HOT_FOLDER": str(work / "hotfolder"),
            "CONNECTOR_CONFIG": str(ROOT / "examples" / "demo.yaml"),
            "CONNECTOR_NAMESPACE": env.get("CONNECTOR_NAMESPACE") or "demo",
            "FLOWER_PORT": str(flower_port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("FLOWER_BASIC_AUTH", f"demo:{secrets.token_urlsafe(12)}")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _clear_namespace(namespace: str) -> None:
    """A demo starts from nothing: its sandboxes are new, so its Redis state must be too."""
    from connector.redis_conn import get_redis

    r = get_redis()
    batch: list[Any] = []
    for key in r.scan_iter(match=f"{namespace}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            r.delete(*batch)
            batch = []
    if batch:
        r.delete(*batch)


@click.command()
@click.option("--assets", default=300, show_default=True, help="Assets in the sandbox DAM.")
@click.option("--once", is_flag=True, help="Stop everything after the first sync's report.")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Logs and hot folder (default: var/demo).",
)
def demo(assets: int, once: bool, workdir: str | None) -> None:
    """Run the connector end to end on the built-in sandbox DAM and PIM."""
    from connector.cli.reports import print_report, wait_for_runs

    work = Path(workdir or ROOT / "var" / "demo").resolve()
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True, exist_ok=True)
    _hot_folder_files(work / "hotfolder")
    dam_port, pim_port, flower_port = _free_port(8081), _free_port(8082), _free_port(5555)
    py = sys.executable
    connector = [py, "-m", "connector.cli"]
    code = EXIT_OK
    user_set_auth = bool(os.environ.get("FLOWER_BASIC_AUTH"))
    for sig in STOP_SIGNALS:  # stopped like Ctrl-C, whoever stops it
        if signal.getsignal(sig) is not signal.SIG_IGN:  # under nohup, SIGHUP stays ignored
            signal.signal(sig, _raise_signal)
    with _environment(work, dam_port, pim_port, flower_port) as env:
        procs = Processes(logs, env, work / "pids")
        try:
            _clear_namespace(env["CONNECTOR_NAMESPACE"])
            click.echo(f"logs in {logs}")
            procs.start("sandbox-pim", [*connector, "sandbox", "pim", "--port", str(pim_port)])
            procs.start(
                "sandbox-dam",
                [*connector, "sandbox", "dam", "--port", str(dam_port), "--assets", str(assets)],
            )
            _wait_http(f"http://127.0.0.1:{pim_port}/_sandbox/counters")
            _wait_http(f"http://127.0.0.1:{dam_port}/_sandbox/counters")
            click.echo(f"sandbox PIM  http://127.0.0.1:{pim_port}")
            click.echo(f"sandbox DAM  http://127.0.0.1:{dam_port} ({assets} assets)")

            subprocess.run(
                [*connector, "structure", "apply", str(ROOT / "examples" / "structure.yaml")],
                env=env,
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            click.echo("demo structure applied (examples/structure.yaml)")

            celery = [py, "-m", "celery", "-A", "tasks"]
            for name, queues, concurrency in (
                ("worker", ",".join(routing.WORKER_QUEUES), "2"),
                ("push", routing.PUSH_QUEUE, "4"),  # 4 push slots fill the PIM's fleet-wide budget
            ):
                procs.start(
                    name,
                    [
                        *celery,
                        "worker",
                        "-Q",
                        queues,
                        "-c",
                        concurrency,
                        "--loglevel=INFO",
                        "-n",
                        f"demo-{name}-{os.getpid()}@%h",
                    ],
                )
            procs.start(
                "beat",
                # the schedule and beat's lock live in Redis (tasks/beat.py): no file
                [*celery, "beat", "--loglevel=INFO"],
            )
            procs.start("flower", [*connector, "flower", "--port", str(flower_port)])

            from connector.pipeline import get_services, run_report, start_run

            services = get_services()
            run_ids = []
            for source in services.config.sources:
                result = start_run(source.name, "manual", services=services)
                if result.run_id and result.started:
                    run_ids.append(result.run_id)
                else:
                    click.echo(f"{source.name}: {result.message}")
            click.echo(f"first sync of {len(run_ids)} source(s) enqueued; waiting for the worker…")
            reports = wait_for_runs(
                run_ids,
                lambda run_id: run_report(run_id, services=services),
                timeout=1800,
                show_progress=True,
            )
            procs.check_alive()
            for report in reports.values():
                print_report(report)
            if any(r["state"] != "succeeded" for r in reports.values()):
                code = EXIT_PROBLEMS
            env_file = work / "env.sh"
            exported = (
                "AKENEO_URL",
                "AKENEO_CLIENT_ID",
                "AKENEO_CLIENT_SECRET",
                "AKENEO_USERNAME",
                "AKENEO_PASSWORD",
                "DAM_URL",
                "DAM_TOKEN",
                "HOT_FOLDER",
                "CONNECTOR_CONFIG",
                "CONNECTOR_NAMESPACE",
                "REDIS_URL",
            )
            env_file.write_text("".join(f"export {k}='{env[k]}'\n" for k in exported if env.get(k)))
            click.echo("")
            if user_set_auth:
                auth_hint = "credentials from your FLOWER_BASIC_AUTH"
            else:
                auth_hint = f"login {env['FLOWER_BASIC_AUTH']}"
            click.echo(f"Flower       http://127.0.0.1:{flower_port}  ({auth_hint})")
            click.echo(f"From another shell: source {env_file} && connector status")
            if not once:
                click.echo("Everything keeps running (beat syncs every few minutes); Ctrl-C stops.")
                while True:
                    procs.check_alive()
                    time.sleep(1)
        except KeyboardInterrupt:
            click.echo("\nstopping…")
        except Signalled as stop:
            code = 128 + stop.signum  # the shell's convention: 143 for SIGTERM, 129 for SIGHUP
            with contextlib.suppress(OSError):  # a closed terminal may not take it
                click.echo(f"\nstopping ({signal.Signals(stop.signum).name})…")
        except (click.ClickException, subprocess.CalledProcessError) as exc:
            procs.stop()
            fail(str(exc))
        finally:
            procs.stop()
    sys.exit(code)
