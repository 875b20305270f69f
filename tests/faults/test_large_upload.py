"""Constant memory for any file size: the media upload streams the spooled file.

The uploading process runs apart (a subprocess) so that its peak RSS (VmHWM) is its own:
the sandbox PIM, in this process, keeps only the size and SHA-256 of a large upload.
Sizes: 1 GiB under CONNECTOR_TEST_SIZE=full, 256 MiB otherwise; the bound is the same.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.redis_conn import Keys, get_redis
from sandbox import harness
from sandbox.harness import SandboxSecrets
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer
from tests.faults.support import sized

SIZE = sized(1 << 30, 256 << 20)
RSS_GROWTH_LIMIT = 50 * 1024 * 1024

CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from connector.config.model import PimConfig
    from connector.pim.client import AkeneoClient
    from connector.redis_conn import Keys, get_redis
    from sandbox.harness import SandboxSecrets

    def peak() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no VmHWM")

    url, namespace, path = sys.argv[1:4]
    client = AkeneoClient(SandboxSecrets().credentials(url), PimConfig(timeout=300),
                          get_redis(), Keys(namespace))
    small = Path(path + ".small")
    small.write_bytes(b"warm up: token, connection, imports")
    client.upload_media_file(small, "small.bin")
    before = peak()
    code = client.upload_media_file(Path(path), "big.bin")
    after = peak()
    with open(path, "rb") as handle:  # the same through an open file (the spooled path)
        handle.seek(0)
        code2 = client.upload_media_file(handle, "big2.bin")
    print(json.dumps({"before": before, "after": after, "after2": peak(),
                      "codes": [code, code2]}))
    """
)


@pytest.fixture
def pim() -> Iterator[tuple[PimSandbox, BackgroundServer]]:
    sandbox = PimSandbox(PimSandboxSettings(seed=11, max_concurrency=0))
    server = sandbox.serve()
    yield sandbox, server
    server.stop()


def _zeros_sha256(size: int) -> str:
    digest, block = hashlib.sha256(), bytes(1 << 20)
    for _ in range(size // len(block)):
        digest.update(block)
    digest.update(bytes(size % len(block)))
    return digest.hexdigest()


def test_a_large_upload_streams_in_constant_memory(
    pim: tuple[PimSandbox, BackgroundServer], tmp_path: Path, namespace: str
) -> None:
    sandbox, server = pim
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(SIZE)  # sparse: no disk, and reading it costs no memory either
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.url, namespace, str(big)],
        env=harness.base_env(), capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    grown = measured["after2"] - measured["before"]
    assert grown < RSS_GROWTH_LIMIT, f"the uploader's peak RSS grew by {grown} bytes"
    expected = _zeros_sha256(SIZE)
    for code in measured["codes"]:
        stored = sandbox.store.get_media(code)
        assert (stored.size, stored.sha256) == (SIZE, expected)
        assert stored.content is None  # the sandbox kept only size and hash, not the body


def test_a_retried_upload_sends_the_whole_file_again(
    pim: tuple[PimSandbox, BackgroundServer], tmp_path: Path, namespace: str
) -> None:
    """A 401 renews the token and sends again: the stream is rewound, not half-read."""
    from connector.config.model import PimConfig
    from connector.pim.client import AkeneoClient

    sandbox, server = pim
    content = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: several send blocks
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    client = AkeneoClient(SandboxSecrets().credentials(server.url), PimConfig(timeout=30),
                          get_redis(), Keys(namespace))
    spooled = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115  # in memory
    spooled.write(content)
    spooled.seek(0)
    with client, path.open("rb") as opened, spooled:
        client.upload_media_file(path, "first.jpg")  # a token now exists
        opened.read(10)  # an open file uploads from where it stands
        for source, want in ((path, content), (opened, content[10:]), (spooled, content)):
            sandbox.expire_tokens()  # the next request answers 401, then is sent again
            code = client.upload_media_file(source, "photo.jpg")
            stored = sandbox.store.get_media(code)
            assert stored.content == want
            assert (stored.size, stored.sha256) == (len(want), hashlib.sha256(want).hexdigest())
            assert stored.filename == "photo.jpg"
    assert client.stats()["auth_retries"] == 3
