"""Safe download of DAM binaries (SSRF guard + size cap).

The URL of a binary comes from DAM data, i.e. from whoever can edit an asset in the DAM.
Fetching it blindly would let them make the connector read cloud metadata endpoints or
internal services, or fill the disk. So a download:

* goes only to allowed hosts (default: the DAM's own host);
* resolves the host and refuses loopback/private/reserved addresses unless that host is
  trusted to be private (the DAM's own host, or an IP literal written in the allow-list);
  link-local and cloud-metadata addresses and names are refused always;
* connects to an address the check passed, not to a new lookup of the name (no DNS
  rebinding window: `connector.http_session.PinningAdapter`), keeping the name for the
  `Host` header, TLS SNI and the certificate check;
* follows redirects by hand, re-checking and re-pinning every hop, and drops credentials
  when a hop leaves the origin they were meant for;
* streams into a temporary file, stopping at `max_bytes` (announced or actual); `open`
  keeps a body of at most `in_memory_max` bytes in memory instead (a temporary file cost
  more CPU per media file than the few kilobytes it held: docs/performance.md, section 8).

`send` (check, then one pinned request) is also how alerts post their webhooks.
Through an HTTP(S) proxy nothing is pinned: the proxy resolves the name.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests

from connector import metrics
from connector.dam.base import DamError, TransientDamError
from connector.http_session import PinningAdapter, PooledSession, pinned
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
#: `SafeDownloader.open` keeps a body up to this size in memory; a larger one goes to disk
IN_MEMORY_MAX = 8 * 1024 * 1024

T = TypeVar("T")


class MediaError(DamError):
    """A binary could not be fetched (e.g. 404); the asset is quarantined, not retried."""


class MediaRefusedError(MediaError):
    """The URL points somewhere the connector must not go."""


class MediaTooLargeError(MediaError):
    """The binary is bigger than the configured cap."""


def default_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
    """Downloads a URL to a temporary file (or memory: `open`), or refuses with a clear reason."""

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
        in_memory_max: int = IN_MEMORY_MAX,
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
        self.in_memory_max = in_memory_max
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

    def check_url(self, url: str) -> list[str]:
        """Raise MediaRefusedError unless `url` may be fetched right now; else the
        addresses its host resolved to, every one checked (connect only to these)."""
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
        return list(addresses)

    def send(
        self,
        http: requests.Session,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        *,
        data: bytes | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Check `url`, then one request to an address the check passed (the next one on
        a failed connect); never follows a redirect. `http` must pin (a `PooledSession`):
        requests' own connect would resolve the name again."""
        addresses = self.check_url(url)
        if not isinstance(http.get_adapter(url), PinningAdapter):
            raise TypeError("SafeDownloader.send needs a session that pins (PooledSession)")
        request = http.prepare_request(requests.Request(method, url, headers=headers, data=data))
        settings = http.merge_environment_settings(request.url, {}, stream, None, None)
        for address in addresses[:-1]:
            try:
                return http.send(pinned(request, address), timeout=self.timeout,
                                 allow_redirects=False, **settings)
            except requests.ConnectionError:
                continue  # that address is down: the next one the check passed
        return http.send(pinned(request, addresses[-1]), timeout=self.timeout,
                         allow_redirects=False, **settings)

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
        return self._fetch_with(url, session, headers, self._save)

    def open(
        self,
        url: str,
        session: requests.Session | None = None,
        headers: dict[str, str] | None = None,
    ) -> IO[bytes]:
        """`fetch`, as a seekable file at its first byte that the caller closes: in memory
        up to `in_memory_max` bytes, else an unnamed temporary file (gone when closed)."""
        return self._fetch_with(url, session, headers, self._buffer)

    def _fetch_with(
        self,
        url: str,
        session: requests.Session | None,
        headers: dict[str, str] | None,
        save: Callable[[requests.Response, str], T],
    ) -> T:
        own_session = session is None or not _pins(session)
        http = PooledSession() if own_session or session is None else session  # pins
        try:
            return self._fetch(http, url, headers or {}, save)
        finally:
            if own_session:
                http.close()

    def _fetch(
        self,
        http: requests.Session,
        url: str,
        headers: dict[str, str],
        save: Callable[[requests.Response, str], T],
    ) -> T:
        origin = _origin(url)
        current = url
        for _hop in range(self.max_redirects + 1):
            send = headers if _origin(current) == origin else {}
            try:
                resp = self.send(http, "GET", current, send, stream=True)
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
                return save(resp, current)
        raise MediaRefusedError(
            f"refused {safe_url(url)}: more than {self.max_redirects} redirects"
        )

    def _announced(self, resp: requests.Response, url: str) -> int | None:
        """The Content-Length, when the server sent one; MediaTooLargeError over the cap."""
        announced = resp.headers.get("Content-Length")
        if announced is None or not announced.strip().isdigit():
            return None
        if int(announced) > self.max_bytes:
            raise MediaTooLargeError(
                f"{safe_url(url)} is {int(announced)} bytes (Content-Length), "
                f"over the {self.max_bytes}-byte cap"
            )
        return int(announced)

    def _save(self, resp: requests.Response, url: str) -> Path:
        self._announced(resp, url)
        return spool_capped(
            resp.iter_content(self.chunk_size), cap=self.max_bytes,
            where=f"download of {safe_url(url)}", name=urlsplit(url).path,
            transport_error=_is_requests_error,
        )

    def _buffer(self, resp: requests.Response, url: str) -> IO[bytes]:
        announced = self._announced(resp, url)
        return buffer_capped(
            resp.iter_content(self.chunk_size), cap=self.max_bytes,
            where=f"download of {safe_url(url)}", in_memory=self.in_memory_max,
            announced=announced, transport_error=_is_requests_error,
        )


