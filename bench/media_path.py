"""Client CPU per media file: the connector's media path against plain `requests`.

One media file = download from the DAM, SHA-256, upload to the PIM. The connector side is
its real classes: `MediaFileHandler.media_code` over the world's REST source (SafeDownloader:
allow-list, address check, pinned connection, size cap; the DAM's budget) and an
`AkeneoClient` (fleet-wide budget slot, token, metrics, retries). The plain side is
`session.get(url).content`, `hashlib.sha256`, `session.post(files=…)` on two kept-alive
`requests.Session`s (`trust_env` off: the cheapest client), as `bench/minimal_floor.py`
does. Both send the same files to the same sandboxes over HTTPS with keep-alive, in this
process, in alternating rounds; the figure is this process's CPU (`time.process_time`)
per file. Each connector round has a fresh Redis namespace for its media records, so no
file is skipped as already uploaded.

    .venv/bin/python bench/media_path.py --files 300 --rounds 2
    .venv/bin/python bench/media_path.py --files 300 --profile 25   # + the connector's profile
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.common import DAM_TOKEN, SOURCE, Harness, add_transport_args, emit
from connector.dam.base import DamAsset
from connector.pim.client import AkeneoClient
from connector.pim.structure import Attribute
from connector.redis_conn import Keys, get_redis
from connector.transform.media import MediaFileHandler

FAMILY = "user_guides"
#: the demo's media_file attribute of user guides (examples/structure.yaml), unrestricted
ATTRIBUTE = Attribute(code="file", type="media_file")


def _files(world: Harness, count: int, verify: str | bool) -> list[DamAsset]:
    """The first `count` PDFs of the sandbox DAM whose download answers 200 (its bad
    records left out), through the source's own listing."""
    assert world.services is not None
    source = world.services.source(SOURCE)
    found: list[DamAsset] = []
    with requests.Session() as probe:
        probe.verify = verify
        probe.headers["Authorization"] = f"Bearer {DAM_TOKEN}"
        for page in source.changed_since(None):
            for asset in page.assets:
                if not asset.media_url or not (asset.filename or "").endswith(".pdf"):
                    continue
                if probe.get(asset.media_url, timeout=30).status_code == 200:
                    found.append(asset)
                if len(found) == count:
                    return found
    raise SystemExit(f"the sandbox DAM has only {len(found)} PDFs; raise --assets")


def _plain(files: list[DamAsset], pim_url: str, token: str, verify: str | bool) -> float:
    """CPU seconds of the plain-requests path for `files` (connections opened first)."""
    dam, pim = requests.Session(), requests.Session()
    for session in (dam, pim):
        session.verify = verify
        session.trust_env = False
    dam.headers["Authorization"] = f"Bearer {DAM_TOKEN}"
    pim.headers["Authorization"] = f"Bearer {token}"
    upload = f"{pim_url}/api/rest/v1/asset-media-files"

    def one(asset: DamAsset) -> str:
        got = dam.get(str(asset.media_url), timeout=60)
        got.raise_for_status()
        content = got.content
        hashlib.sha256(content).hexdigest()
        sent = pim.post(upload, files={"file": (asset.filename, content)}, timeout=60)
        sent.raise_for_status()
        return str(sent.headers["Asset-media-file-code"])

    one(files[0])  # connections and TLS, before the clock
    started = time.process_time()
    for asset in files:
        one(asset)
    spent = time.process_time() - started
    dam.close()
    pim.close()
    return spent


def _connector(world: Harness, client: AkeneoClient, files: list[DamAsset],
               profile: cProfile.Profile | None = None) -> float:
    """CPU seconds of `MediaFileHandler.media_code` for `files` (fresh media records)."""
    assert world.services is not None
    media = MediaFileHandler(world.services.source(SOURCE), client, get_redis(world.redis_url),
                             Keys(f"{world.namespace}-media-{uuid.uuid4().hex[:8]}"))
    media.media_code(files[0], FAMILY, ATTRIBUTE)  # connections, token, scripts
    started = time.process_time()
    if profile is not None:
        profile.enable()
    for asset in files:
        media.media_code(asset, FAMILY, ATTRIBUTE)
    if profile is not None:
        profile.disable()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--assets", type=int, default=0,
                        help="sandbox DAM size (default: enough for --files PDFs)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile one connector round (CPU clock); print N lines")
    add_transport_args(parser)
    args = parser.parse_args()
    assets = args.assets or max(200, args.files * 8)
    plain: list[float] = []
    conn: list[float] = []
    profiled = ""
    with Harness(assets, label="bench-media") as world:
        verify: str | bool = str(world.ca_dir / "ca.pem") if world.ca_dir else True
        files = _files(world, args.files, verify)
        client = world.client()
        token = client.tokens.get_token()
        assert world.pim is not None and world.pim.url is not None
        for _ in range(args.rounds):
            plain.append(_plain(files, world.pim.url, token, verify) / len(files) * 1000)
            conn.append(_connector(world, client, files) / len(files) * 1000)
        if args.profile:
            profile = cProfile.Profile(time.process_time)
            _connector(world, client, files, profile)
            out = io.StringIO()
            stats = pstats.Stats(profile, stream=out)
            stats.sort_stats("tottime").print_stats(args.profile)
            stats.sort_stats("cumulative").print_stats(args.profile)
            profiled = out.getvalue()
        client.close()
    load = os.getloadavg()
    sizes = sorted(int(a.properties.get("fileSize") or 0) for a in files)
    result = {
        "files": len(files),
        "rounds": args.rounds,
        "cpu_ms_per_file": {"plain": [round(v, 3) for v in plain],
                            "connector": [round(v, 3) for v in conn]},
        "ratio": [round(c / p, 2) for c, p in zip(conn, plain, strict=True)],
        "load_avg": [round(v, 2) for v in load],
    }
    lines = [
        f"{len(files)} PDFs of the sandbox DAM (median {sizes[len(sizes) // 2]} bytes), "
        f"download + SHA-256 + upload, this process's CPU per file:",
        *(f"round {i + 1}: plain requests {p:.3f} ms, connector {c:.3f} ms ({c / p:.2f} x)"
          for i, (p, c) in enumerate(zip(plain, conn, strict=True))),
        f"load average: {' '.join(f'{v:.2f}' for v in load)}",
    ]
    if profiled:
        print(profiled)
    emit("media_path", result, lines)


if __name__ == "__main__":
    main()
