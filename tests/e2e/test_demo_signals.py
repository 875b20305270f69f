"""`connector demo` stops every child however it is stopped: SIGTERM (a process manager)
and SIGHUP (a closed terminal) as well as Ctrl-C. Nothing may be left orphaned holding
the sandbox or Flower ports.

The demo writes its children's pids to `<workdir>/pids` (each child leads its own process
group, so a group that is gone means the child and its own children are gone).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from connector.redis_conn import get_redis
from tests.e2e.world import ROOT
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(420)  # about 20 s here: not `slow`

CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
URL = re.compile(r"^(sandbox PIM|sandbox DAM|Flower) +http://127\.0\.0\.1:(\d+)", re.MULTILINE)


@dataclass
class Demo:
    """A `connector demo` subprocess and what it printed so far."""

    proc: subprocess.Popen[str]
    workdir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def pids(self) -> dict[str, int]:
        path = self.workdir / "pids"
        if not path.exists():
            return {}
        found = (line.split() for line in path.read_text().splitlines() if line.strip())
        return {name: int(pid) for name, pid in found}

    def ports(self) -> dict[str, int]:
        return {name: int(port) for name, port in URL.findall(self.out)}


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def demo(tmp_path: Path, redis_url: str) -> Iterator[Demo]:
    namespace = f"demo-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKENEO_", "CELERY_"))}
    env.update({"CONNECTOR_NAMESPACE": namespace, "REDIS_URL": redis_url,
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [CONNECTOR, "demo", "--assets", "20", "--workdir", str(tmp_path)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    d = Demo(proc, tmp_path)
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: d.lines.extend(iter(stdout.readline, "")),
                              daemon=True)
    reader.start()
    pids: dict[str, int] = {}
    try:
        yield d
    finally:
        pids = d.pids() or pids
        for pgid in [*pids.values(), proc.pid]:  # whatever the test left behind
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        r = get_redis(redis_url)
        keys = list(r.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i: i + 500])


def _stop_and_check(demo: Demo, signum: int, names: set[str]) -> None:
    pids, ports = demo.pids(), demo.ports()
    assert names <= set(pids), (pids, demo.out)
    assert all(_alive(pid) for pid in pids.values()), pids
    demo.proc.send_signal(signum)
    code = demo.proc.wait(timeout=60)
    assert code == 128 + signum, demo.out
    assert f"stopping ({signal.Signals(signum).name})…" in demo.out, demo.out
    wait_for(lambda: not any(_alive(pid) for pid in pids.values()), timeout=30,
             what=f"the demo's children {pids} to be gone")
    wait_for(lambda: all(_free(port) for port in ports.values()), timeout=30,
             what=f"ports {ports} to be free")
    assert not (demo.workdir / "pids").exists()  # a stopped demo leaves no stale pid list


def test_sigterm_stops_the_running_demo_and_every_child(demo: Demo) -> None:
    wait_for(lambda: "Ctrl-C stops" in demo.out or demo.proc.poll() is not None,
             timeout=300, interval=0.5, what="the demo to be up")
    assert demo.proc.poll() is None, demo.out
    assert {"sandbox PIM", "sandbox DAM", "Flower"} <= set(demo.ports()), demo.out
    _stop_and_check(demo, signal.SIGTERM,
                    {"sandbox-pim", "sandbox-dam", "worker", "push", "beat", "flower"})


def test_sighup_while_starting_stops_what_was_started(demo: Demo) -> None:
    # as soon as the sandbox PIM answers (its URL is printed): the rest is still starting
    wait_for(lambda: "sandbox PIM  http" in demo.out or demo.proc.poll() is not None,
             timeout=120, interval=0.1, what="the sandbox PIM")
    assert demo.proc.poll() is None, demo.out
    _stop_and_check(demo, signal.SIGHUP, {"sandbox-pim", "sandbox-dam"})
