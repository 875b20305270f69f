"""The benchmark harness works: bench/run_all.py --quick runs every benchmark at a tiny
size (real sandboxes, Redis and Celery workers) and each prints a complete JSON result.

Only structure and sanity are asserted here: the figures themselves are for
docs/performance.md, measured at full size by hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_KEYS = {
    "bulk_efficiency": {"mean_assets_per_request", "bulk_requests", "skeleton_requests",
                        "pushed", "families", "met", "command"},
    "throughput": {"assets_per_s", "bound_assets_per_s", "share_of_bound", "status_429",
                   "push_window", "met", "command"},
    "noop_resync": {"resync", "initial_pushed", "met", "command"},
    "overhead": {"floor", "pipeline", "ratio", "met", "command"},
    "memory": {"small", "large", "growth", "met", "command"},
    "scale_out": {"runs", "bound_assets_per_s", "status_429_total", "command"},
    "minimal_floor": {"floor", "pipeline", "ratio", "pim_assets", "met", "command"},
    "connections": {"runs", "bound", "met", "command"},
    "webhook_bench": {"accepted_per_s", "p50_ms", "p99_ms", "cpu_s", "command"},
    "freshness": {"webhook", "poll", "met", "command"},
}


@pytest.fixture(scope="module")
def quick_run() -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    last = proc.stdout.strip().splitlines()[-1]
    data: dict = json.loads(last)
    data["stdout"] = proc.stdout
    return data


def test_every_benchmark_ran_and_reported(quick_run: dict) -> None:
    assert quick_run["failed"] == []
    results = quick_run["results"]
    assert set(results) == set(EXPECTED_KEYS)
    for name, keys in EXPECTED_KEYS.items():
        missing = keys - set(results[name])
        assert not missing, f"{name} lacks {missing}"
        assert results[name]["command"].startswith(".venv/bin/python bench/")
        assert f"reproduce: {results[name]['command']}" in quick_run["stdout"]
        # over TLS with keep-alive by default, and the connections of every run printed
        transport = results[name]["transport"]
        assert transport["tls"] is True, name
        for run in transport["runs"]:
            assert set(run["hosts"]) == {"pim", "dam"}
            assert run["hosts"]["pim"]["tls_handshakes"] == run["hosts"]["pim"]["connections"]
    assert "handshakes" in quick_run["stdout"]


def test_figures_are_sane(quick_run: dict) -> None:
    r = quick_run["results"]
    bulk = r["bulk_efficiency"]
    assert bulk["pushed"] > 0 and 0 < bulk["mean_assets_per_request"] <= 100
    assert bulk["bulk_requests"] < bulk["skeleton_requests"]
    assert set(bulk["families"]) == {"packshots", "user_guides", "videos"}
    assert r["throughput"]["assets_per_s"] > 0
    assert r["throughput"]["push_window"]["requests"] > 0
    resync = r["noop_resync"]["resync"]
    assert resync["state"] == "succeeded" and resync["duration_s"] >= 0
    assert r["overhead"]["floor"]["cpu_s"] > 0 and r["overhead"]["pipeline"]["cpu_s"] > 0
    assert r["memory"]["small"]["workers_after_mb"] > 0
    assert r["memory"]["large"]["fetch_process_peak_mb"] > 0
    assert all(run["state"] == "succeeded" for run in r["scale_out"]["runs"])
    floor = r["minimal_floor"]
    assert floor["floor"]["cpu_s"] > 0 and floor["pipeline"]["cpu_s"] > 0
    assert floor["floor"]["media_uploads"] > 0 and floor["pim_assets"]["identical"] > 0
    assert r["connections"]["met"] is True
    hooks = r["webhook_bench"]
    assert hooks["accepted"] == hooks["requests"] == 300 and hooks["p99_ms"] > 0
    fresh = r["freshness"]["webhook"]
    assert fresh["steady"]["lost"] == 0 and fresh["steady"]["events"] == 30
    assert 0 < fresh["steady"]["freshness_s"]["p50"] <= fresh["steady"]["freshness_s"]["max"]
    assert fresh["burst"]["landed"] == 10 and fresh["burst"]["bulk_requests"] >= 1
    poll = r["freshness"]["poll"]
    assert poll["lost"] == 0 and poll["scheduled_runs"] >= 1
