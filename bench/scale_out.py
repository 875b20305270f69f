"""Scale-out: the same sync with 1, 2 and 4 push workers (separate `-Q push` processes).

The PIM has the proof issue's budget (4 concurrent requests, 300 ms per bulk request),
shared fleet-wide through Redis; each push worker is its own `celery -A tasks worker -Q
push -c --push-concurrency` process (what a second machine would run), next to one
`-Q fetch,transform,media` worker. Throughput should grow with push slots up to the
budget's 4 in flight, and never draw a 429.

    .venv/bin/python bench/scale_out.py --assets 20000 --push-workers 1,2,4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BUDGET_PIM, add_transport_args, emit
from bench.throughput import measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--push-workers", default="1,2,4")
    parser.add_argument("--push-concurrency", type=int, default=1,
                        help="processes per push worker")
    parser.add_argument("--other-concurrency", type=int, default=2)
    parser.add_argument("--bulk-latency", type=float, default=BUDGET_PIM["bulk_latency"])
    add_transport_args(parser)
    args = parser.parse_args(argv)
    rows = []
    for count in (int(x) for x in args.push_workers.split(",")):
        rows.append(measure(args.assets, push_workers=count,
                            push_concurrency=args.push_concurrency,
                            other_concurrency=args.other_concurrency, layout="split",
                            bulk_latency=args.bulk_latency, label="bench-scale"))
    keep = ("push_workers", "push_concurrency", "state", "pushed", "duration_s",
            "assets_per_s", "share_of_bound", "push_window_assets_per_s", "status_429",
            "max_concurrent_seen_by_pim", "transformed_at_s")
    table = [{k: r[k] for k in keep} | {"slot_utilisation": r["push_window"]["slot_utilisation"]}
             for r in rows]
    ok = all(r["state"] == "succeeded" for r in rows)
    out = {"assets": args.assets, "bound_assets_per_s": rows[0]["bound_assets_per_s"] if rows
           else 0, "runs": table, "status_429_total": sum(r["status_429"] for r in rows)}
    lines = [f"bound {out['bound_assets_per_s']} assets/s; per run:"]
    lines += [f"  {r['push_workers']} push worker(s) x -c {r['push_concurrency']}: "
              f"{r['assets_per_s']} assets/s end to end ({r['share_of_bound']:.0%}), push window "
              f"{r['push_window_assets_per_s']} assets/s, slots busy {r['slot_utilisation']:.0%}, "
              f"{r['status_429']} x 429, {r['duration_s']} s" for r in table]
    emit("scale_out", out, lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
