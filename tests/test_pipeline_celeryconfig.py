"""celeryconfig.py: the Celery traps of docs/design.md, asserted. Each check imports the
module in a fresh interpreter, because its values come from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from connector.config.model import Config, ScheduleConfig, SourceConfig, SyncConfig
from connector.pipeline.schedule import ScheduleError, schedule_entries
from tasks import routing

ROOT = Path(__file__).resolve().parent.parent

_DUMP = textwrap.dedent(
    """
    import json, celeryconfig as c
    from tasks import app
    from tasks.pipeline import RETRY_POLICY
    limits = {n: (t.soft_time_limit, t.time_limit) for n, t in app.tasks.items()
              if n.startswith("tasks.")}
    print(json.dumps({
        "broker_url": c.broker_url,
        "broker_transport_options": c.broker_transport_options,
        "result_backend_transport_options": c.result_backend_transport_options,
        "serializers": [c.task_serializer, c.result_serializer, c.event_serializer],
        "accept": c.accept_content, "result_accept": c.result_accept_content,
        "acks_late": app.conf.task_acks_late,
        "reject_on_worker_lost": app.conf.task_reject_on_worker_lost,
        "prefetch": app.conf.worker_prefetch_multiplier,
        "ignore_result": app.conf.task_ignore_result,
        "result_expires": c.result_expires,
        "events": [app.conf.worker_send_task_events, app.conf.task_send_sent_event],
        "max_memory": app.conf.worker_max_memory_per_child,
        "time_limits": [c.task_soft_time_limit, c.task_time_limit],
        "task_limits": limits,
        "queues": sorted(q.name for q in app.conf.task_queues),
        "routes": app.conf.task_routes,
        "retry_backoff_max": RETRY_POLICY["retry_backoff_max"],
        "autoretry": sorted(e.__name__ for e in RETRY_POLICY["autoretry_for"]),
        "beat": {k: {"task": v["task"], "schedule": repr(v["schedule"]), "kwargs": v["kwargs"]}
                 for k, v in c.beat_schedule.items()},
    }))
    """
)


def _load(env: dict[str, str], cwd: Path = ROOT) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("CELERY_BROKER_URL", "CONNECTOR_CONFIG", "CONNECTOR_NAMESPACE")}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _DUMP], env=full, cwd=cwd, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_delivery_guarantees_json_and_visibility_timeout() -> None:
    conf = _load({"REDIS_URL": "redis://127.0.0.1:6379/0", "CONNECTOR_NAMESPACE": "ns-a"})
    assert conf["serializers"] == ["json", "json", "json"]
    assert conf["accept"] == ["json"] and conf["result_accept"] == ["json"]
    assert conf["acks_late"] and conf["reject_on_worker_lost"] and conf["prefetch"] == 1
    assert conf["ignore_result"] and conf["result_expires"] > 0
    assert conf["events"] == [True, True] and conf["max_memory"] > 0
    soft, hard = conf["time_limits"]
    assert 0 < soft < hard
    # the same visibility timeout for broker and result backend, and larger than the
    # longest countdown (backoff cap) + the longest hard time limit of any task
    visibility = conf["broker_transport_options"]["visibility_timeout"]
    assert conf["result_backend_transport_options"]["visibility_timeout"] == visibility
    longest_limit = max(h or hard for _, h in conf["task_limits"].values())
    longest_countdown = max(conf["retry_backoff_max"], SyncConfig().backoff_max)
    assert visibility > longest_limit + longest_countdown
    for name, (task_soft, task_hard) in conf["task_limits"].items():
        assert (task_soft or soft) < (task_hard or hard), name
    assert "TransientPimError" in conf["autoretry"]
    assert "PermanentPimError" not in conf["autoretry"]


def test_queues_routes_and_namespace_isolation() -> None:
    conf = _load({"REDIS_URL": "redis://127.0.0.1:6379/0", "CONNECTOR_NAMESPACE": "tenant-7"})
    assert set(routing.QUEUES) <= set(conf["queues"])
    assert conf["routes"][routing.FETCH_TASK]["queue"] == routing.FETCH_QUEUE
    assert conf["routes"][routing.TRANSFORM_TASK]["queue"] == routing.TRANSFORM_QUEUE
    assert conf["routes"][routing.PUSH_TASK]["queue"] == routing.PUSH_QUEUE
    assert conf["broker_url"] == "redis://127.0.0.1:6379/0"
    assert conf["broker_transport_options"]["global_keyprefix"] == "tenant-7:celery:"
    assert conf["result_backend_transport_options"]["global_keyprefix"] == "tenant-7:celery:"


def test_broker_url_prefers_celery_broker_url_and_amqp_has_no_redis_options() -> None:
    conf = _load({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                  "REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert conf["broker_url"].startswith("amqp://")
    assert "global_keyprefix" not in conf["broker_transport_options"]


def test_beat_schedule_comes_from_the_user_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(
        """
        families:
          packshots:
            match: {folder: products}
            mapping:
              label: {property: name, type: text}
        sources:
          one:
            type: folder
            folder: {path: .}
            schedule: {every: 90s}
            reconcile_schedule: {crontab: "15 3 * * 1"}
          two:
            type: folder
            folder: {path: .}
            schedule: {crontab: "*/5 * * * *"}
          three:
            type: folder
            folder: {path: .}
        """
    ))
    conf = _load({"CONNECTOR_CONFIG": str(config)}, cwd=tmp_path)
    beat = conf["beat"]
    assert set(beat) == {"sync:one", "reconcile:one", "sync:two", "runs:watch"}
    # the watchdog of stalled runs is always there (connector/pipeline/watchdog.py)
    assert beat["runs:watch"]["task"] == routing.WATCH_TASK
    assert beat["runs:watch"]["schedule"] == "datetime.timedelta(seconds=60)"
    assert beat["sync:one"]["task"] == routing.FETCH_TASK
    assert beat["sync:one"]["kwargs"] == {"source": "one", "trigger": "schedule"}
    assert beat["sync:one"]["schedule"] == "datetime.timedelta(seconds=90)"
    assert beat["reconcile:one"]["task"] == routing.RECONCILE_TASK
    assert "15 3 * * 1" in beat["reconcile:one"]["schedule"]
    assert "*/5" in beat["sync:two"]["schedule"]
    # no config (or a broken one): no schedule, and the worker still starts
    assert _load({})["beat"] == {}
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: 12\n")
    assert _load({"CONNECTOR_CONFIG": str(broken)})["beat"] == {}


def test_schedule_entries_reject_a_bad_crontab() -> None:
    source = SourceConfig(name="s", type="folder", schedule=ScheduleConfig(crontab="* * *"))
    try:
        schedule_entries(Config(families=(), sources=(source,)))
    except ScheduleError as exc:
        assert "5 fields" in str(exc)
    else:
        raise AssertionError("a 3-field crontab was accepted")


def test_the_scheduled_poll_can_be_turned_off_for_a_real_time_source() -> None:
    from connector.config.model import RealtimeConfig

    polled = SourceConfig(name="a", type="folder", schedule=ScheduleConfig(every=60))
    realtime_only = SourceConfig(
        name="b",
        type="folder",
        schedule=ScheduleConfig(every=60),
        reconcile_schedule=ScheduleConfig(crontab="0 3 * * *"),
        realtime=RealtimeConfig(poll_enabled=False),
    )
    names = [e.name for e in schedule_entries(Config(families=(), sources=(polled, realtime_only)))]
    assert names == ["sync:a", "reconcile:b", "runs:watch"]


def test_a_freshness_threshold_adds_its_beat_entry(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(
        """
        alerts:
          webhooks: ["${ALERT_URL}"]
          freshness_seconds: 2h
        families:
          packshots:
            match: {folder: products}
            mapping:
              label: {property: name, type: text}
        sources:
          one:
            type: folder
            folder: {path: .}
            schedule: {every: 5m}
        """
    ))
    conf = _load({"CONNECTOR_CONFIG": str(config), "ALERT_URL": "https://hooks.example.com/x"},
                 cwd=tmp_path)
    assert set(conf["beat"]) == {"sync:one", "alerts:freshness", "runs:watch"}
    assert conf["beat"]["alerts:freshness"]["task"] == routing.FRESHNESS_TASK
    assert conf["beat"]["alerts:freshness"]["schedule"] == "datetime.timedelta(seconds=60)"


_ROUTE = textwrap.dedent(
    """
    import json
    from tasks import app, routing
    router, queues = app.amqp.router, app.amqp.queues
    sent = {t: router.route({}, t)["queue"] for t in (routing.FETCH_TASK, "other.task")}
    queues.select(["fetch", "media"])
    print(json.dumps({
        "declared": {q.name: [q.exchange.name, q.routing_key, q.alias]
                     for q in app.conf.task_queues},
        "sent": {t: q.name for t, q in sent.items()},
        "consumed": sorted(queues.consume_from),
        "control": app.conf.control_exchange, "events": app.conf.event_exchange,
    }))
    """
)


def _route(env: dict[str, str]) -> dict[str, Any]:
    full = {k: v for k, v in os.environ.items()
            if k not in ("CELERY_BROKER_URL", "CONNECTOR_CONFIG", "CONNECTOR_NAMESPACE")}
    full.update(env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _ROUTE], env=full, cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_amqp_queues_and_exchanges_carry_the_namespace() -> None:
    got = _route({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                  "REDIS_URL": "redis://127.0.0.1:6379/0", "CONNECTOR_NAMESPACE": "t7"})
    assert got["declared"]["t7.fetch"] == ["t7.fetch", "t7.fetch", "fetch"]
    assert set(got["declared"]) == {f"t7.{q}" for q in (*routing.QUEUES, routing.DEFAULT_QUEUE)}
    # the routing table's names still work: routes, `-Q fetch`, the default queue
    assert got["sent"] == {routing.FETCH_TASK: "t7.fetch", "other.task": "t7.celery"}
    assert got["consumed"] == ["t7.fetch", "t7.media"]
    assert (got["control"], got["events"]) == ("t7.celery", "t7.celeryev")


def test_redis_queue_names_stay_plain_under_the_key_prefix() -> None:
    got = _route({"REDIS_URL": "redis://127.0.0.1:6379/0", "CONNECTOR_NAMESPACE": "t7"})
    assert got["declared"]["fetch"] == ["fetch", "fetch", None]
    assert got["sent"] == {routing.FETCH_TASK: "fetch", "other.task": "celery"}
    assert (got["control"], got["events"]) == ("celery", "celeryev")


def test_every_task_but_reconcile_fits_rabbitmqs_default_consumer_timeout() -> None:
    """The fetch goes on in parts (`sync.fetch_slice_seconds`) instead of running for an
    hour: its hard limit, like every other task's, is under RabbitMQ's 30 min."""
    conf = _load({"REDIS_URL": "redis://127.0.0.1:6379/0"})
    _, hard = conf["time_limits"]
    for name, (_, task_hard) in conf["task_limits"].items():
        if name != routing.RECONCILE_TASK:
            assert (task_hard or hard) < 1800, name
    fetch_soft = conf["task_limits"][routing.FETCH_TASK][0]
    assert fetch_soft >= 600 + 300  # the longest slice accepted + a page behind a 300 s Retry-After
