"""Connection reuse in the connector's HTTP clients, over real sockets (issue 13, item 2).

One pooled session per client, the environment read once: proxies (HTTP_PROXY, NO_PROXY…)
and the CA bundle (REQUESTS_CA_BUNDLE) still apply, but no request scans `os.environ`
again; over TLS with keep-alive, many requests cost one connection and one handshake.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.utils

from connector.dam.rest import RestSource
from connector.http_session import PooledSession
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer, default_ca
from tests.e2e.world import World
from tests.security.inline import InlineRunner
from tests.test_dam_rest import make_source


class ForwardProxy(ThreadingHTTPServer):
    """A plain-HTTP forward proxy (absolute-form GETs), recording the targets it saw."""

    daemon_threads = True

    def __init__(self) -> None:
        self.seen: list[str] = []
        out = requests.Session()
        out.trust_env = False
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.seen.append(self.path)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "proxy-connection", "connection")}
                answer = out.get(self.path, headers=headers, allow_redirects=False, timeout=10)
                self.send_response(answer.status_code)
                for key in ("Content-Type", "Link", "X-Next-Cursor", "Retry-After"):
                    if key in answer.headers:
                        self.send_header(key, answer.headers[key])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_CONNECT(self) -> None:  # an HTTPS tunnel: bytes relayed both ways
                proxy.seen.append(f"CONNECT {self.path}")
                host, port = self.path.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)), timeout=10)
                self.send_response(200, "Connection established")
                self.end_headers()
                peers = {self.connection: upstream, upstream: self.connection}
                try:
                    while True:
                        readable, _, _ = select.select(list(peers), [], [], 10)
                        if not readable:
                            return
                        for sock in readable:
                            data = sock.recv(65536)
                            if not data:
                                return
                            peers[sock].sendall(data)
                finally:
                    upstream.close()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def dam() -> Iterator[tuple[DamSandbox, BackgroundServer]]:
    sandbox = DamSandbox(assets=25, shape="bynder", seed=7, auth="any")
    server = sandbox.serve()
    yield sandbox, server
    server.stop()


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_the_dam_source_goes_through_the_proxy_of_the_environment(dam, proxy, monkeypatch):
    _, server = dam
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    source = make_source(server.url, "bynder")
    assert isinstance(source.session, PooledSession) and source.session.trust_env is False
    pages = list(source.changed_since(None))
    assert sum(len(p.assets) for p in pages) > 0
    assert len(proxy.seen) == len(pages) and all(t.startswith(server.url) for t in proxy.seen)
    source.close()


def test_no_proxy_of_the_environment_still_bypasses_the_proxy(dam, proxy, monkeypatch):
    _, server = dam
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    source = make_source(server.url, "bynder")
    assert list(source.changed_since(None))
    assert proxy.seen == []
    source.close()


@pytest.mark.parametrize("no_proxy", ["", "127.0.0.1"])
def test_https_goes_through_the_https_proxy_tunnel_unless_no_proxy(proxy, monkeypatch, no_proxy):
    sandbox = DamSandbox(assets=25, shape="bynder", seed=7, auth="any")
    server = sandbox.serve(tls=True)
    try:
        _clear_proxy_env(monkeypatch)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_ca().bundle))
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy)
        source = make_source(server.url, "bynder")
        pages = list(source.changed_since(None))
        assert len(pages) == 3
        expected = [] if no_proxy else [f"CONNECT 127.0.0.1:{server.port}"]
        assert proxy.seen == expected  # one tunnel, kept for every page
        counters = sandbox.counters()
        assert (counters["connections"], counters["tls_handshakes"]) == (1, 1)
        source.close()
    finally:
        server.stop()


def test_https_proxy_is_chosen_for_https_urls_and_no_proxy_per_host(monkeypatch):
    _clear_proxy_env(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "pim.internal")
    session = PooledSession()
    monkeypatch.delenv("HTTPS_PROXY")  # read once, at creation: later changes do not apply
    assert session.proxies_for("https://dam.example/api") == {
        "https": "http://proxy.example:3128"}
    assert session.proxies_for("https://pim.internal/api") == {}


def test_the_environment_is_read_once_per_host_not_per_request(dam, monkeypatch):
    _, server = dam
    _clear_proxy_env(monkeypatch)
    calls = []
    real = requests.utils.get_environ_proxies

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(requests.utils, "get_environ_proxies", counting)
    monkeypatch.setattr("requests.sessions.get_environ_proxies", counting)
    source = make_source(server.url, "bynder")
    pages = list(source.changed_since(None))
    assert len(pages) >= 3
    assert calls == []
    source.close()


def _pim_client(url: str, redis_client: Any, namespace: str) -> AkeneoClient:
    credentials = PimCredentials(url=url, client_id="sandbox-client",
                                 client_secret=Secret("sandbox-secret"), username="sandbox",
                                 password=Secret("sandbox-password"))
    return AkeneoClient(credentials, redis=redis_client, keys=Keys(namespace))


def test_the_pim_client_trusts_the_ca_bundle_of_the_environment_and_keeps_one_connection(
    namespace, redis_client, monkeypatch
):
    pim = PimSandbox(PimSandboxSettings(max_concurrency=0))
    server = pim.serve(tls=True)
    try:
        assert server.url.startswith("https://")
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        untrusting = _pim_client(server.url, redis_client, namespace)
        with pytest.raises(Exception, match=r"connection error \(SSLError\)"):
            untrusting.get_asset_family("nope")
        untrusting.close()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
        client = _pim_client(server.url, redis_client, namespace)
        pim.reset()
        for _ in range(20):
            assert client.get_asset_family("nope") is None
        counters = pim.counters()
        assert counters["connections"] == 1, counters
        assert counters["tls_handshakes"] == 1, counters
        client.close()
    finally:
        server.stop()


def test_tls_dam_pages_and_media_share_one_connection(monkeypatch):
    sandbox = DamSandbox(assets=30, shape="bynder", seed=7, auth="any")
    server = sandbox.serve(tls=True)
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_ca().bundle))
        source: RestSource = make_source(server.url, "bynder")
        assets = [a for page in source.changed_since(None) for a in page.assets]
        for asset in assets[:10]:
            with source.open_binary(asset) as stream:
                assert stream.read()
        counters = sandbox.counters()
        assert counters["media"] == 10
        assert counters["connections"] == 1, counters
        assert counters["tls_handshakes"] == 1, counters
        source.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- a whole sync over TLS


def _sync_over_tls(tmp_path: Path, redis_url: str, assets: int) -> dict[str, Any]:
    """A full sync of `assets` DAM assets, every step in this process (one process, one
    thread), against HTTPS sandboxes: what each sandbox counted during the run."""
    world = World(tmp_path / f"n{assets}", redis_url, assets, tls=True)
    world.tmp.mkdir()
    runner = None
    try:
        world.start()
        assert world.dam is not None and world.pim is not None
        runner = InlineRunner(world)
        world.dam.connections.reset()  # the set-up's own connections (structure) aside
        world.pim.connections.reset()
        report = runner.run()
        assert report["state"] == "succeeded", report
        return {"dam": world.dam.counters(), "pim": world.pim.counters()}
    finally:
        if runner is not None:
            runner.close()
        world.stop()


def test_a_sync_over_tls_opens_one_connection_per_host_whatever_its_size(
    tmp_path, redis_url, monkeypatch
):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_ca().bundle))
    _clear_proxy_env(monkeypatch)
    small, large = (_sync_over_tls(tmp_path, redis_url, n) for n in (12, 48))
    assert large["pim"]["assets_stored"] > small["pim"]["assets_stored"] > 0
    assert large["dam"]["media"] > small["dam"]["media"] > 0  # binaries downloaded too
    seen = {size: {host: (c[host]["connections"], c[host]["tls_handshakes"])
                   for host in ("dam", "pim")}
            for size, c in (("small", small), ("large", large))}
    # one process with one thread contacts 2 hosts: at most 1 connection (and handshake) each
    assert seen["small"] == seen["large"] == {"dam": (1, 1), "pim": (1, 1)}, seen
