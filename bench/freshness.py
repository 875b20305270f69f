"""Freshness: the time from a DAM change to the PIM showing it (what users feel).

Webhook path: the Procfile's `web` (gunicorn tasks.web:app, `--web-workers` processes)
and its `worker` and `push` lines as real processes; the sandbox PIM under the budget of
benchmark 2 (4 in flight, 300 ms per bulk request). At a steady `--rate` for
`--duration`, each event edits one packshot in the sandbox DAM (admin edit endpoint: a
unique label) and then sends a signed webhook naming it; the source's micro-batch
window is the config default (2 s) unless `--window` says otherwise. Nothing polls the
PIM during the run: the PIM records each asset's write time
(`GET /_sandbox/updated/<family>`) and the benchmark joins it with the moment it edited
the DAM afterwards; an event is lost when its asset does not carry its label in the PIM
at the end. Then a burst: `--burst` events over `--burst-assets` assets as fast as the
client threads go, and how many bulk requests the PIM received for them.

Poll path (`--poll-interval`, 0 skips it): another world with a schedule `every:
interval` and the real `celery -A tasks beat`; after an initial sync, `--poll-changes`
assets are edited at spread moments and each is timed until the PIM has it; the
expectation is ≤ interval + the duration of one scheduled run.

    .venv/bin/python bench/freshness.py --rate 50 --duration 120 --poll-interval 30

CPU of every process (workers, web, sandboxes, Redis, this client) is measured around
each phase, with the machine's load average, so a missed goal names its bottleneck.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from bench.common import (
    BUDGET_PIM,
    CELERY,
    SOURCE,
    TRANSPORT,
    Harness,
    ProcessTree,
    SendTaskEnqueuer,
    _trust,
    add_transport_args,
    emit,
    free_port,
    wait_until,
)
from connector.config import load_config
from connector.config.model import WebhookConfig
from connector.intake.signature import compute_signature
from connector.pipeline.runs.store import RunStore
from connector.redis_conn import Keys, get_redis
from connector.settings import Secret
from connector.transform.codes import asset_code
from sandbox import harness as shared
from sandbox.dam import DamSandbox
from tasks import routing

SECRET = "bench-freshness-secret"
SIGNER = WebhookConfig(header="X-Signature", prefix="sha256=", secret=Secret(SECRET))
FAMILY = "packshots"
GOAL_P99 = 3.0
WORKER_QUEUES = ",".join(routing.WORKER_QUEUES)


# ---------------------------------------------------------------------- small helpers


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (0 < share ≤ 1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": round(percentile(values, 0.5), digits),
            "p95": round(percentile(values, 0.95), digits),
            "p99": round(percentile(values, 0.99), digits),
            "max": round(max(values), digits)}


def packshot_ids(assets: int, seed: int = 7) -> list[str]:
    """The sandbox DAM's packshots (what `connector sandbox dam --assets N --seed S`
    serves), its deliberately bad records left out: each maps to a text `label`."""
    dam = DamSandbox(assets=assets, seed=seed)
    bad = {str(b.get("id")) for b in dam.bad_records()}
    return [i for i in dam.ids()
            if (dam.record(i) or {}).get("folder") == "products/packshots" and i not in bad]


def redis_process() -> psutil.Process | None:
    """The local redis-server (shared with whatever else runs here: its CPU is an upper
    bound of this benchmark's share)."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "redis-server":
            return proc
    return None


class Cpu:
    """CPU seconds of named process trees between `start()` and `stop()`."""

    def __init__(self, trees: dict[str, Callable[[], float]]) -> None:
        self.trees = trees
        self.before: dict[str, float] = {}
        self.load_before = 0.0

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, measure in self.trees.items():
            try:
                out[name] = measure()
            except (psutil.Error, OSError):
                out[name] = float("nan")
        return out

    def start(self) -> None:
        self.load_before = os.getloadavg()[0]
        self.before = self.sample()

    def stop(self, wall: float) -> dict[str, Any]:
        after = self.sample()
        used = {k: round(after[k] - self.before[k], 2) for k in after}
        total = sum(v for v in used.values() if not math.isnan(v))
        return {"cpu_s": used, "cpu_total_s": round(total, 2), "wall_s": round(wall, 2),
                "cores_busy": round(total / wall, 2) if wall else 0.0,
                "load_avg_1m": [round(self.load_before, 2), round(os.getloadavg()[0], 2)]}


def cpu_lines(label: str, figures: dict[str, Any]) -> str:
    parts = ", ".join(f"{k} {v:.2f}" for k, v in figures["cpu_s"].items())
    before, after = figures["load_avg_1m"]
    return (f"{label}: CPU s {parts} = {figures['cpu_total_s']:.2f} in "
            f"{figures['wall_s']:.1f} s wall ({figures['cores_busy']:.2f} cores busy; "
            f"load {before} -> {after})")


# ---------------------------------------------------------------------- world


def rewrite_config(world: Harness, source: dict[str, Any]) -> None:
    """The world's config with `source` keys merged into its one source (before any
    worker, web or beat process reads it)."""
    data = yaml.safe_load(world.config_path.read_text())
    data["sources"][SOURCE].update(source)
    shared.write_yaml(world.config_path, data)
    # runs started from here carry the config's fingerprint: the workers check it
    world.config = load_config(world.config_path, env=world.env())
    assert world.app is not None
    if world.services is not None:
        world.services.close()
    world.services = shared.world_services(world.config, world.redis_url, world.namespace,
                                           client=world.client(),
                                           enqueuer=SendTaskEnqueuer(world.app))


def webhook_block() -> dict[str, Any]:
    return {"verification": "hmac", "header": "X-Signature", "prefix": "sha256=",
            "secret": "${BENCH_WEBHOOK_SECRET}",
            "events": {"event_type": "event", "asset_id": "asset_id",
                       "delivery_id_header": "X-Delivery-Id",
                       "actions": {"asset.updated": "upsert"}}}


def start_web(world: Harness, workers: int) -> tuple[shared.Child, str]:
    """The Procfile's `web` line: gunicorn tasks.web:app on a free port, until every
    worker answers /healthz."""
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    argv = [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--access-logfile", "-", "tasks.web:app"]
    log = world.tmp / "web.log"
    proc = shared.start_process(argv, world.env(), log)
    child = shared.Child("web", proc, log)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not child.alive():
            raise RuntimeError(f"web exited:\n{child.log_tail()}")
        try:
            return requests.get(f"{url}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, 60, "gunicorn tasks.web:app")
    return child, url


class Client:
    """Per-thread sessions: one to the DAM's admin API (its TLS), one to the web process."""

    def __init__(self, dam_url: str, web_url: str) -> None:
        self.dam_url, self.web_url = dam_url, web_url
        self.local = threading.local()

    def _session(self, name: str) -> requests.Session:
        session: requests.Session | None = getattr(self.local, name, None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.verify = _trust()
            setattr(self.local, name, session)
        return session

    def edit(self, dam_id: str, label: str) -> None:
        r = self._session("dam").post(f"{self.dam_url}/_sandbox/assets/{dam_id}",
                                      json={"description": label}, timeout=30)
        r.raise_for_status()

    def webhook(self, dam_id: str) -> tuple[int, float]:
        raw = json.dumps({"event": "asset.updated", "asset_id": dam_id}).encode()
        t0 = time.perf_counter()
        r = self._session("web").post(
            f"{self.web_url}/webhooks/{SOURCE}", data=raw, timeout=30,
            headers={"Content-Type": "application/json",
                     "X-Signature": compute_signature(SIGNER, raw),
                     "X-Delivery-Id": uuid.uuid4().hex})
        return r.status_code, time.perf_counter() - t0


def wait_written(world: Harness, edits: dict[str, float], labels: dict[str, str],
                 timeout: float) -> dict[str, float]:
    """PIM write time per asset code once every code of `edits` (code → edit time) shows
    its edited label (`labels`), or at the deadline (what is missing then is lost)."""
    assert world.pim is not None
    stamps: dict[str, float] = {}

    def done() -> bool:
        stamps.clear()
        stamps.update(world.pim.admin(f"updated/{FAMILY}"))  # type: ignore[union-attr]
        if not all(stamps.get(code, 0.0) >= t for code, t in edits.items()):
            return False
        # a write after the edit may still carry the old value (a run that listed the DAM
        # before the edit): done once every label is the edited one
        shown = labels_in_pim(world)
        return all(shown.get(code) == label for code, label in labels.items())

    with contextlib.suppress(TimeoutError):
        wait_until(done, timeout, "the PIM to show every change", interval=0.5)
    return stamps


def labels_in_pim(world: Harness) -> dict[str, str]:
    """code → en_US label of every packshot in the PIM (one dump, after the phase)."""
    assert world.pim is not None
    out: dict[str, str] = {}
    for asset in world.pim.admin(f"assets/{FAMILY}"):
        for value in (asset.get("values") or {}).get("label", []):
            if value.get("locale") == "en_US":
                out[asset["code"]] = str(value.get("data"))
    return out


# ---------------------------------------------------------------------- webhook path


def steady(world: Harness, client: Client, ids: list[str], rate: float,
           duration: float) -> dict[str, Any]:
    """`rate` events/s for `duration` s, each: edit one asset, then its webhook."""
    events = ids[: int(rate * duration)]
    tag = uuid.uuid4().hex[:6]
    records: list[dict[str, Any]] = [{} for _ in events]

    def one(n: int) -> None:
        dam_id = events[n]
        label = f"fresh {tag} {n}"
        t_edit = time.time()
        client.edit(dam_id, label)
        status, ack = client.webhook(dam_id)
        records[n] = {"dam_id": dam_id, "code": asset_code(dam_id), "label": label,
                      "t_edit": t_edit,
                      "status": status, "ack": ack}

    start_wall = time.time()
    start = time.monotonic() + 0.2
    lag: list[float] = []
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = []
        for n in range(len(events)):
            due = start + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the sender, not synchronising on a result
            lag.append(max(0.0, -pause))
            futures.append(pool.submit(one, n))
        for future in futures:
            future.result()
    sent_wall = time.monotonic() - start
    edits = {r["code"]: r["t_edit"] for r in records}
    stamps = wait_written(world, edits, {r["code"]: r["label"] for r in records}, timeout=60)
    labels = labels_in_pim(world)
    latencies, lost = [], 0
    for r in records:
        if labels.get(r["code"]) != r["label"] or r["code"] not in stamps:
            lost += 1
            continue
        latencies.append(stamps[r["code"]] - r["t_edit"])
    breakdown = where_time_goes(world, records, stamps, since=start_wall)
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {"events": len(events), "rate_per_s": rate, "duration_s": duration,
            "sent_wall_s": round(sent_wall, 2),
            "sender_lag_max_s": round(max(lag), 3) if lag else 0.0,
            "statuses": statuses, "lost": lost,
            "freshness_s": spread(latencies),
            "ack_ms": spread([r["ack"] * 1000 for r in records], 2), **breakdown}


def where_time_goes(world: Harness, records: list[dict[str, Any]], stamps: dict[str, float],
                    since: float) -> dict[str, Any]:
    """Each event's latency split at the flush's GET of its record from the DAM (the DAM's
    request log: its last 5,000 API requests): DAM edit → GET = the micro-batch window and
    the wait for a flush task; GET → PIM write = the rest of the flush (the batch's other
    GETs, transform, the bulk request). Plus the PIM's bulk requests of the phase."""
    assert world.dam is not None and world.pim is not None
    gets: dict[str, list[float]] = {}
    for entry in world.dam.admin("log"):
        if entry.get("method") == "GET" and entry.get("t", 0) >= since:
            dam_id = str(entry.get("path", "")).rstrip("/").rsplit("/", 1)[-1]
            gets.setdefault(dam_id, []).append(float(entry["t"]))
    waits, rests = [], []
    for r in records:
        after = [t for t in gets.get(r["dam_id"], []) if t >= r["t_edit"]]
        if after and r["code"] in stamps:
            waits.append(min(after) - r["t_edit"])
            rests.append(stamps[r["code"]] - min(after))
    bulks = [e for e in world.pim.admin(f"log?since={since}")
             if e.get("method") == "PATCH" and str(e.get("template", "")).endswith("/assets")]
    items = [int(e.get("items") or 0) for e in bulks]
    return {"edit_to_dam_get_s": spread(waits), "dam_get_to_pim_s": spread(rests),
            "joined_with_dam_log": len(waits),
            "bulk_requests": len(bulks),
            "assets_per_bulk": round(sum(items) / len(items), 1) if items else 0.0,
            "per_batch_s": per_batch(records, stamps, gets, sorted(e["t"] for e in bulks))}


def per_batch(records: list[dict[str, Any]], stamps: dict[str, float],
              gets: dict[str, list[float]], bulk_starts: list[float]) -> dict[str, Any]:
    """Each bulk request's assets (the last request started before an asset's write):
    oldest edit → first DAM GET (window + task start), first → last GET (the batch's
    record fetches, one by one), last GET → bulk request (transform, push task), bulk
    request → write (the PIM's latency)."""
    groups: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        stamp = stamps.get(r["code"])
        starts = [b for b in bulk_starts if stamp is not None and b <= stamp]
        if starts:
            groups.setdefault(starts[-1], []).append(r)
    parts: dict[str, list[float]] = {"window_and_start": [], "dam_gets": [],
                                     "transform_and_push_start": [], "bulk_request": []}
    for bulk, members in groups.items():
        fetched = [min((t for t in gets.get(r["dam_id"], []) if t >= r["t_edit"]),
                       default=None) for r in members]
        known = [t for t in fetched if t is not None]
        if len(known) != len(members):
            continue  # outside the DAM's log window
        parts["window_and_start"].append(min(known) - min(r["t_edit"] for r in members))
        parts["dam_gets"].append(max(known) - min(known))
        parts["transform_and_push_start"].append(bulk - max(known))
        parts["bulk_request"].append(max(stamps[r["code"]] for r in members) - bulk)
    return {"batches": len(parts["bulk_request"]),
            **{name: spread(values) for name, values in parts.items()}}


def burst(world: Harness, client: Client, ids: list[str], events: int,
          threads: int = 8) -> dict[str, Any]:
    """`events` webhooks over `ids` (each asset edited once first), as fast as `threads`
    client threads go; bulk asset requests the PIM received until every asset landed."""
    assert world.pim is not None
    tag = uuid.uuid4().hex[:6]
    edits: dict[str, float] = {}
    labels: dict[str, str] = {}
    for n, dam_id in enumerate(ids):
        code = asset_code(dam_id)
        edits[code], labels[code] = time.time(), f"burst {tag} {n}"
        client.edit(dam_id, labels[code])
    before = world.pim.counters()
    order = [ids[n % len(ids)] for n in range(events)]
    first = time.time()
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        answers = list(pool.map(client.webhook, order))
    sent = time.monotonic() - t0
    stamps = wait_written(world, edits, labels, timeout=60)
    after = world.pim.counters()
    shown = labels_in_pim(world)
    landed = sum(1 for code, t in edits.items()
                 if stamps.get(code, 0.0) >= t and shown.get(code) == labels[code])
    last = max((stamps.get(code, 0.0) for code in edits), default=0.0)
    accepted = sum(1 for status, _ in answers if status == 202)
    return {"events": events, "assets": len(ids), "accepted": accepted,
            "accepted_per_s": round(accepted / sent, 1) if sent else 0.0,
            "send_wall_s": round(sent, 2), "landed": landed,
            "ack_ms": spread([ack * 1000 for _, ack in answers], 2),
            "bulk_requests": int(after.get("bulk_asset_requests", 0))
            - int(before.get("bulk_asset_requests", 0)),
            "last_write_after_first_event_s": round(last - first, 2)}


def webhook_path(args: argparse.Namespace) -> dict[str, Any]:
    events = int(args.rate * args.duration)
    dam_assets = math.ceil((events + args.burst_assets) / 0.55) + 200
    ids = packshot_ids(dam_assets)
    if len(ids) < events + args.burst_assets:
        raise SystemExit(f"only {len(ids)} packshots in a DAM of {dam_assets}")
    os.environ["BENCH_WEBHOOK_SECRET"] = SECRET  # the world's processes inherit it
    with Harness(dam_assets, pim_settings=dict(BUDGET_PIM), label="bench-fresh") as world:
        realtime = {"realtime": {"window": args.window}} if args.window is not None else {}
        rewrite_config(world, {"webhook": webhook_block(), **realtime})
        world.start_worker(WORKER_QUEUES, 2, name="worker")
        world.start_worker(routing.PUSH_QUEUE, 4, name="push")
        web, url = start_web(world, args.web_workers)
        try:
            world.wait_workers()
            assert world.dam is not None and world.dam.url is not None
            client = Client(world.dam.url, url)
            cpu = Cpu(trees(world, web))
            transport0 = world.transport()
            cpu.start()
            t0 = time.monotonic()
            result = steady(world, client, ids, args.rate, args.duration)
            result["cpu"] = cpu.stop(time.monotonic() - t0)
            # the DAM's include this client's edit connections (one per sender thread)
            TRANSPORT.append({"tls": world.tls, "hosts": {
                host: {k: v - transport0[host][k] for k, v in counts.items()}
                for host, counts in world.transport().items()}})
            burst_result: dict[str, Any] = {}
            if args.burst:
                cpu.start()
                t0 = time.monotonic()
                burst_result = burst(world, client, ids[events: events + args.burst_assets],
                                     args.burst)
                burst_result["cpu"] = cpu.stop(time.monotonic() - t0)
            result["rss_mb"] = {name: round(size / 2**20, 1)
                                for name, size in world.worker_rss().items()}
            result["web_rss_mb"] = round(sum(ProcessTree(web.proc.pid).rss().values())
                                         / 2**20, 1)
        finally:
            shared.stop_processes([web.proc], timeout=20)
    return {"steady": result, "burst": burst_result, "dam_assets": dam_assets,
            "window": args.window if args.window is not None else "default (2 s)",
            "web_workers": args.web_workers}


def trees(world: Harness, web: shared.Child | None = None,
          beat: shared.Child | None = None) -> dict[str, Callable[[], float]]:
    """What Cpu measures: every worker tree, web, beat, both sandboxes, Redis, this
    process (the client)."""
    out: dict[str, Callable[[], float]] = {}
    for worker in world.workers:
        out[worker.name.split("-")[0]] = worker.tree.cpu_seconds
    for child in (web, beat, world.dam, world.pim):
        if child is not None:
            out[child.name] = ProcessTree(child.proc.pid).cpu_seconds
    redis = redis_process()
    if redis is not None:
        out["redis-server"] = lambda: float(sum(redis.cpu_times()[:2]))
    me = psutil.Process()
    out["bench client"] = lambda: float(sum(me.cpu_times()[:2]))
    return out


# ---------------------------------------------------------------------- poll path


def poll_path(args: argparse.Namespace) -> dict[str, Any]:
    ids = packshot_ids(args.poll_assets)[: args.poll_changes]
    interval = args.poll_interval
    with Harness(args.poll_assets, pim_settings=dict(BUDGET_PIM),
                 label="bench-fresh-poll") as world:
        rewrite_config(world, {"schedule": {"every": interval}})
        world.start_worker(WORKER_QUEUES, 2, name="worker")
        world.start_worker(routing.PUSH_QUEUE, 4, name="push")
        world.wait_workers()
        initial = world.run()  # the watermark: the scheduled runs are incremental
        runs = RunStore(get_redis(world.redis_url), Keys(world.namespace))
        earlier = set(runs.run_ids(SOURCE, limit=100))
        argv = [CELERY, "-A", "tasks", "beat", "--loglevel=INFO",
                "--schedule", str(world.tmp / "beat-schedule")]
        log = world.tmp / "beat.log"
        beat = shared.Child("beat", shared.start_process(argv, world.env(), log), log)
        try:
            assert world.dam is not None and world.dam.url is not None
            client = Client(world.dam.url, "")
            cpu = Cpu(trees(world, beat=beat))
            cpu.start()
            t0 = time.monotonic()
            edits: dict[str, float] = {}
            labels: dict[str, str] = {}
            for n, dam_id in enumerate(ids):
                # spread over the schedule's phase: 0.37 of an interval apart
                pause = t0 + 2 + n * interval * 1.37 - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the changes, not synchronising
                code = asset_code(dam_id)
                labels[code] = f"poll {n} {uuid.uuid4().hex[:6]}"
                edits[code] = time.time()
                client.edit(dam_id, labels[code])
            stamps = wait_written(world, edits, labels, timeout=2 * interval + 120)
            figures = cpu.stop(time.monotonic() - t0)
            shown = labels_in_pim(world)
            scheduled = []
            for run_id in runs.run_ids(SOURCE, limit=100):
                record = runs.get(run_id)
                if run_id not in earlier and record.duration is not None:
                    scheduled.append(record.duration)
        finally:
            shared.stop_processes([beat.proc], timeout=20)
    latencies = [stamps[c] - t for c, t in edits.items()
                 if c in stamps and stamps[c] >= t and shown.get(c) == labels[c]]
    longest = max(scheduled) if scheduled else 0.0
    bound = interval + longest
    return {"interval_s": interval, "changes": len(edits), "lost": len(edits) - len(latencies),
            "freshness_s": [round(v, 2) for v in sorted(latencies)],
            "max_s": round(max(latencies), 2) if latencies else None,
            "scheduled_runs": len(scheduled),
            "run_duration_s": spread(scheduled, 3),
            "bound_s": round(bound, 2),
            "met": bool(latencies) and len(latencies) == len(edits) and max(latencies) <= bound,
            "initial_sync_s": round(initial.duration, 2), "cpu": figures}


# ---------------------------------------------------------------------- main


def lines(result: dict[str, Any]) -> Iterable[str]:
    hook = result["webhook"]
    s = hook["steady"]
    f = s["freshness_s"]
    yield (f"webhook path: {s['events']} events at {s['rate_per_s']}/s for {s['duration_s']} s "
           f"(sent in {s['sent_wall_s']} s, sender lag max {s['sender_lag_max_s']} s), window "
           f"{hook['window']}, {hook['web_workers']} web processes")
    yield (f"  DAM change -> PIM: p50 {f.get('p50')} s, p95 {f.get('p95')} s, p99 {f.get('p99')}"
           f" s, max {f.get('max')} s; lost {s['lost']} (goal p99 <= {GOAL_P99} s, 0 lost)")
    w, g = s["edit_to_dam_get_s"], s["dam_get_to_pim_s"]
    yield (f"  split at the flush's DAM GET ({s['joined_with_dam_log']} events in the DAM's "
           f"log): edit -> GET p50 {w.get('p50')} / p99 {w.get('p99')} / max {w.get('max')} s;"
           f" GET -> PIM write p50 {g.get('p50')} / p99 {g.get('p99')} / max {g.get('max')} s;"
           f" {s['bulk_requests']} bulk requests, {s['assets_per_bulk']} assets each")
    b = s["per_batch_s"]
    yield (f"  per batch ({b['batches']} joined), p50 / max s: "
           + "; ".join(f"{k} {v.get('p50')} / {v.get('max')}" for k, v in b.items()
                       if isinstance(v, dict)))
    a = s["ack_ms"]
    yield f"  webhook ack: p50 {a.get('p50')} ms, p99 {a.get('p99')} ms; statuses {s['statuses']}"
    yield "  " + cpu_lines("steady", s["cpu"])
    yield f"  worker RSS MB {s['rss_mb']}, web tree RSS {s['web_rss_mb']} MB"
    b = hook["burst"]
    if b:
        yield (f"burst: {b['events']} events over {b['assets']} assets: {b['accepted']} "
               f"accepted at {b['accepted_per_s']}/s (ack p50 {b['ack_ms'].get('p50')} ms, "
               f"p99 {b['ack_ms'].get('p99')} ms), {b['landed']} landed, "
               f"{b['bulk_requests']} bulk requests")
        yield "  " + cpu_lines("burst", b["cpu"])
    p = result.get("poll")
    if p:
        yield (f"poll path: every {p['interval_s']} s, {p['changes']} changes: DAM change -> "
               f"PIM {p['freshness_s']} s (max {p['max_s']}), lost {p['lost']}; "
               f"{p['scheduled_runs']} scheduled runs, duration {p['run_duration_s']}; "
               f"expectation <= interval + longest run = {p['bound_s']} s: met={p['met']}")
        yield "  " + cpu_lines("poll", p["cpu"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="webhook events per second")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of events")
    parser.add_argument("--window", default=None,
                        help="the source's realtime.window (default: the config's, 2 s)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--burst", type=int, default=1000, help="burst events (0: none)")
    parser.add_argument("--burst-assets", type=int, default=100)
    parser.add_argument("--poll-interval", type=float, default=30.0,
                        help="beat interval of the poll path, seconds (0: skip it)")
    parser.add_argument("--poll-changes", type=int, default=4)
    parser.add_argument("--poll-assets", type=int, default=1000, help="DAM size, poll path")
    add_transport_args(parser)
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.burst_assets < 1:
        parser.error("--rate, --duration and --burst-assets must be positive")
    result: dict[str, Any] = {"webhook": webhook_path(args)}
    if args.poll_interval > 0:
        result["poll"] = poll_path(args)
    steady_ = result["webhook"]["steady"]
    p99 = steady_["freshness_s"].get("p99")
    result["met"] = bool(p99 is not None and p99 <= GOAL_P99 and steady_["lost"] == 0
                         and result.get("poll", {"met": True})["met"])
    emit("freshness", result, list(lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