def _is_requests_error(exc: BaseException) -> bool:
    return isinstance(exc, requests.RequestException)


def spool_capped(
    chunks: Iterable[bytes],
    *,
    cap: int,
    where: str,
    name: str,
    transport_error: Callable[[BaseException], bool],
) -> Path:
    """Write a download's `chunks` to a new temporary file of at most `cap` bytes (the
    file's suffix taken from `name`) and count the bytes in the metrics; on any failure
    the file is gone. A transport error mid-stream is transient (the next try starts
    over); more than `cap` bytes is MediaTooLargeError, whatever the sender announced.
    One copy for every adapter that downloads (HTTP here, S3 in connector.dam.s3)."""
    suffix = PurePosixPath(name).suffix
    if not suffix.replace(".", "").isalnum() or len(suffix) > 10:
        suffix = ""
    fd, tmp = tempfile.mkstemp(prefix="dam-media-", suffix=suffix)
    path = Path(tmp)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise MediaTooLargeError(f"{where} sent more than the {cap}-byte cap")
                out.write(chunk)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if transport_error(exc):
            raise TransientDamError(
                f"{where} broke off after {size} bytes: {type(exc).__name__}"
            ) from None
        raise
    metrics.add("media_downloaded", by=size)  # fleet-wide metrics (connector.metrics)
    return path


def buffer_capped(
    chunks: Iterable[bytes],
    *,
    cap: int,
    where: str,
    in_memory: int,
    announced: int | None,
    transport_error: Callable[[BaseException], bool],
) -> IO[bytes]:
    """`spool_capped` into a file object at its first byte: a BytesIO while the body stays
    within `in_memory` bytes (announced or actual), else an unnamed temporary file that the
    bytes so far move to, so a large body is never held whole in memory."""
    out: IO[bytes] = (
        BytesIO() if announced is None or announced <= in_memory
        else tempfile.TemporaryFile(prefix="dam-media-")  # noqa: SIM115  # returned open
    )
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise MediaTooLargeError(f"{where} sent more than the {cap}-byte cap")
            if size > in_memory and isinstance(out, BytesIO):
                spilled = tempfile.TemporaryFile(prefix="dam-media-")  # noqa: SIM115
                with out.getbuffer() as held:
                    spilled.write(held)
                out.close()
                out = spilled
            out.write(chunk)
    except BaseException as exc:
        out.close()
        if transport_error(exc):
            raise TransientDamError(
                f"{where} broke off after {size} bytes: {type(exc).__name__}"
            ) from None
        raise
    metrics.add("media_downloaded", by=size)  # fleet-wide metrics (connector.metrics)
    out.seek(0)
    return out


def _pins(session: requests.Session) -> bool:
    """Whether `session` connects pinned requests to their address (both schemes)."""
    return all(isinstance(session.get_adapter(f"{scheme}://pin.invalid/"), PinningAdapter)
               for scheme in ("http", "https"))


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
