"""`alerts:` — Slack-compatible webhooks on a failed run and on new dead letters (debounced),
sent through the SSRF guard to a real HTTP receiver on 127.0.0.1; a failing endpoint never
fails the run, and no secret reaches the body or the log."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from connector import pipeline as steps
from connector.config.loader import parse_config
from connector.config.model import AlertsConfig
from connector.settings import Secret
from connector.transform.codes import asset_code
from tests.helpers import wait_for
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services

TOKEN = "T0KEN-in-the-webhook-path"


class Receiver:
    """A local webhook endpoint that records each JSON body; answers `status`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(json.loads(raw))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _world(alerts: AlertsConfig, n: int = 10) -> tuple[FakeDam, FakePim, Any, Any]:
    dam = FakeDam([make_asset(i, family="packshots") for i in range(n)])
    pim = FakePim()
    config = dataclasses.replace(make_config(), alerts=alerts)
    services, queue = make_services(config, dam, pim)
    return dam, pim, services, queue


def _alerts(*urls: str, **kw: Any) -> AlertsConfig:
    kw.setdefault("allowed_private_hosts", ("127.0.0.1",))
    return AlertsConfig(webhooks=tuple(Secret(u) for u in urls), **kw)


def _run(services: Any, queue: Any) -> Any:
    started = steps.start_run("dam", "manual", services=services)
    assert started.started
    queue.drain()
    return services.runs.get(started.run_id)


def _stats(services: Any) -> dict[str, int]:
    raw = services.redis.hgetall(services.keys.of("alerts", "stats"))
    return {k.decode(): int(v) for k, v in raw.items()}


def test_the_alerts_section_loads_and_keeps_urls_out_of_the_file() -> None:
    base: dict[str, Any] = {
        "families": {"packshots": {"match": {"folder": "products"},
                                   "mapping": {"label": {"property": "name", "type": "text"}}}},
        "sources": {"dam": {"type": "folder", "folder": {"path": "."}}},
    }
    config = parse_config(
        {**base, "alerts": {"webhooks": ["${ALERT_URL}"], "debounce_seconds": "10m",
                            "timeout": 3, "allowed_private_hosts": ["10.0.0.5"]}},
        {"ALERT_URL": "https://hooks.example.com/services/x"},
    )
    assert config.alerts.webhooks == (Secret("https://hooks.example.com/services/x"),)
    assert (config.alerts.debounce_seconds, config.alerts.timeout) == (600, 3)
    assert config.alerts.allowed_private_hosts == ("10.0.0.5",)
    assert parse_config(base, {}).alerts.webhooks == ()  # no section: no alerts
    with pytest.raises(Exception) as literal:
        parse_config({**base, "alerts": {"webhooks": ["https://hooks.example.com/x"]}}, {})
    assert "must reference an environment variable" in str(literal.value)
    with pytest.raises(Exception) as scheme:
        parse_config({**base, "alerts": {"webhooks": ["${ALERT_URL}"]}},
                     {"ALERT_URL": f"ftp://hooks.example.com/{TOKEN}"})
    assert "must be an http or https URL" in str(scheme.value)
    assert TOKEN not in str(scheme.value)


def test_a_failed_run_is_notified(receiver: Receiver, namespace: str) -> None:
    dam, _, services, queue = _world(_alerts(receiver.url))
    dam.down = True
    run = _run(services, queue)
    assert run.state == "failed"
    wait_for(lambda: receiver.bodies, timeout=10, what="the alert")
    assert len(receiver.bodies) == 1
    text = receiver.bodies[0]["text"]
    assert set(receiver.bodies[0]) == {"text"}
    assert text.startswith(f"[{namespace}] run {run.run_id} of source dam failed: ")
    assert "DAM unreachable" in text
    assert TOKEN not in text
    assert _stats(services) == {"sent": 1}


