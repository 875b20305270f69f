"""Connection reuse over TLS: new connections and TLS handshakes per sync, for several sizes.

Target (issue 13): the connections (and handshakes) a sync opens are at most
(processes that make requests times hosts contacted), whatever the number of assets. The
sandboxes are served over HTTPS with keep-alive (`connector sandbox … --tls`); the
connector trusts their CA through REQUESTS_CA_BUNDLE. Each size gets a fresh world; the
counters are read after the structure is applied, so they count the sync alone.

    .venv/bin/python bench/connections.py --assets 500,2000 --concurrency 2

Processes that make requests: the worker's pool children (`--concurrency`) and this
process (start_run); hosts: the sandbox DAM (pages and binaries) and the sandbox PIM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.common import ALL_QUEUES, Harness, add_transport_args, emit


def _tls_counts(counters: dict[str, Any]) -> dict[str, int]:
    return {"connections": int(counters.get("connections", 0)),
            "tls_handshakes": int(counters.get("tls_handshakes", 0)),
            "requests": int(counters["requests"] if isinstance(counters["requests"], int)
                            else sum(counters["requests"].values()))}


def measure(assets: int, concurrency: int, tls: bool = True) -> dict[str, Any]:
    with Harness(assets, label="bench-conn", tls=tls) as world:
        assert world.pim is not None and world.dam is not None
        world.start_worker(ALL_QUEUES, concurrency)
        world.wait_workers()
        sandboxes = {"pim": world.pim.url, "dam": world.dam.url}
        # counters read on one kept-alive connection per sandbox, opened before the run:
        # the difference is the sync's alone (admin requests are not counted as requests)
        with requests.Session() as admin:
            admin.verify = str(world.ca_dir / "ca.pem") if world.ca_dir else True

            def read() -> dict[str, dict[str, int]]:
                return {name: _tls_counts(admin.get(f"{url}/_sandbox/counters",
                                                    timeout=30).json())
                        for name, url in sandboxes.items()}

            world.transport()  # the harness's own admin session: opened before `before`
            before = read()
            result = world.run()
            after = read()
    hosts = {name: {key: after[name][key] - before[name][key] for key in after[name]}
             for name in after}
    return {
        "assets": assets,
        "tls": tls,
        "state": result.report["state"],
        "created": int(result.counts.get("created", 0)),
        "duration_s": round(result.duration, 2),
        "worker_cpu_s": round(result.worker_cpu, 2),
        "hosts": hosts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", default="500,2000",
                        help="comma-separated catalogue sizes (one fresh world each)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    add_transport_args(parser)
    args = parser.parse_args()
    sizes = [int(s) for s in args.assets.split(",") if s.strip()]
    runs = [measure(n, args.concurrency, tls=not args.plain_http) for n in sizes]
    processes = args.concurrency + 1
    bound = processes * 2  # per host: the worker's children and this process
    per_host_bound = processes
    lines = []
    for run in runs:
        lines.append(
            f"{run['assets']} assets ({run['state']}, {run['created']} created, "
            f"{run['duration_s']} s, worker CPU {run['worker_cpu_s']} s): "
            + "; ".join(f"{name} {c['connections']} connections, {c['tls_handshakes']} "
                        f"handshakes, {c['requests']} requests"
                        for name, c in run["hosts"].items()))
    met = all(
        run["state"] == "succeeded"
        and all(c["connections"] <= per_host_bound and c["tls_handshakes"] <= per_host_bound
                for c in run["hosts"].values())
        for run in runs
    )
    lines.append(f"bound: ≤ {per_host_bound} per host ({processes} processes), "
                 f"≤ {bound} in all: {'met' if met else 'NOT met'}")
    emit("connections", {"tls": not args.plain_http, "runs": runs, "processes": processes,
                         "bound": bound, "met": met}, lines)


if __name__ == "__main__":
    main()
