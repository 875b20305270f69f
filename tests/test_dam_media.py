"""SafeDownloader: allow-list, address checks, redirects, size cap, credentials."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.wrappers import Request, Response

from connector.dam import media as media_module
from connector.dam.base import TransientDamError
from connector.dam.media import (
    MediaError,
    MediaRefusedError,
    MediaTooLargeError,
    SafeDownloader,
    downloader_for,
)
from sandbox.dam import DamSandbox
from sandbox.server import BackgroundServer


class Recorder:
    """A tiny WSGI app: records every request, serves canned bodies."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.seen.append({"path": request.path, "auth": request.headers.get("Authorization", "")})
        if request.path == "/big-chunked":
            def chunks() -> Iterator[bytes]:
                for _ in range(100):
                    yield b"x" * 1000
            response = Response(chunks(), direct_passthrough=True)  # no Content-Length
        elif request.path == "/redirect":
            response = Response("", 302, headers={"Location": request.args["to"]})
        elif request.path == "/missing":
            response = Response("no", 404)
        elif request.path == "/boom":
            response = Response("no", 503)
        else:
            response = Response(b"hello bytes")
        return response(environ, start_response)


@pytest.fixture(scope="module")
def dam() -> Iterator[tuple[DamSandbox, str]]:
    sb = DamSandbox(assets=20, shape="bynder", seed=3, auth="any", bad=False)
    server = sb.serve()
    yield sb, server.url
    server.stop()


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, str]]:
    app = Recorder()
    server = BackgroundServer(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture(scope="module")
def other_loopback() -> Iterator[tuple[Recorder, str]]:
    """A server on 127.0.0.2 (still loopback): proves refused hosts get no connection."""
    app = Recorder()
    try:
        server = BackgroundServer(app, host="127.0.0.2").start()
    except OSError:  # pragma: no cover - platform without 127.0.0.0/8 routing
        pytest.skip("cannot bind 127.0.0.2")
    yield app, server.url
    server.stop()


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def fetch(downloader: SafeDownloader, url: str) -> None:
    with downloader.download(url):
        pass


def fake_dns(table: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]
    return resolve


def test_downloads_from_the_dams_own_host(dam, own_tempdir):
    sb, url = dam
    asset_id = next(sb.ids())
    rec = sb.record(asset_id)
    downloader = downloader_for(url, max_bytes=1_000_000)
    with downloader.download(f"{url}/media/{asset_id}/{rec['filename']}") as path:
        data = path.read_bytes()
        assert path.parent == own_tempdir
    assert len(data) == rec["fileSize"] and data[:4] in (b"\x89PNG", b"%PDF", b"\x00\x00\x00\x18",
                                                        b"\xff\xd8\xff\xe0")
    assert list(own_tempdir.iterdir()) == []  # the temporary file is gone


def test_other_loopback_address_refused_without_connecting(dam, other_loopback):
    _, url = dam
    app, other_url = other_loopback
    downloader = downloader_for(url, max_bytes=1000)
    with pytest.raises(MediaRefusedError, match=r"127\.0\.0\.2 is not in the allowed hosts"):
        fetch(downloader, other_url + "/file.png")
    assert app.seen == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://metadata.internal/computeMetadata/v1/", "metadata"),
        ("http://metadata.google.internal/", "metadata"),
        ("ftp://127.0.0.1/file", "only http and https"),
        ("://broken-url/x.png", "only http and https"),
        ("http:///nohost", "no host"),
    ],
)
def test_refusals_even_when_listed(url, reason):
    downloader = SafeDownloader(
        ["169.254.169.254", "metadata.internal", "metadata.google.internal", "127.0.0.1"],
        1000,
        resolver=fake_dns({"metadata.internal": ["169.254.169.254"]}),
    )
    with pytest.raises(MediaRefusedError, match=reason), downloader.download(url):
        pass


