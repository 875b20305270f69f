"""One pooled `requests.Session` per HTTP client, with the environment read once.

A plain `requests.Session` trusts the environment on *every* request: it scans
`os.environ` for proxies (`getproxies_environment`), checks `NO_PROXY`, looks for a
`.netrc` file and re-reads `REQUESTS_CA_BUNDLE`. Profiled on a 5,000-asset sync that was
about a tenth of the CPU (docs/performance.md). `PooledSession` keeps what the
environment says but reads it once:

* the CA bundle (`REQUESTS_CA_BUNDLE`, then `CURL_CA_BUNDLE`) at creation, as `verify`;
* the proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, upper or lower case)
  at creation, and whether NO_PROXY exempts a host once per scheme and host (with
  requests' own matching: names, domain suffixes, host:port, CIDR);
* no `.netrc` lookup (the connector sends its own credentials).

So a change to those variables applies to the next process (or the next session), not to
a running one. Connections are pooled per host (`pool_maxsize` per host, enough for the
client's requests in flight) and kept alive between requests.

Its adapter also *pins*: a `PinnedRequest` (made by `pinned()`) connects to the one
address it names instead of resolving its host again — the SSRF guard of downloads and
webhooks (`connector.dam.media`) checks the addresses a name resolves to and then must
connect to one of *those*, or a DNS answer that changes in between (DNS rebinding) would
send it elsewhere. The URL keeps the name: the `Host` header, TLS SNI and the
certificate's hostname check are all for the name. Through a proxy nothing is pinned:
the proxy resolves the name (it is then where egress is controlled).
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.utils import select_proxy
from urllib3.connectionpool import ConnectionPool

if TYPE_CHECKING:  # the stubs' names for the hook's argument types
    from requests.sessions import _Cert, _Settings, _TextMapping, _Verify

#: The environment variables `PooledSession` reads (the ones requests itself honours).
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def ca_bundle_from(environ: Mapping[str, str]) -> str | None:
    """The CA file the environment names, as requests would pick it (None: certifi's)."""
    for name in CA_BUNDLE_VARIABLES:
        value = environ.get(name)
        if value:
            return value
    return None


class PinnedRequest(requests.PreparedRequest):
    """A prepared request that connects to `address` (an IP), not to its URL's host."""

    address: str = ""


def pinned(request: requests.PreparedRequest, address: str) -> PinnedRequest:
    """`request` pinned to `address`, with the `Host` header its URL names."""
    pin = PinnedRequest()
    pin.method, pin.url, pin.body, pin.hooks = (
        request.method, request.url, request.body, request.hooks)
    pin.headers = request.headers.copy()
    pin._cookies = request._cookies  # type: ignore[attr-defined]  # requests' own field
    pin._body_position = request._body_position  # type: ignore[attr-defined]
    pin.address = address
    netloc = urlsplit(request.url or "").netloc
    pin.headers["Host"] = netloc.rsplit("@", 1)[-1]
    return pin


class PinningAdapter(HTTPAdapter):
    """An `HTTPAdapter` that connects a `PinnedRequest` to its address (see module doc):
    one pool per (address, port, name), so pinned connections are kept alive too (apart
    from the unpinned pool of the same name: one more connection, not one per request).
    A URL whose host is the address itself (an IP literal) needs no pin."""

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> ConnectionPool:
        address = request.address if isinstance(request, PinnedRequest) else ""
        literal = urlsplit(request.url or "").hostname == address  # no lookup to pin
        if not address or literal or select_proxy(request.url or "", dict(proxies or {})):
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        host_params, key_attributes = self.build_connection_pool_key_attributes(
            request, True if verify is None else verify, cert
        )
        pool_kwargs: dict[str, Any] = dict(key_attributes)
        name = host_params["host"]
        host_params["host"] = address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name  # SNI for the name, not the address
            pool_kwargs["assert_hostname"] = name  # the certificate must name it
        pool: ConnectionPool = self.poolmanager.connection_from_host(
            **host_params, pool_kwargs=pool_kwargs
        )
        return pool


class PooledSession(requests.Session):
    """A session with a keep-alive pool per host and `trust_env` resolved once (see module)."""

    def __init__(self, *, pool_maxsize: int = 10, pool_connections: int = 4) -> None:
        super().__init__()
        self.trust_env = False  # no per-request scan of os.environ, no .netrc lookup
        bundle = ca_bundle_from(os.environ)
        if bundle is not None:
            self.verify = bundle
        # scheme → proxy URL, 'no' → NO_PROXY: what requests would read on each request
        proxies = dict(urllib.request.getproxies())
        self._no_proxy = proxies.pop("no", "")
        self._env_proxies = proxies
        self._by_origin: dict[str, dict[str, str]] = {}
        adapter = PinningAdapter(
            pool_connections=pool_connections, pool_maxsize=max(1, pool_maxsize), max_retries=0
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The environment's proxies for `url` (none when NO_PROXY matches its host): what
        requests' `get_environ_proxies` answers, decided once per scheme and host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._by_origin.get(origin)
        if found is None:
            bypass = not self._env_proxies or requests.utils.should_bypass_proxies(
                url, no_proxy=self._no_proxy
            )
            found = {} if bypass else dict(self._env_proxies)
            self._by_origin[origin] = found  # a race computes the same answer twice
        return found

    def merge_environment_settings(
        self,
        url: str | bytes | None,
        proxies: _TextMapping | None,
        stream: bool | None,
        verify: _Verify | None,
        cert: _Cert | None,
    ) -> _Settings:
        """requests' hook for the environment's settings: the snapshot's proxies instead of
        a scan of os.environ (trust_env is off; verify already holds the CA bundle)."""
        merged = dict(proxies or {})
        text = url.decode() if isinstance(url, bytes) else (url or "")
        for key, value in self.proxies_for(text).items():
            merged.setdefault(key, value)
        return super().merge_environment_settings(url, merged, stream, verify, cert)
