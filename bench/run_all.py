"""Run every benchmark of the proof issue, one subprocess each, and summarise.

    .venv/bin/python bench/run_all.py --size 20000     # the issue's sizes (memory: 10k/100k)
    .venv/bin/python bench/run_all.py --quick          # a small smoke size (300 assets)

`--size S` is the DAM size of every benchmark; the memory benchmark compares S/2 with
S*5 (10,000 and 100,000 at the default), the minimal floor syncs S/4, connections S/10 and
S/2; the webhook receiver and freshness benchmarks run at fixed sizes (5,000 webhooks;
50 events/s for 2 minutes, a 1,000-event burst, a 30 s poll schedule). Every benchmark's
sandboxes serve HTTPS with keep-alive (`--plain-http`: plain HTTP) and every benchmark
prints the connections and TLS handshakes of its runs. `--only a,b`
runs a subset. Each benchmark prints its own figures and reproducing command; this script
prints them as they come, then one JSON line with every result (the last line of stdout).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, last_json, machine

QUICK_SIZE = 300
NAMES = ("bulk_efficiency", "throughput", "noop_resync", "overhead", "memory", "scale_out",
         "minimal_floor", "connections", "webhook_bench", "freshness")


def commands(size: int, quick: bool) -> dict[str, list[str]]:
    small, large = max(100, size // 2), size * 5
    if quick:
        small, large = size // 2, size
    return {
        "bulk_efficiency": ["--assets", str(size)],
        "throughput": ["--assets", str(size)],
        "noop_resync": ["--assets", str(size), *(() if quick else ("--full",))],
        "overhead": ["--assets", str(size)],
        "memory": ["--sizes", f"{small},{large}"],
        "scale_out": ["--assets", str(size),
                      "--push-workers", "2" if quick else "1,2,4"],
        "minimal_floor": ["--assets", str(size if quick else max(100, size // 4))],
        "connections": ["--assets", str(size) if quick else f"{max(100, size // 10)},{size // 2}"],
        # the webhook figures do not depend on --size: the rates, or tiny ones
        "webhook_bench": ["--requests", "300", "--threads", "4"] if quick else
        ["--requests", "5000", "--threads", "8", "--workers", "2"],
        "freshness": ["--rate", "10", "--duration", "3", "--burst", "100", "--burst-assets",
                      "10", "--poll-interval", "3", "--poll-changes", "1", "--poll-assets",
                      "200"] if quick else
        ["--rate", "50", "--duration", "120", "--poll-interval", "30"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help=f"size {QUICK_SIZE}")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per benchmark")
    parser.add_argument("--plain-http", action="store_true",
                        help="every benchmark's sandboxes over plain HTTP (default: HTTPS)")
    args = parser.parse_args(argv)
    size = QUICK_SIZE if args.quick else args.size
    wanted = [n for n in (args.only.split(",") if args.only else NAMES) if n]
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(NAMES)})")
    results: dict[str, Any] = {}
    failed: list[str] = []
    for name, extra in commands(size, args.quick).items():
        if name not in wanted:
            continue
        argv_ = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *extra,
                 *(["--plain-http"] if args.plain_http else [])]
        started = time.monotonic()
        proc = subprocess.run(argv_, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout, check=False)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-4000:])
            failed.append(name)
        try:
            results[name] = last_json(proc.stdout)
        except ValueError:
            results[name] = {"error": proc.stderr[-2000:], "returncode": proc.returncode}
            failed.append(name)
        results[name]["elapsed_s"] = round(time.monotonic() - started, 1)
    print("== summary ==")
    for name, result in results.items():
        print(f"{name:16} met={result.get('met')} ({result.get('elapsed_s')} s)")
    print(json.dumps({"size": size, "machine": machine(), "failed": sorted(set(failed)),
                      "results": results}, sort_keys=True, default=str), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
