"""Safe download of DAM binaries (SSRF guard + size cap).

The URL of a binary comes from DAM data, i.e. from whoever can edit an asset in the DAM.
Fetching it blindly would let them make the connector read cloud metadata endpoints or
internal services, or fill the disk. So a download:

* goes only to allowed hosts (default: the DAM's own host);
* resolves the host and refuses loopback/private/reserved addresses unless that host is
  trusted to be private (the DAM's own host, or an IP literal written in the allow-list);
  link-local and cloud-metadata addresses and names are refused always;
* follows redirects by hand, re-checking every hop, and drops credentials when a hop
  leaves the origin they were meant for;
* streams into a temporary file, stopping at `max_bytes` (announced or actual).

Known gap: the address is checked at resolution time; a DNS answer that changes between
the check and requests' own connect (DNS rebinding) is not caught.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from connector.dam.base import DamError, TransientDamError
from connector.retry import is_transient_status, parse_retry_after

Resolver = Callable[[str, int], list[str]]

# Names and addresses of instance-metadata services: never a DAM, always refused.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.internal",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
METADATA_ADDRESSES = frozenset({"169.254.169.254", "fd00:ec2::254", "100.100.100.200"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class MediaError(DamError):
    """A binary could not be fetched (e.g. 404); the asset is quarantined, not retried."""


class MediaRefusedError(MediaError):
    """The URL points somewhere the connector must not go."""


class MediaTooLargeError(MediaError):
    """The binary is bigger than the configured cap."""


def default_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (what requests may connect to)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets: the form allow-lists compare."""
    return host.strip().strip("[]").rstrip(".").lower()


