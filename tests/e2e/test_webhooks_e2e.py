"""Webhooks and queues end to end: gunicorn (tasks.web:app) + a real Celery worker + the
sandbox DAM and PIM on 127.0.0.1. One environment per module (processes are expensive).

What is asserted: signed events land in the PIM (upserts and deletions); every rejection
answers its status and queues nothing; a repeated delivery id is processed once; a burst of
1,000 events over 100 assets costs ≤ 2 PIM bulk requests; a worker SIGKILLed mid-batch
loses nothing once restarted; the Redis-stream and RabbitMQ consumers record the same
events and the assets land.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml

from connector.config.model import WebhookConfig
from connector.intake.signature import compute_signature
from connector.intake.store import IntakeStore
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.structure import apply_structure, load_structure_file
from connector.transform.codes import asset_code
from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox
from tasks import routing
from tests.helpers import samples, wait_for

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-webhook-secret"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
SIGNER = WebhookConfig(header="X-Signature", prefix="sha256=", secret=Secret(SECRET))
EVENTS = {
    "event_type": "event",
    "asset_id": "asset_id",
    "delivery_id": "delivery_id",
    "actions": {"asset.updated": "upsert", "asset.created": "upsert", "asset.deleted": "delete"},
}

pytestmark = [pytest.mark.timeout(240)]


# ------------------------------------------------------------------ processes


class Proc:
    """A subprocess in its own process group, output in a file (read to find readiness)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, ready: str, timeout: float = 60) -> re.Match[str]:
        self.log.write_text("")
        handle = self.log.open("ab")
        self.popen = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        handle.close()
        pattern = re.compile(ready)

        def found() -> re.Match[str] | None:
            assert self.popen is not None and self.popen.poll() is None, self.text()[-3000:]
            return pattern.search(self.text())

        match = wait_for(found, timeout=timeout, interval=0.1, what=f"{self.args[2]} ready")
        assert match is not None
        return match

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=20)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.kill(signal.SIGTERM)