def test_allowed_name_resolving_to_private_or_link_local_is_refused():
    downloader = SafeDownloader(
        ["cdn.example.com", "files.example.com", "rebind.example.com", "ok.example.com"],
        1000,
        resolver=fake_dns({
            "cdn.example.com": ["127.0.0.2"],
            "files.example.com": ["10.1.2.3"],
            "rebind.example.com": ["93.184.216.34", "169.254.10.1"],
            "ok.example.com": ["93.184.216.34"],
        }),
    )
    with pytest.raises(MediaRefusedError, match=r"non-public address 127\.0\.0\.2"):
        downloader.check_url("http://cdn.example.com/a.png")
    with pytest.raises(MediaRefusedError, match=r"non-public address 10\.1\.2\.3"):
        downloader.check_url("https://files.example.com/a.png")
    with pytest.raises(MediaRefusedError, match="link-local"):
        downloader.check_url("https://rebind.example.com/a.png")
    downloader.check_url("https://ok.example.com/a.png")  # public: fine
    with pytest.raises(MediaRefusedError, match="cannot resolve"):
        SafeDownloader(["nxdomain.test"], 1, resolver=fake_dns({})).check_url("http://nxdomain.test/")


def test_wildcard_allow_list_and_trusted_private_host():
    downloader = SafeDownloader(["*.example.com"], 1000, private_hosts=["dam.example.com"],
                                resolver=fake_dns({"dam.example.com": ["10.0.0.5"],
                                                   "x.example.com": ["10.0.0.6"]}))
    downloader.check_url("http://dam.example.com/a")
    with pytest.raises(MediaRefusedError, match="non-public"):
        downloader.check_url("http://x.example.com/a")
    with pytest.raises(MediaRefusedError, match="not in the allowed hosts"):
        downloader.check_url("http://example.org/a")


def test_redirect_to_disallowed_host_refused(dam, other_loopback):
    sb, url = dam
    app, other_url = other_loopback
    downloader = downloader_for(url, max_bytes=100_000)
    with pytest.raises(MediaRefusedError, match=r"127\.0\.0\.2"):
        fetch(downloader, f"{url}/_sandbox/redirect?to={other_url}/stolen")
    with pytest.raises(MediaRefusedError, match="metadata"):
        fetch(downloader, f"{url}/_sandbox/redirect?to=http://169.254.169.254/x")
    assert app.seen == []
    # a redirect that stays on the DAM's host is followed
    asset_id = next(sb.ids())
    target = f"/media/{asset_id}/{sb.record(asset_id)['filename']}"
    with downloader.download(f"{url}/_sandbox/redirect?to={target}") as path:
        assert path.stat().st_size == sb.record(asset_id)["fileSize"]


def test_credentials_not_sent_to_another_origin_after_redirect(recorder):
    app, url = recorder
    app.seen.clear()
    other = url.replace("127.0.0.1", "localhost")  # same machine, different origin
    downloader = SafeDownloader(["127.0.0.1", "localhost"], 1000,
                                private_hosts=["localhost"])
    with downloader.download(f"{url}/redirect?to={other}/file",
                             headers={"Authorization": "Bearer s3cr3t"}) as path:
        assert path.read_bytes() == b"hello bytes"
    assert [s["auth"] for s in app.seen] == ["Bearer s3cr3t", ""]


def test_size_cap_on_content_length_and_on_actual_bytes(dam, recorder, own_tempdir):
    sb, url = dam
    asset_id = next(sb.ids())
    media = f"{url}/media/{asset_id}/{sb.record(asset_id)['filename']}"
    with pytest.raises(MediaTooLargeError, match="Content-Length"):
        fetch(downloader_for(url, max_bytes=100), media)
    _, rec_url = recorder
    with pytest.raises(MediaTooLargeError, match="more than the 5000-byte cap"):
        fetch(SafeDownloader(["127.0.0.1"], 5000), rec_url + "/big-chunked")
    assert list(own_tempdir.iterdir()) == []  # partial file removed
    with SafeDownloader(["127.0.0.1"], 100_000).download(rec_url + "/big-chunked") as path:
        assert path.stat().st_size == 100_000


