"""SSRF without a DNS-rebinding window: the connection goes to the address that was checked.

A rebinding name answers an allowed address to the check and an internal one right after.
Two servers listen on the same port: the allowed one on 127.0.0.2, the "internal service"
on 127.0.0.1. `socket.getaddrinfo` is patched to alternate its answers for the test names
(first 127.0.0.2, then 127.0.0.1), so a second lookup — requests resolving the name again
when it connects — would land on the internal server. Which server saw the request, and
how many lookups each name got, prove where the connection went.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from werkzeug.wrappers import Request, Response

from connector.alerts import Alerts
from connector.config.model import AlertsConfig
from connector.dam.base import TransientDamError
from connector.dam.media import SafeDownloader, downloader_for
from connector.redis_conn import Keys
from connector.settings import Secret
from sandbox.server import BackgroundServer, default_ca

ALLOWED, INTERNAL = "127.0.0.2", "127.0.0.1"
DAM, CDN, HOOKS, OTHER = "dam.rebind.test", "cdn.rebind.test", "hooks.rebind.test", "x.rebind.test"


class Site:
    """Records each request (Host header, path, body); answers `from <label>`."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.seen: list[dict[str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        self.seen.append({"host": request.host, "path": request.path,
                          "body": request.get_data(as_text=True)})
        if request.path == "/redirect":
            response = Response("", 302, headers={"Location": request.args["to"]})
        else:
            response = Response(f"from {self.label}".encode())
        return response(environ, start_response)


class Rebinding:
    """`socket.getaddrinfo` for the test names: ALLOWED, then INTERNAL, then ALLOWED …"""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.lookups: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".rebind.test"):
            return self.real(host, port, *args, **kwargs)
        with self._lock:
            self.lookups[name] += 1
            answer = ALLOWED if self.lookups[name] % 2 == 1 else INTERNAL
        return self.real(answer, port, *args, **kwargs)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Rebinding:
    rebinding = Rebinding(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    return rebinding


def _pair(tls: bool) -> Iterator[tuple[Site, Site, int]]:
    """The allowed site on ALLOWED:port and the internal one on INTERNAL:same port."""
    allowed, internal = Site("allowed"), Site("internal")
    names = (DAM, CDN, HOOKS)
    for _ in range(20):
        try:
            first = BackgroundServer(allowed, ALLOWED, tls=tls, names=names)
        except OSError:  # pragma: no cover - platform without 127.0.0.0/8 routing
            pytest.skip("cannot bind 127.0.0.2")
        try:
            second = BackgroundServer(internal, INTERNAL, first.port, tls=tls, names=names)
        except OSError:  # that port is taken on 127.0.0.1: another pair
            first.stop()
            continue
        first.start()
        second.start()
        try:
            yield allowed, internal, first.port
        finally:
            first.stop()
            second.stop()
        return
    pytest.fail("no port free on both loopback addresses")


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site, int]]:
    yield from _pair(tls=False)


@pytest.fixture
def tls_sites(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Site, int]]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(default_ca().bundle))
    yield from _pair(tls=True)


def test_a_download_connects_to_the_address_that_was_checked(
    dns: Rebinding, sites: tuple[Site, Site, int]
) -> None:
    allowed, internal, port = sites
    downloader = downloader_for(f"http://{DAM}:{port}", max_bytes=1000)
    with downloader.download(f"http://{DAM}:{port}/file.bin") as path:
        assert path.read_bytes() == b"from allowed"
    assert internal.seen == []
    assert allowed.seen == [{"host": f"{DAM}:{port}", "path": "/file.bin", "body": ""}]
    assert dns.lookups == {DAM: 1}  # resolved once, by the check; connected to that answer


def test_every_redirect_hop_is_checked_and_pinned_again(
    dns: Rebinding, sites: tuple[Site, Site, int]
) -> None:
    allowed, internal, port = sites
    downloader = SafeDownloader([DAM, CDN], 1000, private_hosts=[DAM, CDN])
    target = f"http://{CDN}:{port}/file.bin"
    with downloader.download(f"http://{DAM}:{port}/redirect?to={target}") as path:
        assert path.read_bytes() == b"from allowed"
    assert internal.seen == []
    assert [(s["host"], s["path"]) for s in allowed.seen] == [
        (f"{DAM}:{port}", "/redirect"), (f"{CDN}:{port}", "/file.bin")]
    assert dns.lookups == {DAM: 1, CDN: 1}


def test_over_tls_the_pinned_connection_verifies_the_certificate_for_the_name(
    dns: Rebinding, tls_sites: tuple[Site, Site, int]
) -> None:
    allowed, internal, port = tls_sites
    downloader = SafeDownloader([DAM, OTHER], 1000, private_hosts=[DAM, OTHER])
    with downloader.download(f"https://{DAM}:{port}/file.bin") as path:
        assert path.read_bytes() == b"from allowed"
    assert [s["host"] for s in allowed.seen] == [f"{DAM}:{port}"]
    # The certificate names DAM and the address 127.0.0.2, not OTHER: a check against the
    # address we connect to would pass; the check against the name must refuse it.
    with pytest.raises(TransientDamError, match="SSLError"), \
            downloader.download(f"https://{OTHER}:{port}/file.bin"):
        pass
    assert internal.seen == [] and len(allowed.seen) == 1
    assert dns.lookups == {DAM: 1, OTHER: 1}


def test_a_webhook_alert_is_posted_to_the_address_that_was_checked(
    dns: Rebinding, sites: tuple[Site, Site, int], redis_url: str, namespace: str
) -> None:
    allowed, internal, port = sites
    config = AlertsConfig(webhooks=(Secret(f"http://{HOOKS}:{port}/hooks/T0KEN"),),
                          allowed_private_hosts=(HOOKS,))
    alerts = Alerts(config, redis.Redis.from_url(redis_url), Keys(namespace))
    assert alerts.send("a run failed") == 1
    assert internal.seen == []
    assert [(s["host"], s["path"]) for s in allowed.seen] == [(f"{HOOKS}:{port}", "/hooks/T0KEN")]
    assert json.loads(allowed.seen[0]["body"]) == {"text": "a run failed"}
    assert dns.lookups == {HOOKS: 1}


def test_a_dead_address_is_skipped_for_the_next_one_the_check_passed(
    sites: tuple[Site, Site, int]
) -> None:
    """Pinning keeps what a name with several addresses is for: one down, the next used."""
    allowed, internal, port = sites
    answers = {DAM: ["127.0.0.3", ALLOWED]}  # nothing listens on 127.0.0.3

    downloader = SafeDownloader([DAM], 1000, private_hosts=[DAM],
                                resolver=lambda host, _port: answers[host])
    with downloader.download(f"http://{DAM}:{port}/file.bin") as path:
        assert path.read_bytes() == b"from allowed"
    assert internal.seen == [] and [s["host"] for s in allowed.seen] == [f"{DAM}:{port}"]