class Env:
    def __init__(self, tmp: Path, namespace: str, redis_url: str) -> None:
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(namespace)
        self.dam = DamSandbox(assets=360, shape="bynder", seed=7, bad=False)
        self.pim = PimSandbox()
        self.dam_server = self.dam.serve()
        self.pim_server = self.pim.serve()
        creds = PimCredentials(self.pim_server.url, "sandbox-client", Secret("sandbox-secret"),
                               "sandbox", Secret("sandbox-password"))
        client = AkeneoClient(creds, redis=self.redis, keys=Keys(f"{namespace}-setup"))
        apply_structure(client, load_structure_file(ROOT / "examples" / "structure.yaml"))
        client.close()
        packshots = [
            i for i in self.dam.ids()
            if (self.dam.record(i) or {}).get("folder") == "products/packshots"
        ]
        assert len(packshots) >= 150, len(packshots)
        self.packshots = packshots
        self.config_path = tmp / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config()))
        self.env = {
            **os.environ,
            "CONNECTOR_CONFIG": str(self.config_path),
            "CONNECTOR_NAMESPACE": namespace,
            "REDIS_URL": redis_url,
            "AKENEO_URL": self.pim_server.url,
            "AKENEO_CLIENT_ID": "sandbox-client",
            "AKENEO_CLIENT_SECRET": "sandbox-secret",
            "AKENEO_USERNAME": "sandbox",
            "AKENEO_PASSWORD": "sandbox-password",
            "DAM_TOKEN": "sandbox-dam-token",
            "WEBHOOK_SECRET": SECRET,
            "AMQP_URL": AMQP_URL,
            "PYTHONUNBUFFERED": "1",
            # the venv's editable install may predate tasks/__init__.py (a namespace then)
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        bin_dir = Path(sys.executable).parent
        self.worker = Proc(
            [str(bin_dir / "celery"), "-A", "tasks", "worker", "-Q", routing.PUSH_QUEUE, "-c", "2",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"intake-e2e-{namespace}@%h", "--loglevel", "INFO"],
            self.env, tmp / "worker.log",
        )
        self.web = Proc(
            [str(bin_dir / "gunicorn"), "-b", "127.0.0.1:0", "-w", "2", "tasks.web:app"],
            self.env, tmp / "web.log",
        )
        self.url = ""

    def config(self) -> dict[str, Any]:
        rest = {
            "base_url": self.dam_server.url,
            "auth": {"type": "bearer", "token": "${DAM_TOKEN}"},
            "list": {"path": "/api/v4/media/", "since_param": "dateModified",
                     "id_field": "id", "updated_field": "dateModified"},
            "pagination": {"type": "page_number", "page_size": 100},
            "get_path": "/api/v4/media/{id}/",
            "media_url_field": "original", "filename_field": "filename",
            "folder_field": "folder", "tags_field": "tags",
            "requests_per_second": 1000,
        }
        webhook = {"verification": "hmac", "header": "X-Signature", "prefix": "sha256=",
                   "secret": "${WEBHOOK_SECRET}", "max_body_bytes": 4096,
                   "events": {**EVENTS, "delivery_id_header": "X-Delivery-Id"}}

        def source(**extra: Any) -> dict[str, Any]:
            return {"type": "rest", "rest": rest, "deletion_policy": {"action": "delete"},
                    **extra}

        return {
            "pim": {"locales": ["en_US", "fr_FR", "de_DE"], "channels": ["ecommerce"]},
            "product_asset": {"tag": "product"},
            "families": {"packshots": {
                "match": {"folder": "products/packshots"},
                "locale": {"default": "en_US"},
                "mapping": {
                    "image_url": {"property": "original", "type": "media_link"},
                    "label": {"property": "description", "type": "text"},
                    "product_ref": {"property": "property_sku", "type": "text"},
                },
            }},
            "sources": {
                "hooks": source(webhook=webhook,
                                realtime={"window": "1s", "batch_lease": "3s"}),
                "burst": source(webhook=webhook, realtime={"window": "6s"}),
                "stream": source(queue={"transport": "redis_stream",
                                        "name": f"{self.namespace}:dam-changes",
                                        "claim_idle": "2s", "events": EVENTS},
                                 realtime={"window": "1s"}),
                "rabbit": source(queue={"transport": "amqp", "url": "${AMQP_URL}",
                                        "name": f"{self.namespace}-dam-changes",
                                        "events": EVENTS},
                                 realtime={"window": "1s"}),
            },
        }

    def start(self) -> None:
        self.worker.start(r"ready\.")
        match = self.web.start(r"Listening at: http://127\.0\.0\.1:(\d+)")
        self.url = f"http://127.0.0.1:{match.group(1)}"
        wait_for(lambda: requests.get(self.url + "/healthz", timeout=5).ok, timeout=20)

    def close(self) -> None:
        self.web.stop()
        self.worker.stop()
        self.dam_server.stop()
        self.pim_server.stop()

    # -------------------------------------------------------------- helpers
    def store(self, source: str) -> IntakeStore:
        return IntakeStore(self.redis, self.keys, source)

    def post(self, source: str, body: Any, *, sign: bool = True, headers: dict | None = None,
             session: requests.Session | None = None) -> requests.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        if sign:
            h["X-Signature"] = compute_signature(SIGNER, raw)
        h.update(headers or {})
        return (session or requests).post(f"{self.url}/webhooks/{source}", data=raw, headers=h,
                                          timeout=10)

    def pim_codes(self) -> set[str]:
        return {a["code"] for a in self.pim.dump_assets("packshots")}

    def pim_label(self, dam_id: str) -> Any:
        for a in self.pim.dump_assets("packshots"):
            if a["code"] == asset_code(dam_id):
                return a["values"].get("label", [{}])[0].get("data")
        return None

    def bulk_requests(self) -> int:
        return int(self.pim.counters()["bulk_asset_requests"])

    def idle(self, *sources: str) -> bool:
        return all(
            self.store(s).pending_count() == 0 and self.store(s).in_flight_count() == 0
            for s in sources
        )


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Env]:
    namespace = f"test-e2e-{uuid.uuid4().hex[:10]}"
    e = Env(tmp_path_factory.mktemp("intake-e2e"), namespace, redis_url)
    try:
        e.start()
        yield e
    finally:
        e.close()
        client = redis.Redis.from_url(redis_url)
        for prefix in (namespace, f"{namespace}-setup"):
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])