def test_http_errors(recorder):
    _, url = recorder
    downloader = SafeDownloader(["127.0.0.1"], 1000)
    with pytest.raises(MediaError, match="HTTP 404"), downloader.download(url + "/missing"):
        pass
    with pytest.raises(TransientDamError, match="HTTP 503"), downloader.download(url + "/boom"):
        pass
    with pytest.raises(TransientDamError, match="failed"):
        fetch(downloader, "http://127.0.0.1:9/x")


def test_messages_do_not_leak_query_strings():
    downloader = SafeDownloader(["cdn.example.com"], 1000)
    with pytest.raises(MediaRefusedError) as err:
        downloader.check_url("http://evil.example.com/a.png?signature=TOPSECRET")
    assert "TOPSECRET" not in str(err.value)


def _no_temporary_files(monkeypatch) -> None:
    def refuse(*_args, **_kw):
        raise AssertionError("a temporary file was made for a small download")

    for name in ("mkstemp", "TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)


def test_a_small_download_is_opened_in_memory_without_a_temporary_file(
        dam, recorder, monkeypatch):
    # per media file, a temporary file (mkstemp, write, reopen, unlink) cost more CPU than
    # the bytes it held (bench/media_path.py): a body within in_memory_max stays in memory
    sb, url = dam
    asset_id = next(sb.ids())
    rec = sb.record(asset_id)
    _no_temporary_files(monkeypatch)
    downloader = downloader_for(url, max_bytes=1_000_000)
    with downloader.open(f"{url}/media/{asset_id}/{rec['filename']}") as stream:
        assert len(stream.read()) == rec["fileSize"]
        stream.seek(0)  # seekable: an upload retry reads it again
        assert len(stream.read()) == rec["fileSize"]
    _, rec_url = recorder  # no Content-Length: chunks that stay under the threshold
    with SafeDownloader(["127.0.0.1"], 200_000, in_memory_max=100_000).open(
            rec_url + "/big-chunked") as stream:
        assert stream.read() == b"x" * 100_000


def test_a_download_past_in_memory_max_spills_to_a_file_gone_on_close(
        dam, recorder, own_tempdir, monkeypatch):
    _, rec_url = recorder
    downloader = SafeDownloader(["127.0.0.1"], 200_000, in_memory_max=10_000)
    written: list[int] = []

    class Spy(io.BytesIO):
        def write(self, data) -> int:  # what is held in memory at once
            written.append(len(self.getbuffer()) + len(data))
            return super().write(data)

    monkeypatch.setattr(media_module, "BytesIO", Spy)
    with downloader.open(rec_url + "/big-chunked") as stream:  # 100 chunks of 1000 bytes
        assert not isinstance(stream, io.BytesIO)
        assert len(list(own_tempdir.iterdir())) <= 1  # anonymous: unlinked already
        assert stream.read() == b"x" * 100_000
    assert max(written) <= 10_000  # never more than the threshold in memory
    assert list(own_tempdir.iterdir()) == []
    sb, url = dam  # an announced Content-Length past the threshold goes to a file at once
    asset_id = next(sb.ids())
    rec = sb.record(asset_id)
    written.clear()
    with SafeDownloader(["127.0.0.1"], 1_000_000, in_memory_max=100).open(
            f"{url}/media/{asset_id}/{rec['filename']}") as stream:
        assert len(stream.read()) == rec["fileSize"]
    assert written == []
    with pytest.raises(MediaTooLargeError, match="more than the 5000-byte cap"):
        SafeDownloader(["127.0.0.1"], 5000, in_memory_max=1000).open(rec_url + "/big-chunked")
    assert list(own_tempdir.iterdir()) == []
