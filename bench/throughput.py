"""Throughput against the PIM's budget.

The sandbox PIM takes at most 4 concurrent requests per connection (max_concurrency=4)
and spends 300 ms on every bulk asset request (bulk_latency=0.3): at 100 assets per
request the bound is 4 / 0.3 s x 100 ≈ 1,333 assets/s. Target: ≥ 85 % of the bound and
zero 429s (sandbox counters).

    .venv/bin/python bench/throughput.py --assets 20000

Layout (default): one worker `-Q fetch,transform,media -c 2` and `--push-workers` workers
`-Q push -c --push-concurrency`; `--layout single` runs one worker on every queue instead
(the demo's layout) to show what a single pool does. Two figures: end to end (pushed
assets / run duration, start_run → finished) and the push window (first to last bulk
request in the PIM's log), which isolates the push stage from fetch/transform start-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ALL_QUEUES,
    BUDGET_PIM,
    Harness,
    add_transport_args,
    bulk_window,
    emit,
    machine_line,
)
from tasks import routing

TARGET_SHARE = 0.85


def bound(max_concurrency: float, bulk_latency: float, batch: int = 100) -> float:
    return max_concurrency / bulk_latency * batch


def measure(
    assets: int, *, push_workers: int, push_concurrency: int, other_concurrency: int,
    layout: str, bulk_latency: float, label: str = "bench-tput", staged: bool = False,
    media_connection: bool = False,
) -> dict[str, Any]:
    """One sync of `assets` under the PIM budget; figures as a dict.

    `staged`: the push workers start only once every chunk is transformed (the batches
    wait in Redis, the push tasks in the broker), so the push window measures the push
    stage alone against the PIM's budget, without fetch/transform competing for the CPU.
    """
    settings = dict(BUDGET_PIM, bulk_latency=bulk_latency)
    with Harness(assets, pim_settings=settings, label=label,
                 media_connection=media_connection) as world:

        def start_push_workers() -> None:
            for _ in range(push_workers):
                world.start_worker(routing.PUSH_QUEUE, push_concurrency, name="push")
            world.wait_workers()

        if layout == "single":
            world.start_worker(ALL_QUEUES, other_concurrency)
        else:
            world.start_worker(
                ",".join((routing.FETCH_QUEUE, routing.TRANSFORM_QUEUE, routing.MEDIA_QUEUE)),
                other_concurrency, name="ftm")
            if not staged:
                start_push_workers()
        world.wait_workers()
        assert world.pim is not None
        before = world.pim.counters()
        since = time.time()
        result = world.run(
            on_transformed=start_push_workers if staged and layout != "single" else None
        )
        after = world.pim.counters()
        window = bulk_window(world.pim, since, bulk_latency)
    counts = result.counts
    pushed = int(counts.get("created", 0)) + int(counts.get("updated", 0))
    limit = bound(settings["max_concurrency"], bulk_latency)
    end_to_end = pushed / result.duration if result.duration else 0.0
    in_window = window["assets"] / window["seconds"] if window["seconds"] else 0.0
    status_429 = after["status_429"] - before["status_429"]
    return {
        "assets": assets,
        "layout": layout,
        "staged": staged,
        "push_workers": push_workers if layout != "single" else 0,
        "push_concurrency": push_concurrency if layout != "single" else 0,
        "other_concurrency": other_concurrency,
        "state": result.report["state"],
        "pushed": pushed,
        "duration_s": round(result.duration, 2),
        "bound_assets_per_s": round(limit, 1),
        "assets_per_s": round(end_to_end, 1),
        "share_of_bound": round(end_to_end / limit, 3),
        "push_window": window,
        "push_window_assets_per_s": round(in_window, 1),
        "push_window_share": round(in_window / limit, 3),
        "transformed_at_s": (round(result.transformed_at, 2)
                             if result.transformed_at is not None else None),
        "status_429": status_429,
        "media_connection": media_connection,
        "max_concurrent_seen_by_pim": after["max_concurrent"],
        "max_concurrent_by_connection": after.get("max_concurrent_by_client", {}),
        "mean_assets_per_request": counts.get("mean_assets_per_request"),
        "worker_cpu_s": round(result.worker_cpu, 2),
        "sandbox_cpu_s": result.sandbox_cpu,
        "machine": result.machine,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--push-workers", type=int, default=1)
    parser.add_argument("--push-concurrency", type=int, default=4)
    parser.add_argument("--other-concurrency", type=int, default=2,
                        help="processes of the fetch/transform/media worker")
    parser.add_argument("--layout", choices=("split", "single"), default="split")
    parser.add_argument("--bulk-latency", type=float, default=BUDGET_PIM["bulk_latency"])
    parser.add_argument("--staged", action="store_true",
                        help="start the push workers only after every chunk is transformed "
                             "(times the push stage alone; the target stays end to end)")
    parser.add_argument("--media-connection", action="store_true",
                        help="upload media files through a second Akeneo connection "
                             "(AKENEO_MEDIA_*: 4 slots of its own, the instance limited to 10)")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    out = measure(args.assets, push_workers=args.push_workers,
                  push_concurrency=args.push_concurrency,
                  other_concurrency=args.other_concurrency, layout=args.layout,
                  bulk_latency=args.bulk_latency, staged=args.staged,
                  media_connection=args.media_connection)
    met = (out["share_of_bound"] >= TARGET_SHARE and out["status_429"] == 0
           and out["state"] == "succeeded")
    out.update(target_share=TARGET_SHARE, met=met)
    lines = [
        f"bound: {out['bound_assets_per_s']} assets/s (4 in flight / {args.bulk_latency} s x 100)",
        f"end to end: {out['pushed']} assets in {out['duration_s']} s = {out['assets_per_s']} "
        f"assets/s = {out['share_of_bound']:.0%} of the bound "
        f"(target ≥ {TARGET_SHARE:.0%}: {'MET' if met else 'MISSED'})",
        f"push window: {out['push_window']} → {out['push_window_assets_per_s']} assets/s "
        f"= {out['push_window_share']:.0%} of the bound",
        f"all chunks transformed {out['transformed_at_s']} s after start; PIM slots busy "
        f"{out['push_window']['slot_utilisation']:.0%} of the push window",
        f"429s received: {out['status_429']}; max concurrent at the PIM: "
        f"{out['max_concurrent_seen_by_pim']} (by connection: "
        f"{out['max_concurrent_by_connection']}); media connection: "
        f"{'yes' if args.media_connection else 'no'}",
        f"workers CPU: {out['worker_cpu_s']} s; sandboxes CPU: {out['sandbox_cpu_s']}",
        machine_line(out["machine"]),
    ]
    emit("throughput", out, lines)
    return 0 if out["state"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
