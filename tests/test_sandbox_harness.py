"""sandbox/harness.py: the one copy of what the e2e, model and fault worlds and the
benchmarks share (environment, worker command line, child processes, namespace cleanup)."""

from __future__ import annotations

import signal
import socket
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery

from sandbox import harness
from tasks import routing
from tests.helpers import wait_for


def test_a_worker_consumes_the_queues_of_the_routing_table() -> None:
    argv = harness.worker_argv("w0@127.0.0.1", concurrency=3)
    queues = argv[argv.index("-Q") + 1].split(",")
    assert set(queues) == {*routing.QUEUES, routing.DEFAULT_QUEUE}
    assert argv[:4] == [harness.CELERY, "-A", "tasks", "worker"]
    assert argv[argv.index("-c") + 1] == "3" and argv[argv.index("-n") + 1] == "w0@127.0.0.1"
    assert harness.ALL_QUEUES.split(",") == list(routing.QUEUES)


def test_the_environment_points_at_the_world_and_drops_the_callers_pim(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AKENEO_URL", "https://real-pim.example.com")
    monkeypatch.setenv("AKENEO_CLIENT_ID", "real-client")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://elsewhere")
    secrets = harness.SandboxSecrets(pim_secret="s1", pim_password="p1", dam_token="t1")
    env = harness.connector_env(
        namespace="ns1", redis_url="redis://r/0", broker_url="redis://b/0",
        pim_url="http://127.0.0.1:1", secrets=secrets, config_path=tmp_path / "c.yaml",
        extra={"FAULTS_VISIBILITY_TIMEOUT": "3"},
    )
    assert {k: v for k, v in env.items() if k.startswith(("AKENEO_", "CELERY_"))} == {
        "AKENEO_URL": "http://127.0.0.1:1", "AKENEO_CLIENT_ID": "sandbox-client",
        "AKENEO_CLIENT_SECRET": "s1", "AKENEO_USERNAME": "sandbox", "AKENEO_PASSWORD": "p1",
        "CELERY_BROKER_URL": "redis://b/0",
    }
    assert env["DAM_TOKEN"] == "t1" and env["CONNECTOR_NAMESPACE"] == "ns1"
    assert env["CONNECTOR_CONFIG"] == str(tmp_path / "c.yaml")
    assert env["FAULTS_VISIBILITY_TIMEOUT"] == "3"
    assert env["PYTHONPATH"] == str(harness.ROOT)
    credentials = secrets.credentials("http://127.0.0.1:1")
    assert credentials.client_secret.reveal() == "s1"  # what the sandbox PIM is told to accept


_STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print("ready", child.pid, flush=True)
time.sleep(600)
"""


def test_a_child_that_ignores_sigterm_is_killed_with_its_whole_group(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = harness.start_process([sys.executable, "-c", _STUBBORN], harness.base_env(), log)
    line = wait_for(lambda: harness.log_tail(log).strip(), timeout=30, what="the child")
    grandchild = psutil.Process(int(line.split()[1]))
    assert psutil.Process(proc.pid).pid == grandchild.ppid()
    harness.stop_processes([proc], timeout=0.5, kill_timeout=10)
    assert proc.returncode == -signal.SIGKILL
    grandchild.wait(timeout=10)  # the group went with it: no orphan left running
    assert not grandchild.is_running()


def test_waiting_for_a_worker_that_exited_fails_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    argv = [sys.executable, "-c", "import sys; print('no broker here'); sys.exit(3)"]
    child = harness.Child("w0@127.0.0.1", harness.start_process(argv, harness.base_env(), log),
                          log)
    child.proc.wait(timeout=30)
    app = Celery("harness-test", broker="redis://127.0.0.1:1/0")
    with pytest.raises(RuntimeError, match=r"worker w0@127\.0\.0\.1 exited:\nno broker here"):
        harness.wait_workers(app, [child], timeout=5)


def test_a_free_port_can_be_bound() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", harness.free_port()))


def test_namespace_cleanup_keeps_the_broker_keys_when_asked(redis_url: str) -> None:
    namespace = f"harness-{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    broker = harness.broker_prefix(namespace)
    client.set(f"{namespace}:runs:1", "x")
    client.set(f"{broker}unacked", "y")
    client.set(f"{namespace}x:other", "z")  # another namespace with the same start
    try:
        assert harness.delete_namespace(namespace, redis_url, keep_prefix=broker) == 1
        assert client.exists(f"{broker}unacked") and not client.exists(f"{namespace}:runs:1")
        assert harness.delete_namespace(namespace, redis_url) == 1
        assert client.exists(f"{namespace}x:other")
        with pytest.raises(ValueError, match="refusing"):
            harness.delete_namespace(f"{namespace}:*", redis_url)
    finally:
        client.delete(f"{namespace}x:other")