def ids(env: Env, start: int, count: int) -> list[str]:
    return env.packshots[start : start + count]


# ------------------------------------------------------------------ tests


def test_signed_events_land_and_deletions_apply(env: Env) -> None:
    mine = ids(env, 0, 3)
    for n, dam_id in enumerate(mine):
        r = env.post("hooks", {"event": "asset.updated", "asset_id": dam_id,
                               "delivery_id": f"land-{n}"})
        assert r.status_code == 202, r.text
    wanted = {asset_code(i) for i in mine}
    wait_for(lambda: wanted <= env.pim_codes(), timeout=30, what="assets in the PIM")
    assert env.pim_label(mine[0]) == (env.dam.record(mine[0]) or {})["description"]

    env.dam.delete(mine[2])
    r = env.post("hooks", {"event": "asset.deleted", "asset_id": mine[2], "delivery_id": "del"})
    assert r.status_code == 202
    wait_for(lambda: asset_code(mine[2]) not in env.pim_codes(), timeout=30, what="deletion")
    assert asset_code(mine[0]) in env.pim_codes()


@pytest.mark.parametrize(
    ("case", "status"),
    [("too_large", 413), ("bad_json", 400), ("bad_signature", 401),
     ("missing_signature", 401), ("unknown_source", 404), ("unknown_type", 202)],
)
def test_rejections_under_gunicorn_queue_nothing(env: Env, case: str, status: int) -> None:
    store = env.store("hooks")
    before = store.log_length()
    body = {"event": "asset.updated", "asset_id": ids(env, 3, 1)[0]}
    if case == "too_large":
        r = env.post("hooks", {**body, "pad": "x" * 5000})
    elif case == "bad_json":
        r = env.post("hooks", b'{"event": "asset.updated", ')
    elif case == "bad_signature":
        r = env.post("hooks", body, sign=False, headers={"X-Signature": "sha256=" + "0" * 64})
    elif case == "missing_signature":
        r = env.post("hooks", body, sign=False)
    elif case == "unknown_source":
        r = env.post("nope", body)
    else:
        r = env.post("hooks", {**body, "event": "asset.viewed"})
    assert r.status_code == status, r.text
    assert store.log_length() == before
    assert ids(env, 3, 1)[0] not in store.pending_ids()


def test_repeated_delivery_is_processed_once(env: Env) -> None:
    dam_id = ids(env, 4, 1)[0]
    store = env.store("hooks")
    before = store.log_length()
    body = {"event": "asset.updated", "asset_id": dam_id}
    answers = [env.post("hooks", body, headers={"X-Delivery-Id": "dup-1"}).status_code
               for _ in range(3)]
    assert answers == [202, 200, 200]
    assert store.log_length() == before + 1
    wait_for(lambda: asset_code(dam_id) in env.pim_codes(), timeout=30)
    metrics = samples(requests.get(env.url + "/metrics", timeout=5).text)
    hook = (("source", "hooks"), ("via", "webhook"))
    assert metrics[("connector_intake_events_duplicate_total", hook)] == 2


