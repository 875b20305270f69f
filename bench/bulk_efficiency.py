"""Bulk efficiency: an initial sync of N assets over the 3 demo families.

Target (proof issue): mean assets per PIM asset-write request ≥ 90 on 20,000 assets, where
the skeleton's approach (one request per asset) would cost one request per pushed asset.

    .venv/bin/python bench/bulk_efficiency.py --assets 20000

One worker on all queues (the demo's layout, -c 2 by default), the sandbox PIM with its
default limits (4 concurrent requests per connection, no added latency).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ALL_QUEUES, Harness, add_transport_args, emit, pim_writes

TARGET = 90.0


def per_family(log: list[dict[str, Any]], since: float) -> dict[str, dict[str, int]]:
    """Assets and bulk requests per family, from the PIM's request log."""
    requests: Counter[str] = Counter()
    assets: Counter[str] = Counter()
    for r in log:
        path = str(r.get("path", ""))
        if r.get("t", 0) < since or r.get("method") != "PATCH" or not path.endswith("/assets"):
            continue
        family = path.rstrip("/").split("/")[-2]
        requests[family] += 1
        assets[family] += int(r.get("items") or 0)
    return {f: {"requests": requests[f], "assets": assets[f]} for f in sorted(requests)}


def run(assets: int, concurrency: int) -> tuple[dict[str, Any], list[str]]:
    with Harness(assets, label="bench-bulk") as world:
        world.start_worker(ALL_QUEUES, concurrency)
        world.wait_workers()
        assert world.pim is not None
        before = world.pim.counters()
        since = time.time()
        result = world.run()
        after = world.pim.counters()
        families = per_family(world.pim.admin("log"), since)
    counts = result.counts
    bulk_requests = after["bulk_asset_requests"] - before["bulk_asset_requests"]
    bulk_assets = after["bulk_assets_total"] - before["bulk_assets_total"]
    writes = pim_writes(after) - pim_writes(before)
    media_uploads = after["media_uploads"] - before["media_uploads"]
    option_writes = after["option_writes"] - before["option_writes"]
    mean = round(bulk_assets / bulk_requests, 2) if bulk_requests else 0.0
    pushed = int(counts.get("created", 0)) + int(counts.get("updated", 0))
    out = {
        "assets": assets,
        "state": result.report["state"],
        "pushed": pushed,
        "bulk_requests": bulk_requests,
        "bulk_assets": bulk_assets,
        "mean_assets_per_request": mean,
        "run_report_mean": counts.get("mean_assets_per_request"),
        "max_assets_per_request": after["max_assets_per_bulk"],
        "request_sizes": after["bulk_asset_sizes"],
        "families": families,
        "pim_write_requests": writes,
        "media_uploads": media_uploads,
        "option_writes": option_writes,
        "skeleton_requests": pushed,
        "requests_saved": pushed - bulk_requests,
        "counts": {k: counts.get(k) for k in ("seen", "skipped", "quarantined", "created",
                                              "updated", "failed")},
        "duration_s": round(result.duration, 2),
        "worker_cpu_s": round(result.worker_cpu, 2),
        "target": TARGET,
        "met": mean >= TARGET and result.report["state"] == "succeeded",
    }
    lines = [
        f"assets in the DAM: {assets}; pushed: {pushed} over {len(families)} families",
        f"bulk asset requests: {bulk_requests} → mean {mean} assets/request "
        f"(target ≥ {TARGET}: {'MET' if out['met'] else 'MISSED'})",
        f"skeleton (one request per asset): {pushed} requests; saved {pushed - bulk_requests}",
        f"all PIM write requests: {writes} (media file uploads: {media_uploads}, option "
        f"creations: {option_writes})",
        f"per family: {families}",
        f"run: {result.report['state']} in {result.duration:.1f} s",
    ]
    return out, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    out, lines = run(args.assets, args.concurrency)
    emit("bulk_efficiency", out, lines)
    return 0 if out["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
