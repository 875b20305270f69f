"""Overhead against a straight line: the pipeline's CPU per asset vs the plain loop's.

Target (proof issue): the pipeline's total CPU seconds per asset (user+sys of every
worker process tree, prefork children included, measured around the run; sandboxes
excluded) ≤ 2 x the floor of bench/reference_sync.py, measured in the same invocation
against the same sandbox DAM and a reset sandbox PIM (both sync into an empty PIM).

    .venv/bin/python bench/overhead.py --assets 20000

CPU seconds per asset are what a fleet pays whatever the wall clock, so they are not
distorted by waiting; they are still distorted by a loaded machine (cache, scheduler),
so both sides are measured back to back. The floor runs first, in this process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ALL_QUEUES, Harness, add_transport_args, emit
from bench.reference_sync import reference_sync

TARGET_RATIO = 2.0


def run(assets: int, concurrency: int) -> tuple[dict[str, Any], list[str]]:
    with Harness(assets, label="bench-ovh") as world:
        floor = reference_sync(world, f"{world.namespace}-ref")
        assert world.pim is not None
        world.pim.post("reset")           # an empty PIM again: the pipeline creates too
        world.apply_structure()
        world.start_worker(ALL_QUEUES, concurrency)
        world.wait_workers()
        result = world.run()
    counts = result.counts
    seen = int(counts.get("seen") or 0)
    # both per DAM asset: the loop and the run read the same DAM (bad records included)
    pipeline_ms = result.worker_cpu / assets * 1000 if assets else 0.0
    floor_ms = float(floor["cpu_s"]) / assets * 1000 if assets else 0.0
    ratio = pipeline_ms / floor_ms if floor_ms else 0.0
    met = result.report["state"] == "succeeded" and 0 < ratio <= TARGET_RATIO
    out: dict[str, Any] = {
        "assets": assets,
        "floor": {**floor, "cpu_ms_per_dam_asset": round(floor_ms, 4)},
        "pipeline": {
            "state": result.report["state"],
            "seen": seen,
            "pushed": int(counts.get("created", 0)) + int(counts.get("updated", 0)),
            "cpu_s": round(result.worker_cpu, 3),
            "cpu_ms_per_asset": round(pipeline_ms, 4),
            "duration_s": round(result.duration, 2),
            "sandbox_cpu_s": result.sandbox_cpu,
            "worker_concurrency": concurrency,
        },
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "met": met,
    }
    lines = [
        f"floor (plain loop): {floor['cpu_s']} s CPU for {assets} DAM assets = "
        f"{floor_ms:.3f} ms/asset ({floor['wall_s']} s wall)",
        f"pipeline (worker trees): {out['pipeline']['cpu_s']} s CPU for {assets} DAM assets = "
        f"{pipeline_ms:.3f} ms/asset ({out['pipeline']['duration_s']} s wall)",
        f"ratio {ratio:.2f} (target ≤ {TARGET_RATIO}: {'MET' if met else 'MISSED'})",
    ]
    return out, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    add_transport_args(parser)
    args = parser.parse_args(argv)
    out, lines = run(args.assets, args.concurrency)
    emit("overhead", out, lines)
    return 0 if out["pipeline"]["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
