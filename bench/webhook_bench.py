"""Webhook receiver benchmark: accepted webhooks per second and p50/p99 ack latency.

Starts `gunicorn tasks.web:app` on 127.0.0.1 (free port) against the local Redis, with a
throw-away config (one source, HMAC-SHA256 `X-Signature: sha256=…`) and a unique key
namespace that is deleted afterwards, then fires a bounded number of signed webhooks from
concurrent client threads. No Celery worker runs: flush tasks are enqueued (that cost is
part of the measurement) and removed with the namespace. gunicorn runs as the Procfile's
`web` line does (sync workers, access log on stdout). CPU of the gunicorn tree, of Redis
(shared with whatever else runs here) and of this client is measured around the timed
part, with the load average, and the result is printed like every benchmark's
(bench/common.py `emit`: figures, the reproducing command, one JSON line). The webhook
receiver is plain HTTP here (TLS ends at a proxy in front of it); `--plain-http` is
accepted for run_all and changes nothing.

    .venv/bin/python bench/webhook_bench.py --requests 5000 --threads 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import redis
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import ProcessTree, add_transport_args, emit  # noqa: E402
from connector.config.model import WebhookConfig  # noqa: E402
from connector.intake.signature import compute_signature  # noqa: E402
from connector.settings import Secret  # noqa: E402

SECRET = "bench-webhook-secret"


def config(tmp: Path) -> Path:
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump({
        "families": {"packshots": {"match": {"always": True},
                                   "mapping": {"label": {"property": "name"}}}},
        "sources": {"bench": {
            "type": "rest",
            "rest": {"base_url": "http://127.0.0.1:9", "list": {"path": "/assets"}},
            "webhook": {
                "verification": "hmac", "header": "X-Signature", "prefix": "sha256=",
                "secret": "${BENCH_WEBHOOK_SECRET}",
                "events": {"event_type": "event", "asset_id": "asset_id",
                           "delivery_id_header": "X-Delivery-Id",
                           "actions": {"asset.updated": "upsert"}},
            },
        }},
    }))
    return path


def start_gunicorn(env: dict[str, str], workers: int, worker_class: str, log: Path) -> tuple[
        subprocess.Popen[bytes], str]:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    args = [gunicorn, "-b", "127.0.0.1:0", "-w", str(workers), "-k", worker_class,
            "--access-logfile", "-", "tasks.web:app"]
    handle = log.open("wb")
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited:\n" + log.read_text()[-3000:])
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            url = found.group(1)
            while time.monotonic() < deadline:  # every worker booted and answering
                try:
                    if requests.get(url + "/healthz", timeout=2).ok:
                        return proc, url
                except requests.ConnectionError:
                    pass
                time.sleep(0.1)
        time.sleep(0.1)
    raise SystemExit("gunicorn did not start:\n" + log.read_text()[-3000:])


def _redis_cpu() -> float:
    """CPU seconds of the local redis-server so far (nan when not found/readable)."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "redis-server":
            try:
                return float(sum(proc.cpu_times()[:2]))
            except psutil.Error:
                break
    return float("nan")


def _cpu(web: ProcessTree) -> dict[str, float]:
    me = psutil.Process().cpu_times()
    return {"web": web.cpu_seconds(), "redis-server": _redis_cpu(),
            "bench client": me.user + me.system}


def run(args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    signer = WebhookConfig(header="X-Signature", prefix="sha256=", secret=Secret(SECRET))
    bodies = []
    for n in range(args.requests):
        raw = json.dumps({"event": "asset.updated", "asset_id": f"asset-{n % args.assets}",
                          "seq": n}).encode()
        bodies.append((raw, compute_signature(signer, raw), f"d-{n}"))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        env = {**os.environ, "CONNECTOR_CONFIG": str(config(tmp)),
               "CONNECTOR_NAMESPACE": namespace, "REDIS_URL": redis_url,
               "BENCH_WEBHOOK_SECRET": SECRET,
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        proc, url = start_gunicorn(env, args.workers, args.worker_class, tmp / "gunicorn.log")
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()
        local = threading.local()

        def send(item: tuple[bytes, str, str]) -> None:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            raw, sig, delivery = item
            t0 = time.perf_counter()
            r = session.post(f"{url}/webhooks/bench", data=raw, timeout=30, headers={
                "Content-Type": "application/json", "X-Signature": sig,
                "X-Delivery-Id": delivery})
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        try:
            for item in bodies[: min(50, len(bodies))]:  # warm-up, not measured
                send((item[0], item[1], "warm-" + item[2]))
            latencies.clear()
            statuses.clear()
            tree = ProcessTree(proc.pid)
            load_before = os.getloadavg()[0]
            cpu0 = _cpu(tree)
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.threads) as pool:
                list(pool.map(send, bodies))
            wall = time.perf_counter() - started
            cpu1 = _cpu(tree)
            rss_mb = round(sum(tree.rss().values()) / 2**20, 1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
            client = redis.Redis.from_url(redis_url)
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    accepted = statuses.get(202, 0)
    ordered = sorted(latencies)
    cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
    return {
        "requests": len(latencies),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "wall_s": round(wall, 3),
        "web_workers": args.workers,
        "cpu_s": cpu,
        "web_cpu_ms_per_request": round(cpu["web"] / max(1, len(latencies)) * 1000, 3),
        "web_rss_mb": rss_mb,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "accepted_per_s": round(accepted / wall, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="webhooks to send")
    parser.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--assets", type=int, default=500, help="distinct asset ids")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.threads < 1:
        parser.error("--requests and --threads must be at least 1")
    result = run(args)
    lines = [
        f"{result['accepted']} of {result['requests']} webhooks accepted in {result['wall_s']} s"
        f" = {result['accepted_per_s']}/s ({args.threads} client threads, {args.workers} "
        f"gunicorn {args.worker_class} workers); statuses {result['statuses']}",
        f"ack latency: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms",
        f"CPU s {result['cpu_s']} ({result['web_cpu_ms_per_request']} ms of web CPU per "
        f"webhook); web tree RSS {result['web_rss_mb']} MB; load {result['load_avg_1m']}",
    ]
    emit("webhook_bench", result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