def test_burst_of_1000_events_over_100_assets_costs_at_most_2_bulk_requests(env: Env) -> None:
    assets = ids(env, 10, 100)
    wait_for(lambda: env.idle("hooks", "stream", "rabbit"), timeout=30)
    before = env.bulk_requests()
    local = threading.local()

    def send_all(dam_id: str) -> list[int]:
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        return [env.post("burst", {"event": "asset.updated", "asset_id": dam_id},
                         session=session).status_code for _ in range(10)]

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = [s for batch in pool.map(send_all, assets) for s in batch]
    took = time.monotonic() - started
    assert statuses.count(202) == 1000
    wanted = {asset_code(i) for i in assets}
    wait_for(lambda: wanted <= env.pim_codes() and env.idle("burst"), timeout=60)
    used = env.bulk_requests() - before
    assert used <= 2, f"{used} bulk requests for 100 assets (burst took {took:.1f}s)"
    assert env.store("burst").log_length() == 1000


def test_worker_killed_mid_batch_loses_no_event(env: Env) -> None:
    assets = ids(env, 120, 20)
    store = env.store("hooks")
    wait_for(lambda: env.idle("hooks"), timeout=30)
    # the flush now spends seconds reading the DAM (its reads run half the DAM's budget at
    # a time: 20 ids, 2 at once, 1 s each = 10 s), so the kill lands before its push; the
    # killed worker's 2 DAM leases stay taken until they expire, the other 2 are free
    env.dam.configure(latency=1.0)
    try:
        for dam_id in assets:
            assert env.post("hooks", {"event": "asset.updated", "asset_id": dam_id}).ok
        wait_for(lambda: store.in_flight_count() > 0, timeout=30, what="a batch in flight")
        env.worker.kill(signal.SIGKILL)
    finally:
        env.dam.configure(latency=0.0)
    assert not {asset_code(i) for i in assets} <= env.pim_codes()  # killed before the push
    assert store.in_flight_count() + store.pending_count() == len(assets)
    env.worker.start(r"ready\.")
    wanted = {asset_code(i) for i in assets}
    wait_for(lambda: wanted <= env.pim_codes(), timeout=60, what="every asset after restart")
    wait_for(lambda: env.idle("hooks"), timeout=30)


@pytest.mark.rabbitmq
def test_stream_and_amqp_consumers_land_identically(env: Env) -> None:
    from tasks.amqp_consumer import publish_json

    assets = ids(env, 140, 5)
    bodies = [json.dumps({"event": "asset.updated", "asset_id": a, "delivery_id": f"m{n}"})
              for n, a in enumerate(assets)]
    bodies.append("{not json")
    bin_dir = Path(sys.executable).parent
    consumers = []
    try:
        for transport, source in (("redis-stream", "stream"), ("amqp", "rabbit")):
            proc = Proc([str(bin_dir / "connector"), "intake", transport, source],
                        env.env, env.worker.log.parent / f"{source}.log")
            consumers.append(proc)
            proc.start(r"consuming")
        for body in bodies:
            env.redis.xadd(f"{env.namespace}:dam-changes", {"payload": body})
        wanted = {asset_code(a) for a in assets}
        wait_for(lambda: wanted <= env.pim_codes(), timeout=30, what="stream assets")
        for a in assets:  # new content in the DAM; the same events again, through RabbitMQ
            env.dam.edit(a, {"description": f"edited {a}"})
        for body in bodies:
            publish_json(AMQP_URL, f"{env.namespace}-dam-changes", body.encode())
        wait_for(lambda: all(env.pim_label(a) == f"edited {a}" for a in assets), timeout=30,
                 what="amqp assets")
    finally:
        for proc in consumers:
            proc.stop()
        from kombu import Connection

        with Connection(AMQP_URL) as conn:
            conn.SimpleQueue(f"{env.namespace}-dam-changes").queue.delete()

    def recorded(source: str) -> list[Any]:
        entries: list[Any] = env.redis.xrange(env.store(source).log_key)  # type: ignore[assignment]
        return sorted(json.loads(f[b"events"])[0][1] for _, f in entries)

    assert recorded("stream") == recorded("rabbit") == sorted(assets)
    for source in ("stream", "rabbit"):
        parked = env.store(source).parked()
        assert [p["reason"][:12] for p in parked] == ["invalid JSON"]