def safe_url(url: str) -> str:
    """The URL without query string, fragment or user info: fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _is_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_loopback)


class SafeDownloader:
    """Downloads a URL to a temporary file, or refuses with a clear reason."""

    def __init__(
        self,
        allowed_hosts: Iterable[str],
        max_bytes: int,
        timeout: float = 60.0,
        *,
        private_hosts: Iterable[str] = (),
        resolver: Resolver | None = None,
        max_redirects: int = 5,
        chunk_size: int = 64 * 1024,
    ) -> None:
        self.allowed_hosts = frozenset(normalise_host(h) for h in allowed_hosts if h)
        # Hosts allowed to resolve to non-public addresses: named explicitly by the
        # operator (the DAM's own host) or IP literals written in the allow-list.
        self.private_hosts = frozenset(normalise_host(h) for h in private_hosts) | frozenset(
            h for h in self.allowed_hosts if _ip(h) is not None
        )
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.chunk_size = chunk_size
        self._resolve = resolver or default_resolver

    # ------------------------------------------------------------------ checks

    def host_allowed(self, host: str) -> bool:
        """Exact match, or `*.example.com` for any subdomain of example.com."""
        host = normalise_host(host)
        if host in self.allowed_hosts:
            return True
        return any(
            pattern.startswith("*.") and host.endswith(pattern[1:])
            for pattern in self.allowed_hosts
        )

    def check_url(self, url: str) -> None:
        """Raise MediaRefusedError unless `url` may be fetched right now."""
        parts = urlsplit(url)
        shown = safe_url(url) if parts.scheme else repr(url[:200])
        if parts.scheme not in ("http", "https"):
            raise MediaRefusedError(f"refused {shown}: only http and https URLs are fetched")
        host = normalise_host(parts.hostname or "")
        if not host:
            raise MediaRefusedError(f"refused {shown}: the URL has no host")
        if host in METADATA_HOSTS or host in METADATA_ADDRESSES:
            raise MediaRefusedError(f"refused {shown}: {host} is a cloud metadata endpoint")
        if not self.host_allowed(host):
            allowed = ", ".join(sorted(self.allowed_hosts)) or "(none)"
            raise MediaRefusedError(
                f"refused {shown}: host {host} is not in the allowed hosts ({allowed})"
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise MediaRefusedError(f"refused {shown}: invalid port") from None
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise MediaRefusedError(f"refused {shown}: cannot resolve {host} ({exc})") from None
        if not addresses:
            raise MediaRefusedError(f"refused {shown}: {host} resolves to no address")
        for raw in addresses:
            addr = _ip(raw)
            if addr is None:
                raise MediaRefusedError(f"refused {shown}: {host} resolves to {raw!r}")
            if str(addr) in METADATA_ADDRESSES or addr.is_link_local:
                raise MediaRefusedError(
                    f"refused {shown}: {host} resolves to link-local/metadata address {addr}"
                )
            if not _is_public(addr) and host not in self.private_hosts:
                raise MediaRefusedError(
                    f"refused {shown}: {host} resolves to non-public address {addr} "
                    f"(loopback/private/reserved) and is not the DAM's own host"
                )

    # ------------------------------------------------------------------ download

    @contextmanager
    def download(
        self,
        url: str,
        session: requests.Session | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[Path]:
        """Fetch `url` into a temporary file (removed on exit) and yield its path.

        `headers` (e.g. the DAM's Authorization) are sent only to the origin of `url`,
        never to a host a redirect leads to.
        """
        path = self.fetch(url, session, headers)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def fetch(
        self,
        url: str,
        session: requests.Session | None = None,
        headers: dict[str, str] | None = None,
    ) -> Path:
        """Fetch `url` into a temporary file the caller removes. One attempt: a 429/5xx or
        a network failure is a TransientDamError carrying the server's Retry-After, for the
        caller's retry loop (connector.dam.rest) to wait out."""
        own_session = session is None
        http = session or requests.Session()
        try:
            return self._fetch(http, url, headers or {})
        finally:
            if own_session:
                http.close()

    def _fetch(self, http: requests.Session, url: str, headers: dict[str, str]) -> Path:
        origin = _origin(url)
        current = url
        for _hop in range(self.max_redirects + 1):
            self.check_url(current)
            send = headers if _origin(current) == origin else {}
            try:
                resp = http.get(
                    current,
                    headers=send,
                    stream=True,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise TransientDamError(
                    f"download of {safe_url(current)} failed: {type(exc).__name__}"
                ) from None
            with resp:
                location = resp.headers.get("Location")
                if resp.status_code in REDIRECT_STATUSES and location:
                    current = urljoin(current, location)
                    continue
                if is_transient_status(resp.status_code):
                    raise TransientDamError(
                        f"download of {safe_url(current)} answered HTTP {resp.status_code}",
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                    )
                if resp.status_code != 200:
                    raise MediaError(
                        f"download of {safe_url(current)} answered HTTP {resp.status_code}"
                    )
                return self._save(resp, current)
        raise MediaRefusedError(
            f"refused {safe_url(url)}: more than {self.max_redirects} redirects"
        )

    def _save(self, resp: requests.Response, url: str) -> Path:
        announced = resp.headers.get("Content-Length")
        if (
            announced is not None
            and announced.strip().isdigit()
            and int(announced) > self.max_bytes
        ):
            raise MediaTooLargeError(
                f"{safe_url(url)} is {int(announced)} bytes (Content-Length), "
                f"over the {self.max_bytes}-byte cap"
            )
        suffix = Path(urlsplit(url).path).suffix
        if not suffix.replace(".", "").isalnum() or len(suffix) > 10:
            suffix = ""
        fd, name = tempfile.mkstemp(prefix="dam-media-", suffix=suffix)
        path = Path(name)
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_content(self.chunk_size):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaTooLargeError(
                            f"{safe_url(url)} sent more than the {self.max_bytes}-byte cap"
                        )
                    out.write(chunk)
        except requests.RequestException as exc:
            path.unlink(missing_ok=True)
            raise TransientDamError(
                f"download of {safe_url(url)} broke off after {size} bytes: "
                f"{type(exc).__name__}"
            ) from None
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.scheme, normalise_host(parts.hostname or ""), port)


def downloader_for(
    base_url: str | None,
    allowed_hosts: Iterable[str] = (),
    max_bytes: int = 200 * 1024 * 1024,
    timeout: float = 60.0,
    resolver: Resolver | None = None,
) -> SafeDownloader:
    """The downloader a source uses. The DAM's own host is always allowed (we already send
    it our credentials) and trusted to live on a private address (the operator configured
    it); `allowed_hosts` adds CDNs and the like."""
    own = normalise_host(urlsplit(base_url).hostname or "") if base_url else ""
    hosts = (*allowed_hosts, own) if own else tuple(allowed_hosts)
    return SafeDownloader(
        hosts,
        max_bytes,
        timeout,
        private_hosts=(own,) if own else (),
        resolver=resolver,
    )
