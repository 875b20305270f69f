"""Prometheus text exposition (format 0.0.4), written by hand: a handful of series.

Counters live in one Redis hash (fleet-wide: every gunicorn worker and Celery worker adds to
the same numbers); gauges are read from the intake keys when /metrics is scraped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

import redis

from connector.intake.store import IntakeStore, read_counters
from connector.redis_conn import Keys

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LastSuccess = Callable[[str], float | None]
"""Source name → UNIX time of its last successful pipeline run (None: unknown)."""

# counter name in Redis → (metric, help, label names after `source`)
_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "received": (
        "connector_intake_events_received_total",
        "Deliveries and queue messages received.",
        ("via",),
    ),
    "accepted": (
        "connector_intake_events_accepted_total",
        "Deliveries recorded for processing.",
        ("via",),
    ),
    "events": (
        "connector_intake_asset_events_total",
        "Asset change events recorded (a delivery may carry several).",
        ("via",),
    ),
    "duplicate": (
        "connector_intake_events_duplicate_total",
        "Repeated deliveries (same delivery id) acknowledged without recording.",
        ("via",),
    ),
    "ignored": (
        "connector_intake_events_ignored_total",
        "Deliveries whose event types are ignored.",
        ("via",),
    ),
    "rejected": (
        "connector_intake_events_rejected_total",
        "Deliveries refused, by reason.",
        ("via", "reason"),
    ),
    "pushed": (
        "connector_intake_assets_pushed_total",
        "Assets handed to the PIM by real-time flushes.",
        (),
    ),
    "failed": (
        "connector_intake_assets_failed_total",
        "Assets whose real-time flush failed.",
        (),
    ),
}


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def render(
    client: redis.Redis,
    keys: Keys,
    stores: Iterable[IntakeStore],
    last_success: LastSuccess | None = None,
) -> str:
    """The whole /metrics page."""
    lines: list[str] = []
    stores_list = list(stores)
    counters = read_counters(client, keys)
    series: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for field_name, value in sorted(counters.items()):
        name, *labels = field_name.split("|")
        spec = _COUNTERS.get(name)
        if spec is None or not labels:
            continue
        metric, _, label_names = spec
        pairs = [("source", labels[0])]
        pairs += [(n, v) for n, v in zip(label_names, labels[1:], strict=False) if v]
        series[name].append((_labels(pairs), value))
    for name, (metric, help_text, _) in _COUNTERS.items():
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} counter")
        lines.extend(f"{metric}{lbl} {val}" for lbl, val in series.get(name, []))

    gauges: list[tuple[str, str, list[tuple[str, float]]]] = [
        ("connector_intake_queue_depth", "Assets waiting for a real-time flush.", []),
        ("connector_intake_in_flight", "Assets in batches being pushed now.", []),
        ("connector_intake_parked", "Unreadable messages kept with their reason.", []),
        ("connector_intake_failed_assets", "Assets whose flush failed for good.", []),
        (
            "connector_last_successful_run_timestamp_seconds",
            "End of the last successful pipeline run, UNIX time.",
            [],
        ),
    ]
    for store in stores_list:
        lbl = _labels([("source", store.source)])
        pipe = client.pipeline(transaction=False)
        pipe.zcard(store.pending_key)
        pipe.xlen(store.parked_key)
        pipe.hlen(store.failed_key)
        depth, parked, failed = pipe.execute()
        gauges[0][2].append((lbl, float(depth)))
        gauges[1][2].append((lbl, float(store.in_flight_count())))
        gauges[2][2].append((lbl, float(parked)))
        gauges[3][2].append((lbl, float(failed)))
        if last_success is not None:
            when = _safe(last_success, store.source)
            if when is not None:
                gauges[4][2].append((lbl, when))
    for metric, help_text, values in gauges:
        lines.append(f"# HELP {metric} {help_text}")
        lines.append(f"# TYPE {metric} gauge")
        lines.extend(f"{metric}{lbl} {_num(v)}" for lbl, v in values)
    return "\n".join(lines) + "\n"


def _safe(fn: LastSuccess, source: str) -> float | None:
    try:
        return fn(source)
    except Exception:  # a missing/odd run store must not break the scrape
        return None


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)
