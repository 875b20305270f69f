"""The sandboxes are served like production servers (issue 13, item 1): HTTP/1.1 keep-alive,
TLS on demand with a CA generated at start, connections and handshakes counted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer, SandboxCA
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dam() -> Iterator[tuple[DamSandbox, BackgroundServer]]:
    sandbox = DamSandbox(assets=5, shape="bynder", seed=1, auth="any")
    server = sandbox.serve()
    yield sandbox, server
    server.stop()


def test_plain_http_keeps_the_connection_alive_and_counts_it(dam):
    sandbox, server = dam
    with requests.Session() as http:
        http.headers["Authorization"] = "Bearer sandbox-dam-token"
        answers = [http.get(f"{server.url}/api/v4/media/", timeout=5) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert all(a.headers.get("Connection", "").lower() != "close" for a in answers)
    counters = requests.get(f"{server.url}/_sandbox/counters", timeout=5).json()
    assert counters["connections"] == 2  # the session's one, and this request's own
    assert counters["tls_handshakes"] == 0
    assert counters["connections_by_client"] == {
        "127.0.0.1": {"connections": 2, "tls_handshakes": 0}}
    requests.post(f"{server.url}/_sandbox/counters/reset", timeout=5)
    assert sandbox.counters()["connections"] == 0


def test_tls_on_demand_counts_one_handshake_per_connection(tmp_path):
    ca = SandboxCA(tmp_path / "ca")
    pim = PimSandbox(PimSandboxSettings(max_concurrency=0))
    server = pim.serve(tls=True, ca=ca)
    try:
        assert server.url.startswith("https://127.0.0.1:")
        assert server.ca_bundle == tmp_path / "ca" / "ca.pem"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{server.url}/_sandbox/counters", timeout=5)  # not trusted
        trust = str(server.ca_bundle)
        with requests.Session() as http:
            for _ in range(5):
                assert http.get(f"{server.url}/_sandbox/counters", timeout=5, verify=trust).ok
            counters = http.get(f"{server.url}/_sandbox/counters", timeout=5, verify=trust).json()
        # the refused client completed no handshake; the session did one, on one connection
        assert counters["tls_handshakes"] == 1
        assert counters["connections"] == 2
        plain = server.url.replace("https://", "http://")
        try:  # cheroot answers 400, unless the reset of the connection comes first
            refused: int | None = requests.get(f"{plain}/_sandbox/counters", timeout=5).status_code
        except requests.ConnectionError:
            refused = None
        assert refused in (400, None)
    finally:
        server.stop()


def test_a_ca_directory_is_reused_so_one_file_trusts_both_sandboxes(tmp_path):
    first = SandboxCA(tmp_path)
    second = SandboxCA(tmp_path)
    assert first.bundle == second.bundle
    pim = PimSandbox(PimSandboxSettings(max_concurrency=0)).serve(tls=True, ca=first)
    dam = DamSandbox(assets=1, auth="any").serve(tls=True, ca=second)
    try:
        for url in (pim.url, dam.url):
            answer = requests.get(f"{url}/_sandbox/counters", timeout=5, verify=str(first.bundle))
            assert answer.json()["tls_handshakes"] == 1
    finally:
        pim.stop()
        dam.stop()


@pytest.mark.parametrize("kind", ["pim", "dam"])
def test_the_cli_serves_tls_and_prints_the_ca_bundle_for_the_client(tmp_path, kind):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "sandbox.log"
    ca_dir = tmp_path / "ca"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.cli", "sandbox", kind, "--port", str(port),
             "--tls", "--ca-dir", str(ca_dir)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )
    try:
        wait_for(lambda: "Ctrl-C" in log.read_text() or "list:" in log.read_text()
                 or proc.poll() is not None, timeout=30, what="the sandbox to start")
        text = log.read_text()
        assert f"REQUESTS_CA_BUNDLE={ca_dir / 'ca.pem'}" in text, text
        assert f"https://127.0.0.1:{port}" in text, text

        def answers() -> requests.Response | None:
            try:
                return requests.get(f"https://127.0.0.1:{port}/_sandbox/counters", timeout=5,
                                    verify=str(ca_dir / "ca.pem"))
            except requests.ConnectionError:
                return None

        answer = wait_for(answers, timeout=30, what="an HTTPS answer")
        assert answer is not None and answer.json()["tls_handshakes"] >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
