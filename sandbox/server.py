"""Run a WSGI app on 127.0.0.1 like a production server: threaded, HTTP/1.1 keep-alive, TLS
on demand; in a background thread (tests) or in the foreground (CLI).

Served by cheroot rather than werkzeug's development server, which closes the connection
after every response: a sandbox that never keeps a connection open cannot show whether a
client reuses its connections, and without TLS it never costs the handshakes every real
Akeneo or DAM does. Each accepted connection and each TLS handshake is counted in a
`ConnectionCounter`, which the sandboxes add to their `/_sandbox/counters`.

With `tls=True` the server presents a certificate issued at start by a local CA
(`SandboxCA`, made with trustme); a client trusts it through the CA file, e.g.
`REQUESTS_CA_BUNDLE=<SandboxCA.bundle>`.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    from cheroot import wsgi
    from cheroot.makefile import MakeFile
    from cheroot.server import HTTPConnection
    from cheroot.ssl.builtin import BuiltinSSLAdapter
    from cheroot.workers import threadpool
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the sandbox servers need cheroot (and trustme for --tls): "
        "pip install 'dam-akeneo-connector[sandbox]'"
    ) from exc

#: Worker threads per server: more than any test or benchmark has requests in flight, so
#: that the sandboxes' own concurrency limits (429s), not the thread pool, decide.
THREADS = 64
#: Seconds an idle keep-alive connection stays open (nginx's default is 75).
IDLE_TIMEOUT = 60.0


class ConnectionCounter:
    """Connections accepted and TLS handshakes completed, in total and per client address."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}

    def _add(self, client: str, name: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(client, {"connections": 0, "tls_handshakes": 0})
            counts[name] += 1

    def connection(self, client: str) -> None:
        self._add(client, "connections")

    def handshake(self, client: str) -> None:
        self._add(client, "tls_handshakes")

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        """`connections`, `tls_handshakes` and `connections_by_client` (address → both)."""
        with self._lock:
            by_client = {client: dict(counts) for client, counts in self._counts.items()}
        return {
            "connections": sum(c["connections"] for c in by_client.values()),
            "tls_handshakes": sum(c["tls_handshakes"] for c in by_client.values()),
            "connections_by_client": by_client,
        }


class SandboxCA:
    """A local certificate authority (trustme) kept in a directory: `bundle` is the CA
    certificate a client trusts; `issue()` writes a server certificate for some hosts.

    Given a directory that already holds `ca.pem` and `ca.key`, it reuses that CA, so that
    a sandbox PIM and a sandbox DAM started apart are trusted through one CA file.
    """

    def __init__(self, directory: Path | str | None = None) -> None:
        import trustme

        self._owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sandbox-ca-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.bundle = self.directory / "ca.pem"
        key = self.directory / "ca.key"
        # Processes started together with one directory (a sandbox PIM and DAM) must end
        # up with one CA: create-or-load under an exclusive lock on the directory.
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.bundle.is_file() and key.is_file():
                self._ca = trustme.CA.from_pem(self.bundle.read_bytes(), key.read_bytes())
            else:
                self._ca = trustme.CA(organization_name="connector sandbox")
                _write_private(key, self._ca.private_key_pem.bytes())
                _write_private(self.bundle, self._ca.cert_pem.bytes())

    def issue(self, *hosts: str) -> tuple[Path, Path]:
        """A server certificate for `hosts` (names or IP addresses): (cert chain, key) files,
        under names no other process of the same directory uses."""
        cert = self._ca.issue_cert(*dict.fromkeys(hosts))
        fd, name = tempfile.mkstemp(prefix="server-", suffix=".key", dir=self.directory)
        key = Path(name)
        with os.fdopen(fd, "wb") as out:  # mkstemp: mode 0600
            out.write(cert.private_key_pem.bytes())
        chain = key.with_suffix(".pem")
        chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        return chain, key

    def remove(self) -> None:
        """Delete the directory if this object made it (a given one is the caller's)."""
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)


class ServedSandbox:
    """What every sandbox shares: its WSGI app (`app`) served on a BackgroundServer that
    counts connections and handshakes into the sandbox's own `connections`."""

    connections: ConnectionCounter

    @property
    def app(self) -> Callable[..., Any]:
        raise NotImplementedError

    def server(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False,
        ca: SandboxCA | None = None,
    ) -> BackgroundServer:
        """A server of this sandbox, bound but not started."""
        return BackgroundServer(self.app, host, port, tls=tls, ca=ca, counter=self.connections)

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: bool = False,
        ca: SandboxCA | None = None,
    ) -> BackgroundServer:
        """Start serving in a background thread; call `.stop()` on the result.
        `tls=True`: HTTPS, trusted through the result's `ca_bundle`."""
        return self.server(host, port, tls=tls, ca=ca).start()


def _write_private(path: Path, data: bytes) -> None:
    """Write `path` whole or not at all (a reader never sees half a PEM), mode 0600."""
    fd, name = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(name, path)


_default_ca: SandboxCA | None = None
_default_ca_lock = threading.Lock()


