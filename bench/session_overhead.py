"""Client CPU per request: a plain `requests.Session` against the connector's PooledSession.

A plain session trusts the environment on every request (a scan of os.environ for
proxies, twice, and a .netrc lookup); PooledSession (connector/http_session.py) reads it
once. Both send the same GETs over one kept-alive connection to a sandbox PIM in a
subprocess (`connector sandbox pim`), so the figure is the client's own CPU per request.

    .venv/bin/python bench/session_overhead.py --requests 2000
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from bench.common import PYTHON, emit, free_port, wait_until
from connector.http_session import PooledSession

#: what the plain session calls on every request and PooledSession never does
ENVIRONMENT_CALLS = ("getproxies_environment", "get_netrc_auth")


def _cpu_per_request(session: requests.Session, url: str, n: int) -> float:
    session.get(url, timeout=5)  # the connection, opened before the clock starts
    started = time.process_time()
    for _ in range(n):
        session.get(url, timeout=5)
    return (time.process_time() - started) / n * 1000


def _environment_calls(session: requests.Session, url: str, n: int) -> int:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        session.get(url, timeout=5)
    profile.disable()
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return sum(v[1] for k, v in stats.items() if k[2] in ENVIRONMENT_CALLS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best kept")
    args = parser.parse_args()
    port = free_port()
    proc = subprocess.Popen([PYTHON, "-m", "connector.cli", "sandbox", "pim", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/_sandbox/counters"

    def up() -> bool:
        try:
            return requests.get(url, timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_until(up, 60, "the sandbox PIM")
        makers = {"requests.Session": requests.Session, "PooledSession": PooledSession}
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, make in makers.items():
                with make() as session:
                    cpu = _cpu_per_request(session, url, args.requests)
                best[name] = min(best.get(name, cpu), cpu)
        calls = {}
        for name, make in makers.items():
            with make() as session:
                calls[name] = _environment_calls(session, url, args.requests)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    plain, pooled = best["requests.Session"], best["PooledSession"]
    result = {
        "requests": args.requests, "environment_variables": len(os.environ),
        "cpu_ms_per_request": {k: round(v, 3) for k, v in best.items()},
        "environment_calls": calls, "saved_pct": round((1 - pooled / plain) * 100, 1),
    }
    lines = [
        f"{name}: {best[name]:.3f} ms client CPU per request (best of {args.rounds}), "
        f"{calls[name]} environment lookups in {args.requests} requests"
        for name in makers
    ]
    lines.append(f"saved: {result['saved_pct']} % of the client's CPU per request "
                 f"({len(os.environ)} environment variables)")
    emit("session_overhead", result, lines)


if __name__ == "__main__":
    main()
