"""Memory: worker and fetch RSS after a large sync vs after a small one.

Target (proof issue): the RSS of the worker processes after 100,000 assets is within 10 %
of their RSS after 10,000, and the fetch task's memory does not depend on the number of
assets (it streams pages into bounded chunks).

    .venv/bin/python bench/memory.py --sizes 10000,100000

Each size gets a fresh world (sandbox DAM of that size, empty PIM, new namespace) and two
workers, so that the fetch task's process can be told apart: `-Q fetch -c 1` (its one pool
child runs every fetch) and `-Q transform,push,media -c 2`. RSS is sampled every second
during the run (peak) and once after it (settled), per worker tree (main + pool children)
and for the tree's largest process. Note: celeryconfig recycles a pool child after 1,000
tasks (worker_max_tasks_per_child), which a large run reaches and a small one does not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Harness, add_transport_args, emit
from tasks import routing

TARGET = 0.10
MB = 1024 * 1024


def measure(assets: int) -> dict[str, Any]:
    with Harness(assets, label="bench-mem") as world:
        fetch = world.start_worker(routing.FETCH_QUEUE, 1, name="fetch")
        other = world.start_worker(
            ",".join((routing.TRANSFORM_QUEUE, routing.PUSH_QUEUE, routing.MEDIA_QUEUE)), 2,
            name="tpm")
        world.wait_workers()
        idle = {"fetch": sum(fetch.tree.rss().values()), "other": sum(other.tree.rss().values())}
        pids_before = set(fetch.tree.rss()) | set(other.tree.rss())
        result = world.run(sample_rss=True, poll=0.2)
        after_fetch, after_other = fetch.tree.rss(), other.tree.rss()
        # a pool child replaced during the run (max_tasks_per_child) would hide growth
        replaced = len(pids_before - (set(after_fetch) | set(after_other)))
    peak = result.rss_peak
    return {
        "assets": assets,
        "state": result.report["state"],
        "duration_s": round(result.duration, 1),
        "pushed": int(result.counts.get("created", 0)),
        "idle_mb": {k: round(v / MB, 1) for k, v in idle.items()},
        "fetch_tree_after_mb": round(sum(after_fetch.values()) / MB, 1),
        "fetch_tree_peak_mb": round(peak.get(fetch.name, 0) / MB, 1),
        "fetch_process_peak_mb": round(peak.get(f"{fetch.name}:max", 0) / MB, 1),
        "other_tree_after_mb": round(sum(after_other.values()) / MB, 1),
        "other_tree_peak_mb": round(peak.get(other.name, 0) / MB, 1),
        "other_process_peak_mb": round(peak.get(f"{other.name}:max", 0) / MB, 1),
        "pool_children_replaced": replaced,
        "workers_after_mb": round((sum(after_fetch.values()) + sum(after_other.values())) / MB, 1),
    }


def growth(small: float, large: float) -> float:
    return round((large - small) / small, 3) if small else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="two DAM sizes, small,large")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    small_n, large_n = (int(x) for x in args.sizes.split(","))
    small, large = measure(small_n), measure(large_n)
    compared = ("workers_after_mb", "fetch_tree_after_mb", "fetch_process_peak_mb",
                "other_tree_after_mb", "other_tree_peak_mb")
    changes = {k: growth(small[k], large[k]) for k in compared}
    met = (all(abs(changes[k]) <= TARGET for k in
               ("workers_after_mb", "fetch_tree_after_mb", "fetch_process_peak_mb"))
           and small["state"] == large["state"] == "succeeded")
    out = {"small": small, "large": large, "growth": changes, "target": TARGET, "met": met}
    lines = [f"{s['assets']:>7} assets: {s['state']} in {s['duration_s']} s; workers after "
             f"{s['workers_after_mb']} MB; fetch tree after {s['fetch_tree_after_mb']} MB, "
             f"fetch process peak {s['fetch_process_peak_mb']} MB; other tree after "
             f"{s['other_tree_after_mb']} MB, peak {s['other_tree_peak_mb']} MB; pool children "
             f"replaced during the run: {s['pool_children_replaced']}"
             for s in (small, large)]
    lines.append(f"growth {small_n} → {large_n}: {changes} (target within ±{TARGET:.0%} for "
                 f"workers after, fetch after, fetch peak: {'MET' if met else 'MISSED'})")
    emit("memory", out, lines)
    return 0 if met or small["state"] == large["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