def default_ca() -> SandboxCA:
    """The CA of this process (in a temporary directory, removed at exit): every TLS server
    started without its own CA uses it, so one `bundle` trusts them all."""
    global _default_ca
    with _default_ca_lock:
        if _default_ca is None:
            _default_ca = SandboxCA()
            atexit.register(_default_ca.remove)
        return _default_ca


class _CountingSSLAdapter(BuiltinSSLAdapter):
    """cheroot's ssl adapter, counting the handshakes that complete (in `wrap`)."""

    def __init__(self, counter: ConnectionCounter, cert: Path, key: Path) -> None:
        super().__init__(str(cert), str(key))
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._counter = counter

    def wrap(self, sock: socket.socket) -> tuple[Any, dict[str, Any]]:
        peer = _peer(sock)
        self._counter.connection(peer)  # accepted, whether or not the handshake succeeds
        wrapped, environ = super().wrap(sock)  # type: ignore[no-untyped-call]
        self._counter.handshake(peer)
        return wrapped, environ


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except (OSError, IndexError):
        return "?"


class _CountedConnection(HTTPConnection):
    """cheroot's connection, counted once when accepted (keep-alive reuses it); over TLS
    the adapter counts it, before the handshake."""

    def __init__(self, server: _Server, sock: socket.socket, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        if server.ssl_adapter is None:
            server.counter.connection(_peer(sock))


class _Pool(threadpool.ThreadPool):
    """cheroot's thread pool, started without its 0.1 s polling (tests start many servers),
    of daemon threads (a server a test forgets to stop must not keep the process alive;
    the serving thread is a daemon too, and so the threads it starts)."""

    def _spawn_worker(self) -> threadpool.WorkerThread:
        worker = threadpool.WorkerThread(self.server)  # type: ignore[no-untyped-call]
        worker.name = f"sandbox {worker.name}"
        worker.daemon = True
        worker.start()
        return worker

    def grow(self, amount: int) -> None:
        threads: list[Any] = self._threads  # type: ignore[attr-defined]
        budget = max(self.max - len(threads), 0) if self.max > 0 else amount
        workers = [self._spawn_worker() for _ in range(min(amount, budget))]
        for worker in workers:
            while not worker.ready:
                time.sleep(0.001)
        threads.extend(workers)


class _Server(wsgi.Server):
    """cheroot's WSGI server with counted connections, quiet about dropped peers."""

    ConnectionClass = _CountedConnection

    def __init__(self, counter: ConnectionCounter, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counter = counter
        self.requests = _Pool(self, min=self.requests.min, max=self.requests.max)

    @staticmethod
    def bind_socket(socket_: Any, bind_addr: Any) -> Any:
        # SO_REUSEADDR on ephemeral ports too (cheroot skips them): a test that stops a
        # sandbox and serves it again on the port it had must not find the port held by
        # the old server's TIME_WAIT connections (Linux wants the option on both sides).
        if isinstance(bind_addr, tuple):
            socket_.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        socket_.bind(bind_addr)
        return socket_

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        # a client that drops a connection (or a handshake) is not the sandbox's error
        if level >= 40 or traceback:
            super().error_log(msg, level, traceback)


class BackgroundServer:
    """A threaded keep-alive HTTP(S) server bound to `host:port` (port 0 = a free one).

    `tls=True` serves HTTPS with a certificate from `ca` (default: this process's
    `default_ca()`) for `host`, the loopback names and any extra `names`; `ca_bundle` is
    then the file a client must trust. Connections and handshakes are counted in
    `counter` (a new one unless given).
    """

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        ca: SandboxCA | None = None,
        counter: ConnectionCounter | None = None,
        names: tuple[str, ...] = (),
    ) -> None:
        self.counter = counter or ConnectionCounter()
        self.host = host
        self.tls = tls
        self.ca: SandboxCA | None = None
        self._server = _Server(
            self.counter, (host, port), app, numthreads=THREADS, server_name="sandbox"
        )
        self._server.timeout = IDLE_TIMEOUT
        # every client may keep its connections (cheroot's stub says int; None = no limit)
        self._server.keep_alive_conn_limit = None  # type: ignore[assignment]
        self._server.expiration_interval = 0.05  # stop() answers within this
        self._server.shutdown_timeout = 2
        if tls:
            self.ca = ca or default_ca()
            chain, key = self.ca.issue(*names, *_cert_hosts(host))
            self._server.ssl_adapter = _CountingSSLAdapter(self.counter, chain, key)
        self._server.prepare()  # binds now: the port is known before start()
        self.port = int(self._server.bind_addr[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_bundle(self) -> Path | None:
        """The CA file a client trusts this server with (None over plain HTTP)."""
        return self.ca.bundle if self.ca is not None else None

    def start(self) -> BackgroundServer:
        self._thread = threading.Thread(
            target=self._server.serve, name=f"sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (KeyboardInterrupt stops the server)."""
        try:
            self._server.serve()
        finally:
            self._server.stop()

    def stop(self) -> None:
        self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _cert_hosts(host: str) -> list[str]:
    """The names a certificate for `host` covers: it, and the loopback names."""
    hosts = ["127.0.0.1", "localhost", "::1"]
    if host in ("", "0.0.0.0", "::"):
        return [socket.gethostname(), *hosts]
    return [host, *hosts]
