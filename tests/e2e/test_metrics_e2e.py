"""/metrics after a real sync: sandbox DAM → real `celery -A tasks worker` → sandbox PIM.

The counts /metrics serves equal the run report's, PIM requests and 429s equal what the
sandbox PIM saw, and the exposition parses with prometheus_client's own parser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from connector.intake.web import WebhookApp
from connector.pipeline import start_run
from connector.redis_conn import Keys, get_redis
from tasks import routing
from tests.e2e.expected import pim_assets
from tests.e2e.world import SOURCE, World, env_int
from tests.helpers import samples, wait_for

pytestmark = pytest.mark.timeout(600)

OUTCOMES = ("created", "updated", "unchanged", "quarantined", "dead_lettered", "superseded",
            "deleted")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    broker = os.environ.get("E2E_BROKER_URL") or redis_url
    w = World(Path(tmp_path_factory.mktemp("metrics")), broker,
              env_int("E2E_METRICS_ASSETS", 150))
    try:
        w.start()
        w.start_worker(concurrency=2)
        yield w
    finally:
        w.stop()


def scrape(world: World) -> tuple[str, dict[Any, float]]:
    assert world.config is not None
    app = WebhookApp(world.config, get_redis(world.redis_url), Keys(world.namespace),
                     queues=(*routing.QUEUES, routing.DEFAULT_QUEUE))
    response = Client(app).get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    return text, samples(text)


def total(found: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in found.items()
               if n == name and all((k, want) in lbls for k, want in labels.items()))


def test_metrics_after_a_real_sync_equal_the_run_report(world: World) -> None:
    pim, redis = world.pim, get_redis(world.redis_url)
    assert pim is not None
    redis.delete(Keys(world.namespace).of("pim", "token"))  # the worker must ask for one
    before = pim.counters()
    # refuse every request until the first 429 is seen, then none: a throttle, for sure
    pim.update_settings(error_rate_429=1.0, retry_after=1)
    try:
        started = start_run(SOURCE, "test", services=world.services)
        assert started.started and started.run_id is not None, started.message
        wait_for(lambda: pim.counters()["injected_429"] > before["injected_429"], timeout=60,
                 what="the first injected 429")
    finally:
        pim.update_settings(error_rate_429=0.0)
    report = world.wait_run(started.run_id, timeout=240)
    assert report["state"] == "succeeded", report
    counts = report["counts"]
    after = pim.counters()
    sandbox_requests = (sum(after["requests"].values()) - sum(before["requests"].values()))
    sandbox_429 = after["status_429"] - before["status_429"]

    # the worker flushes its deltas after each task: poll until the last one is in
    def flushed() -> dict[Any, float] | None:
        found = scrape(world)[1]
        done = total(found, "connector_pim_requests_total") == sandbox_requests
        return found if done else None

    found = wait_for(flushed, timeout=30, what="the workers' last metrics flush")
    text, _ = scrape(world)
    if os.environ.get("E2E_SHOW_METRICS"):
        print(text)
    families = {f.name for f in text_string_to_metric_families(text)}

    run = (("source", SOURCE),)
    assert found[("connector_runs_started_total", (("source", SOURCE), ("trigger", "test")))] == 1
    assert found[("connector_runs_finished_total",
                  (("source", SOURCE), ("state", "succeeded")))] == 1
    assert found[("connector_run_duration_seconds_count", run)] == 1
    assert found[("connector_run_duration_seconds_sum", run)] == pytest.approx(
        report["duration"], abs=0.01)
    for outcome in OUTCOMES:  # exactly the run report's numbers
        assert total(found, "connector_assets_total", outcome=outcome) \
            == counts.get(outcome, 0), outcome
    assert counts["created"] > 0 and counts["quarantined"] > 0

    # PIM side: every request and every 429 the sandbox saw, none more
    assert sandbox_429 >= 1
    assert total(found, "connector_pim_throttled_total") == sandbox_429
    assert total(found, "connector_pim_requests_total", status="429") == sandbox_429
    assert total(found, "connector_pim_retry_after_seconds_total") == sandbox_429 * 1.0
    bulk = "/api/rest/v1/asset-families/{family}/assets"
    assert total(found, "connector_pim_requests_total", method="PATCH", endpoint=bulk,
                 status="200") == counts["requests"]
    assert total(found, "connector_pim_token_grants_total", grant="password") >= 1
    assert "connector_budget_wait_seconds" in families
    uploads = after["media_uploads"] - before["media_uploads"]
    assert (total(found, "connector_media_uploaded_bytes_total") > 0) == (uploads > 0)
    assert (total(found, "connector_media_downloaded_bytes_total") > 0) == (uploads > 0)

    # gauges read at scrape time
    assert found[("connector_quarantined", run)] == len(
        world.services.quarantine.list(SOURCE))  # type: ignore[union-attr]
    assert found[("connector_dead_letters", run)] == counts["dead_lettered"]
    for queue in (*routing.QUEUES, routing.DEFAULT_QUEUE):
        assert found[("connector_queue_depth", (("queue", queue),))] == 0
    assert found[("connector_freshness_seconds", run)] == 0  # no schedule, no intake backlog

    # bounded labels: no asset code, no DAM id anywhere in a label
    codes = set(world.dam.ids()) | set(pim_assets(pim))  # type: ignore[union-attr]
    values = {v for (_, labels) in found for _, v in labels}
    assert codes and not [v for v in values if any(code in v for code in codes)]
    assert len(found) < 200, len(found)  # a handful of series, whatever the asset count
