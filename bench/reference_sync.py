"""The floor: a plain loop, no Celery, that makes the same DAM and PIM calls as a run.

DamSource pages → Transformer (the connector's own, with the same media handler and
structure cache) → AkeneoClient.upsert_assets in batches of 100 per family. No run
bookkeeping, no hashes, no task messages: what any sync must at least spend. Its CPU
seconds per asset are the floor bench/overhead.py compares the pipeline with.

    .venv/bin/python bench/reference_sync.py --assets 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SOURCE, Harness, add_transport_args, delete_namespace, emit
from connector.dam.factory import build_source
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.transform.result import Quarantined, TransformedAsset

BATCH = 100


def reference_sync(world: Harness, namespace: str) -> dict[str, Any]:
    """Sync every DAM asset of `world` into its PIM with a straight loop, in this process.

    CPU is this process's user+sys around the loop (the sandboxes are other processes and
    nothing else runs here meanwhile). `namespace` keeps its Redis state (structure cache,
    media hashes, PIM budget) apart from the pipeline's.
    """
    assert world.config is not None
    redis = get_redis(world.redis_url)
    source = build_source(world.config.source(SOURCE))
    client = world.client(namespace)
    services = Services(world.config, redis, Keys(namespace), client=client,
                        sources={SOURCE: source})
    counts = {"seen": 0, "bad": 0, "quarantined": 0, "skipped": 0, "pushed": 0, "ok": 0,
              "requests": 0}
    buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def flush(family: str) -> None:
        batch = buffers.pop(family, [])
        if batch:
            results = client.upsert_assets(family, batch)
            counts["requests"] += 1
            counts["pushed"] += len(batch)
            counts["ok"] += sum(1 for r in results if r.ok)

    try:
        cpu0, wall0 = time.process_time(), time.monotonic()
        transformer = services.transformer(SOURCE)
        for page in source.changed_since(None):
            counts["bad"] += len(page.bad)
            for asset in page.assets:
                counts["seen"] += 1
                result = transformer.transform(asset)
                if isinstance(result, TransformedAsset):
                    buffers[result.family].append(result.payload())
                    if len(buffers[result.family]) >= BATCH:
                        flush(result.family)
                elif isinstance(result, Quarantined):
                    counts["quarantined"] += 1
                else:
                    counts["skipped"] += 1
        for family in list(buffers):
            flush(family)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    finally:
        services.close()
        delete_namespace(namespace, world.redis_url)
    per_asset = cpu / counts["seen"] if counts["seen"] else 0.0
    return {**counts, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_ms_per_asset": round(per_asset * 1000, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    add_transport_args(parser)
    args = parser.parse_args(argv)
    with Harness(args.assets, label="bench-ref") as world:
        out = reference_sync(world, f"{world.namespace}-ref")
    out["assets"] = args.assets
    lines = [
        f"{out['seen']} assets seen, {out['pushed']} pushed in {out['requests']} requests "
        f"({out['ok']} ok) in {out['wall_s']} s",
        f"CPU {out['cpu_s']} s = {out['cpu_ms_per_asset']} ms per asset (the floor)",
    ]
    emit("reference_sync", out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
