"""HA beat: two real `celery -A tasks beat` processes fire each schedule once, a standby
takes over when the lock holder dies, and a schedule removed from the config leaves Redis.

Firings are counted on the broker: a scheduled sync is one message on the namespace's
`fetch` queue (no worker consumes it here), so the queue's length is the number of firings.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tasks import routing
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 2.0          # the source's schedule: every 2 s
MAX_INTERVAL = 1      # beat's --max-interval; the lock expires after 5 x this
LOCK_TIMEOUT = 5 * MAX_INTERVAL


def _config(tmp_path: Path, sources: tuple[str, ...], name: str = "config.yaml") -> Path:
    body = "".join(
        f"  {s}:\n    type: folder\n    folder: {{path: .}}\n    schedule: {{every: {PERIOD}s}}\n"
        for s in sources
    )
    path = tmp_path / name
    path.write_text(textwrap.dedent(
        """
        families:
          packshots:
            match: {folder: products}
            mapping:
              label: {property: name, type: text}
        sources:
        """
    ) + body)
    return path


class Beats:
    """Real beat processes of one namespace, each with its own log file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, config: Path) -> subprocess.Popen[bytes]:
        env = dict(os.environ, CONNECTOR_CONFIG=str(config), PYTHONPATH=str(ROOT))
        env.pop("CELERY_BROKER_URL", None)
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel=DEBUG",
             "--max-interval", str(MAX_INTERVAL),
             # the default file scheduler would need one file each; redbeat ignores it
             "--schedule", str(self.tmp / f"{name}-schedule")],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def beats(tmp_path: Path, namespace: str) -> Iterator[Beats]:
    b = Beats(tmp_path)
    yield b
    b.stop_all()


class Firings:
    """Arrival times of scheduled-sync messages on the namespace's fetch queue."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.key = f"{namespace}:celery:{routing.FETCH_QUEUE}"
        self.times: list[float] = []

    def poll(self) -> int:
        n = int(self.client.llen(self.key))
        now = time.monotonic()
        self.times.extend(now for _ in range(n - len(self.times)))
        return n

    def wait_count(self, n: int, timeout: float) -> None:
        wait_for(lambda: self.poll() >= n, timeout=timeout, interval=0.02,
                 what=f"{n} scheduled firings")

    def gaps(self, start: int = 0) -> list[float]:
        t = self.times[start:]
        return [b - a for a, b in itertools.pairwise(t)]


def test_two_beats_fire_each_period_once_and_a_standby_takes_over(
    beats: Beats, tmp_path: Path, namespace: str, redis_client: redis.Redis
) -> None:
    config = _config(tmp_path, ("one",))
    beats.start("a", config)
    beats.start("b", config)
    firings = Firings(redis_client, namespace)

    wait_for(lambda: all("beat: Starting" in beats.log(n) for n in ("a", "b")), timeout=60,
             what="both beats started")
    firings.wait_count(1, timeout=30)
    first = len(firings.times)
    firings.wait_count(first + 5, timeout=8 * PERIOD + 10)
    # once per period: five more firings took about five periods, never two at a time
    gaps = firings.gaps(first - 1)
    assert min(gaps) > PERIOD / 2, gaps
    assert firings.times[-1] - firings.times[first - 1] > 4 * PERIOD, firings.times
    # one beat holds the lock, the other waits for it
    holder = [n for n in ("a", "b") if "beat: Acquired lock" in beats.log(n)]
    assert len(holder) == 1, holder
    standby = "b" if holder == ["a"] else "a"
    assert "beat: Acquired lock" not in beats.log(standby)

    # the holder dies without releasing the lock: the standby takes over after it expires
    beats.procs[holder[0]].send_signal(signal.SIGKILL)
    beats.procs[holder[0]].wait(timeout=10)
    killed_at = time.monotonic()
    before = firings.poll()
    wait_for(lambda: "beat: Acquired lock" in beats.log(standby),
             timeout=LOCK_TIMEOUT + 3 * MAX_INTERVAL + 10, what="the standby taking the lock")
    taken_over = time.monotonic() - killed_at
    assert taken_over <= LOCK_TIMEOUT + 3 * MAX_INTERVAL + 5, taken_over
    firings.wait_count(before + 3, timeout=LOCK_TIMEOUT + 4 * PERIOD + 10)
    gaps = firings.gaps(before)
    assert min(gaps) > PERIOD / 2, gaps


def test_a_schedule_removed_from_the_config_leaves_redis(
    beats: Beats, tmp_path: Path, namespace: str, redis_client: redis.Redis
) -> None:
    entry = f"{namespace}:beat:sync:"
    both = _config(tmp_path, ("one", "two"), "both.yaml")
    proc = beats.start("first", both)
    wait_for(lambda: redis_client.exists(entry + "one") and redis_client.exists(entry + "two"),
             timeout=60, what="both entries in Redis")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)

    # a broken config never wipes the fleet's schedule
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: 12\n")
    proc = beats.start("broken", broken)
    wait_for(lambda: "keeping the schedule in Redis" in beats.log("broken"), timeout=60,
             what="the broken-config beat to start")
    assert redis_client.exists(entry + "one") and redis_client.exists(entry + "two")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)

    beats.start("second", _config(tmp_path, ("one",), "one.yaml"))
    wait_for(lambda: not redis_client.exists(entry + "two"), timeout=60,
             what="the removed entry to leave Redis")
    assert redis_client.exists(entry + "one")
    # every key redbeat writes lies inside the deployment's namespace
    assert not list(redis_client.scan_iter(match="redbeat*"))
