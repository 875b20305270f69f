"""Helpers of the fault and security tests: sizes, a private redis-server, killing workers,
waiting for a run while things break underneath.

Sizes: CONNECTOR_TEST_SIZE=full gives the sizes of the "proof" issue (by hand);
anything else (unset, or `ci` as .ci/run sets it) the reduced sizes that keep
tests/faults + tests/security within a few minutes on two cores.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis

from sandbox import harness
from sandbox.harness import free_port
from tests.e2e.expected import pim_assets
from tests.helpers import wait_for

__all__ = [
    "SIZE", "PrivateRedis", "broker_unacked", "free_port", "ideal_bulk_writes",
    "kill_pool_children", "kill_worker", "scan_for", "sized", "stop_worker", "wait_run_end",
]

T = TypeVar("T")

SIZE = os.environ.get("CONNECTOR_TEST_SIZE", "ci").strip().lower() or "ci"


def sized(full: T, ci: T) -> T:
    """`full` when CONNECTOR_TEST_SIZE=full, else the reduced `ci` value."""
    return full if SIZE == "full" else ci


# ---------------------------------------------------------------- a private Redis


class PrivateRedis:
    """A redis-server of the test's own (append-only, fsync always) in `directory`.

    `shutdown()` + `start()` is a Redis restart that keeps the data (the AOF in the same
    directory), on the same port, so every client reconnects to it.
    """

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def start(self, timeout: float = 20.0) -> PrivateRedis:
        self.proc = harness.start_process(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            os.environ, None,
        )

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=timeout, interval=0.05, what="private redis-server")
        return self

    def shutdown(self) -> None:
        """SHUTDOWN (the AOF is complete: fsync always), then wait for the exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            harness.kill_process(self.proc, timeout=5)

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# ---------------------------------------------------------------- workers


def kill_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole worker: the main process and its pool children, no warning."""
    harness.kill_process(proc, timeout=20)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM: a warm shutdown (running tasks finish, its own unacked messages go back)."""
    harness.stop_processes([proc], timeout=30, kill_timeout=20)


def kill_pool_children(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the worker's pool processes (the main process survives and replaces them)."""
    children = psutil.Process(proc.pid).children(recursive=False)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    return len(children)


def broker_unacked(redis_client: redis.Redis, namespace: str) -> int:
    """Messages the Redis transport has delivered and not seen acked (the worker's share)."""
    count: Any = redis_client.hlen(f"{harness.broker_prefix(namespace)}unacked")
    return int(count)


# ---------------------------------------------------------------- runs


def wait_run_end(
    report_of: Callable[[], dict[str, Any]], timeout: float, what: str = "the run"
) -> dict[str, Any]:
    """Poll the run's report until it is terminal; Redis errors (a restart under way)
    count as "not yet"."""
    last: dict[str, Any] = {}

    def done() -> Any:
        try:
            report = report_of()
        except redis.RedisError:
            return None
        last.clear()
        last.update(report)
        return report if report["state"] in ("succeeded", "failed", "abandoned") else None

    try:
        return wait_for(done, timeout=timeout, interval=0.2, what=what)
    except AssertionError:
        raise AssertionError(f"{what} did not end within {timeout}s: {last}") from None


def ideal_bulk_writes(pim: Any) -> int:
    """Bulk upserts a clean run needs for what the PIM now holds: ⌈n/100⌉ per family."""
    per_family: dict[str, int] = {}
    for family, _values in pim_assets(pim).values():
        per_family[family] = per_family.get(family, 0) + 1
    return sum(math.ceil(n / 100) for n in per_family.values())


def scan_for(texts: Iterable[tuple[str, str]], secrets: dict[str, str]) -> list[str]:
    """(where, text) pairs → "secret NAME in WHERE" for every secret value found."""
    found = []
    for where, text in texts:
        for name, value in secrets.items():
            if value and value in text:
                found.append(f"secret {name} in {where}")
    return found