def test_new_dead_letters_are_notified_at_most_once_per_debounce_window(
    receiver: Receiver, namespace: str
) -> None:
    dam, pim, services, queue = _world(_alerts(receiver.url, debounce_seconds=2))
    for i in range(3):
        pim.reject[asset_code(f"A{i:05d}-X")] = "label: too long"
    first = _run(services, queue)
    assert first.state == "succeeded" and first.report["failed"] == 3
    wait_for(lambda: receiver.bodies, timeout=10, what="the dead-letter alert")
    assert [b["text"] for b in receiver.bodies] == [
        f"[{namespace}] source dam: 3 new dead letters (3 in all); "
        "see `connector failures list dam`"]
    # two more inside the window: counted, not sent
    for i in range(3, 5):
        pim.reject[asset_code(f"A{i:05d}-X")] = "label: too long"
        dam.edit(f"A{i:05d}-X", label=f"edited {i}")
    assert _run(services, queue).report["failed"] == 2
    assert len(receiver.bodies) == 1
    # after the window, the next run's end sends what waited
    gate = services.keys.of("alerts", "dead", "dam", "gate")
    wait_for(lambda: not services.redis.exists(gate), timeout=10, what="the window to pass")
    _run(services, queue)
    wait_for(lambda: len(receiver.bodies) == 2, timeout=10, what="the second alert")
    assert receiver.bodies[1]["text"] == (
        f"[{namespace}] source dam: 2 new dead letters (5 in all); "
        "see `connector failures list dam`")


def test_a_failing_endpoint_never_fails_the_run(
    receiver: Receiver, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    closed = "http://127.0.0.1:9/hooks/" + TOKEN  # nothing listens on port 9
    dam, _, services, queue = _world(_alerts(receiver.url, closed))
    dam.down = True
    with caplog.at_level(logging.WARNING, logger="connector.alerts"):
        run = _run(services, queue)
    assert run.state == "failed"  # failed by the DAM, not by the alerts
    assert len(receiver.bodies) == 1
    assert _stats(services) == {"failed": 2}
    messages = [r.getMessage() for r in caplog.records if r.name == "connector.alerts"]
    assert any("alert to http://127.0.0.1:" in m and "answered 500" in m for m in messages)
    assert all(TOKEN not in m for m in messages)


def test_a_private_address_needs_the_allow_list(
    receiver: Receiver, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    dam, _, services, queue = _world(_alerts(receiver.url, allowed_private_hosts=()))
    dam.down = True
    with caplog.at_level(logging.WARNING, logger="connector.alerts"):
        assert _run(services, queue).state == "failed"
    assert receiver.bodies == []
    assert _stats(services) == {"failed": 1}
    messages = [r.getMessage() for r in caplog.records if r.name == "connector.alerts"]
    assert any("non-public address 127.0.0.1" in m and "alerts.allowed_private_hosts" in m
               for m in messages), messages
    assert all(TOKEN not in m for m in messages)


def test_freshness_over_the_threshold_is_notified_once_per_window(
    receiver: Receiver, namespace: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from connector.config.model import ScheduleConfig
    from connector.pipeline.schedule import schedule_entries

    _, _, services, _ = _world(_alerts(receiver.url, freshness_seconds=3600,
                                       debounce_seconds=600))
    source = dataclasses.replace(services.config.sources[0], schedule=ScheduleConfig(every=300))
    services.config = dataclasses.replace(services.config, sources=(source,))
    # the beat entry exists because a threshold is set
    entries = {e.name: e for e in schedule_entries(services.config)}
    assert entries["alerts:freshness"].kind == "freshness"
    assert entries["alerts:freshness"].every == 60

    now = datetime.now(UTC)
    services.runs.set_watermark("dam", now - timedelta(minutes=30))
    assert services.alerts.check_freshness(services.config.sources) == {}  # under 1 h
    services.runs.set_watermark("dam", now - timedelta(hours=2))
    over = services.alerts.check_freshness(services.config.sources)
    assert set(over) == {"dam"} and over["dam"] >= 7200
    wait_for(lambda: receiver.bodies, timeout=10, what="the freshness alert")
    assert receiver.bodies[0]["text"] == (
        f"[{namespace}] source dam: the oldest DAM change not yet in the PIM is 2h00m old "
        "(alerts.freshness_seconds: 1h00m); see `connector status dam`")
    services.alerts.check_freshness(services.config.sources)  # inside the window: quiet
    assert len(receiver.bodies) == 1


def test_dead_letters_of_a_real_time_sync_are_notified(receiver: Receiver, namespace: str) -> None:
    _, pim, services, _ = _world(_alerts(receiver.url))
    pim.reject[asset_code("A00001-X")] = "label: too long"
    counts = steps.sync_assets_by_id("dam", ["A00000-X", "A00001-X"], services=services)
    assert (counts["created"], counts["failed"]) == (1, 1)
    wait_for(lambda: receiver.bodies, timeout=10, what="the dead-letter alert")
    assert receiver.bodies[0]["text"] == (
        f"[{namespace}] source dam: 1 new dead letter (1 in all); "
        "see `connector failures list dam`")
