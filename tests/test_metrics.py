"""Pipeline metrics (connector.metrics): label hygiene, the Redis-backed counters, the
gauges read at scrape time, the deploy files, and `connector metrics`.

The end-to-end check (a real sync, then /metrics equals the run report) is
tests/e2e/test_metrics_e2e.py.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connector import metrics
from connector.config.model import Config, ScheduleConfig, SourceConfig
from connector.metrics.collector import PipelineCollector, exported_names, exposition
from connector.pipeline.runs import RunStore
from connector.redis_conn import Keys
from tests.helpers import samples

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Config(families=(), sources=(
    SourceConfig(name="dam", type="rest", schedule=ScheduleConfig(every=600)),
    SourceConfig(name="hooks", type="rest"),
))


def scrape(redis_client, namespace: str, **kw) -> dict:
    collector = PipelineCollector(redis_client, Keys(namespace), CONFIG,
                                  ("fetch", "push"), **kw)
    text = exposition(collector).decode()
    list(text_string_to_metric_families(text))  # parses
    return samples(text)


@pytest.mark.parametrize(("path", "template"), [
    ("/api/rest/v1/asset-families/packshots/assets", "/api/rest/v1/asset-families/{family}/assets"),
    ("/api/rest/v1/asset-families/packshots/assets/sku_123-front",
     "/api/rest/v1/asset-families/{family}/assets/{code}"),
    ("/api/rest/v1/asset-families/p/attributes/colour/options/red",
     "/api/rest/v1/asset-families/{family}/attributes/{attribute}/options/{option}"),
    ("/api/rest/v1/asset-media-files/a/b/c/photo.jpg",
     "/api/rest/v1/asset-media-files/{code}/{id}/{id}/{id}"),
    ("/api/rest/v1/products-uuid/0f5c1d2e", "/api/rest/v1/products-uuid/{uuid}"),
    ("/api/oauth/v1/token", "/api/oauth/v1/token"),
    ("/api/rest/v1/whatever-new/x", "/api/rest/v1/{id}/{id}"),
    ("/elsewhere/secret-code", "other"),
])
def test_endpoint_template_keeps_no_code(path: str, template: str) -> None:
    assert metrics.endpoint_template(path) == template


def test_deltas_reach_redis_in_one_flush_and_parse(namespace, redis_client) -> None:
    keys = Keys(namespace)
    metrics.add("pim_requests", "PATCH", "/api/rest/v1/asset-families/{family}/assets", "200",
                keys=keys)
    metrics.add("pim_requests", "PATCH", "/api/rest/v1/asset-families/{family}/assets", "200",
                keys=keys)
    metrics.add("pim_retry_after", "/api/rest/v1/asset-families/{family}/assets", by=1.5,
                keys=keys)
    metrics.add("media_downloaded", by=2048, keys=keys)
    assert scrape(redis_client, namespace).get(("connector_media_downloaded_bytes_total", ())) \
        is None  # nothing written before the flush
    metrics.flush(redis_client, keys)
    assert not [k for k in metrics.recorder.pending() if k[0].startswith(namespace)]
    found = scrape(redis_client, namespace)
    endpoint = "/api/rest/v1/asset-families/{family}/assets"
    assert found[("connector_pim_requests_total",
                  (("endpoint", endpoint), ("method", "PATCH"), ("status", "200")))] == 2
    assert found[("connector_pim_retry_after_seconds_total", (("endpoint", endpoint),))] == 1.5
    assert found[("connector_media_downloaded_bytes_total", ())] == 2048


def test_a_finished_run_adds_exactly_its_report(namespace, redis_client) -> None:
    runs = RunStore(redis_client, Keys(namespace))
    run_id = runs.new_run_id()
    runs.create(run_id, "dam", "schedule", full=False, since=None, asset_ids=None, force=False,
                dry_run=False, watermark=None)
    for name, n in (("created", 3), ("updated", 2), ("unchanged", 4), ("quarantined", 1),
                    ("failed", 1), ("superseded", 1)):
        runs.count(run_id, name, n)
    runs.set_fetch_done(run_id)
    record = runs.finalize(run_id, overlap=0, advance_watermark=True)
    runs.finalize(run_id, overlap=0, advance_watermark=True)  # a second finisher: no-op
    found = scrape(redis_client, namespace)
    report = record.report
    assert found[("connector_runs_started_total", (("source", "dam"), ("trigger", "schedule")))] \
        == 1
    assert found[("connector_runs_finished_total", (("source", "dam"), ("state", "succeeded")))] \
        == 1
    for outcome, count in (("created", 3), ("updated", 2), ("unchanged", 4), ("quarantined", 1),
                           ("dead_lettered", 1), ("superseded", 1)):
        assert found[("connector_assets_total", (("outcome", outcome), ("source", "dam")))] \
            == count == report[outcome]  # type: ignore[literal-required]
    assert found[("connector_run_duration_seconds_count", (("source", "dam"),))] == 1
    assert found[("connector_run_duration_seconds_sum", (("source", "dam"),))] == pytest.approx(
        report["duration"])
    assert found[("connector_run_duration_seconds_bucket", (("le", "+Inf"), ("source", "dam")))] \
        == 1
    assert found[("connector_run_duration_seconds_bucket", (("le", "10.0"), ("source", "dam")))] \
        == 1


def test_gauges_are_read_from_the_state_at_scrape_time(namespace, redis_client) -> None:
    keys = Keys(namespace)
    now = time.time()
    redis_client.rpush(keys.of("celery", "push"), "m1", "m2")
    redis_client.rpush(keys.of("celery", "push\x06\x169"), "m3")
    redis_client.hset(keys.of("dead", "dam"), mapping={"a": "x", "b": "y"})
    redis_client.hset(keys.of("quarantine", "hooks"), "c", "z")
    redis_client.zadd(keys.of("intake", "pending", "hooks"), {"e1": now - 90, "e2": now - 5})
    mark = datetime.fromtimestamp(now, UTC) - timedelta(seconds=1800)
    redis_client.set(keys.of("watermark", "dam"), mark.isoformat())
    redis_client.set(keys.of("watermark", "hooks"), mark.isoformat())
    found = scrape(redis_client, namespace, clock=lambda: now)
    assert found[("connector_queue_depth", (("queue", "push"),))] == 3
    assert found[("connector_queue_depth", (("queue", "fetch"),))] == 0
    assert found[("connector_dead_letters", (("source", "dam"),))] == 2
    assert found[("connector_quarantined", (("source", "hooks"),))] == 1
    assert found[("connector_intake_queue_depth", (("source", "hooks"),))] == 2
    # scheduled source: changes after its watermark are not known to be in the PIM
    assert found[("connector_freshness_seconds", (("source", "dam"),))] == pytest.approx(1800)
    # intake-only source: the oldest event waiting for a flush
    assert found[("connector_freshness_seconds", (("source", "hooks"),))] == pytest.approx(90)


def test_labels_have_bounded_values(namespace, redis_client) -> None:
    """Whatever codes pass through the PIM client, no label value carries one."""
    keys = Keys(namespace)
    for n in range(50):
        path = f"/api/rest/v1/asset-families/fam{n}/assets/code-{n}"
        metrics.add("pim_requests", "GET", metrics.endpoint_template(path), "200", keys=keys)
    metrics.flush(redis_client, keys)
    found = scrape(redis_client, namespace)
    values = {v for (_, labels) in found for _, v in labels}
    assert not [v for v in values if re.search(r"code-|fam\d", v)]
    assert len([k for k in found if k[0] == "connector_pim_requests_total"]) == 1


def _promql_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads: identifiers that are not functions, keywords,
    label names or aggregation clauses."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?!\s*\()", expr))
    words = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\(", expr))
    return {n for n in names - words if n.startswith("connector_")}


def test_deploy_files_reference_only_exported_metrics(namespace, redis_client) -> None:
    assert _promql_names('sum by (a) (rate(connector_nope_total{x="y"}[5m])) > 0') \
        == {"connector_nope_total"}  # the parser finds names (so a typo would be caught)
    exported = exported_names(PipelineCollector(redis_client, Keys(namespace), CONFIG))
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rules = [r for g in alerts["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "ConnectorRunFailed", "ConnectorDeadLettersGrowing", "ConnectorFreshnessLow",
        "ConnectorPimThrottled", "ConnectorQueueBacklog"}
    dashboard = json.loads((ROOT / "deploy/grafana/connector.json").read_text())
    exprs = [r["expr"] for r in rules]
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    referenced: set[str] = set()
    for expr in exprs:
        names = _promql_names(expr)
        assert names, expr
        referenced |= names
    assert referenced - exported == set()
    # every family of the issue is on the dashboard
    for family in ("connector_runs_finished_total", "connector_run_duration_seconds_bucket",
                   "connector_assets_total", "connector_pim_requests_total",
                   "connector_pim_throttled_total", "connector_budget_wait_seconds_total",
                   "connector_pim_token_grants_total", "connector_media_uploaded_bytes_total",
                   "connector_queue_depth", "connector_dead_letters", "connector_quarantined",
                   "connector_freshness_seconds"):
        assert family in referenced, family


def test_connector_metrics_prints_the_exposition(namespace, redis_client, tmp_path,
                                                 monkeypatch) -> None:
    from click.testing import CliRunner

    from sandbox import harness
    from tasks.cli import main

    config = harness.write_yaml(tmp_path / "config.yaml",
                                harness.demo_config("http://127.0.0.1:9"))
    for name, value in harness.SandboxSecrets().env("http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    keys = Keys(namespace)
    redis_client.rpush(keys.of("celery", "transform"), "m")
    result = CliRunner().invoke(main, ["metrics", "--config", str(config)])
    assert result.exit_code == 0, result.output
    found = samples(result.output)
    assert found[("connector_queue_depth", (("queue", "transform"),))] == 1
