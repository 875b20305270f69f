"""Cost of doing nothing: a re-sync after an initial sync, nothing changed in the DAM.

Target (proof issue), on 20,000 assets: zero PIM writes, at most the DAM requests of the
changed-since query, under 3 s from start_run to the run's finished state.

    .venv/bin/python bench/noop_resync.py --assets 20000

The incremental re-sync (the scheduled case: changed since the watermark) is the target.
`--full` also measures a full re-sync of the same unchanged assets (the watermark
ignored: every asset fetched and transformed, compared by content hash, nothing written),
which is what a forced reconciliation costs; it is reported, not judged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ALL_QUEUES,
    Harness,
    RunResult,
    add_transport_args,
    diff_counters,
    emit,
    pim_writes,
)

TARGET_SECONDS = 3.0


def _dam_api_requests(counters: dict[str, Any]) -> dict[str, int]:
    by_path: dict[str, int] = counters.get("by_path") or {}
    return {k: v for k, v in by_path.items() if not k.startswith("/media")}


def _measure(world: Harness, **kw: Any) -> tuple[RunResult, dict[str, Any]]:
    assert world.pim is not None and world.dam is not None
    pim0, dam0 = world.pim.counters(), world.dam.counters()
    result = world.run(poll=0.02, **kw)
    pim1, dam1 = world.pim.counters(), world.dam.counters()
    dam = diff_counters(dam1, dam0)
    figures = {
        "state": result.report["state"],
        "duration_s": round(result.duration, 3),
        "wall_s": round(result.wall, 3),
        "pim_writes": pim_writes(pim1) - pim_writes(pim0),
        "pim_requests": diff_counters(pim1, pim0)["requests"],
        "dam_requests": dam["requests"],
        "dam_requests_by_path": _dam_api_requests(dam),
        "counts": {k: result.counts.get(k) for k in (
            "seen", "unchanged", "created", "updated", "skipped", "quarantined", "requests")},
        "worker_cpu_s": round(result.worker_cpu, 2),
    }
    return result, figures


def run(assets: int, concurrency: int, full: bool) -> tuple[dict[str, Any], list[str]]:
    with Harness(assets, label="bench-noop") as world:
        world.start_worker(ALL_QUEUES, concurrency)
        world.wait_workers()
        initial = world.run()
        if initial.report["state"] != "succeeded":
            raise RuntimeError(f"initial sync failed: {initial.report}")
        _, resync = _measure(world)
        full_figures = _measure(world, full=True)[1] if full else None
    # the changed-since query is one list page (nothing changed) + the deletions query
    allowed_dam = 2
    met = (resync["state"] == "succeeded" and resync["pim_writes"] == 0
           and resync["dam_requests"] <= allowed_dam and resync["duration_s"] < TARGET_SECONDS)
    out = {
        "assets": assets,
        "initial_duration_s": round(initial.duration, 2),
        "initial_pushed": int(initial.counts.get("created", 0)),
        "resync": resync,
        "full_resync": full_figures,
        "target_seconds": TARGET_SECONDS,
        "allowed_dam_requests": allowed_dam,
        "met": met,
    }
    lines = [
        f"initial sync: {out['initial_pushed']} assets pushed in {out['initial_duration_s']} s",
        f"re-sync: {resync['state']} in {resync['duration_s']} s (start_run → finished; "
        f"seen from here {resync['wall_s']} s); PIM writes {resync['pim_writes']}; "
        f"DAM requests {resync['dam_requests']} {resync['dam_requests_by_path']}",
        f"target: 0 writes, ≤ {allowed_dam} DAM requests (changed-since page + deletions), "
        f"< {TARGET_SECONDS} s: {'MET' if met else 'MISSED'}",
    ]
    if full_figures:
        lines.append(
            f"full re-sync (informational): {full_figures['duration_s']} s, PIM writes "
            f"{full_figures['pim_writes']}, DAM requests {full_figures['dam_requests']}, "
            f"unchanged {full_figures['counts']['unchanged']}"
        )
    return out, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also time a full re-sync")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    out, lines = run(args.assets, args.concurrency, args.full)
    emit("noop_resync", out, lines)
    return 0 if out["resync"]["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
