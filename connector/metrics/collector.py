"""The read side of the pipeline metrics: one prometheus_client collector, read at scrape time.

Counters come from two Redis hashes every process of the fleet adds to (`metrics`, written
through `connector.metrics.recorder`, and intake's `intake:metrics`); gauges are read from
the state itself when /metrics is scraped: queue lengths, dead-letter and quarantine sizes,
intake backlogs, watermarks (freshness). Nothing is kept in the scraping process, so any
number of `web` processes, on any host, serve the same numbers.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import cast

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from connector.config.model import Config
from connector.intake.store import IntakeStore, read_counters
from connector.metrics.recorder import SEP, metrics_key
from connector.pipeline.runs.report import DURATION_BUCKETS
from connector.redis_conn import Keys

#: what `generate_latest` writes for these (ASCII) names is the classic text format
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LastSuccess = Callable[[str], float | None]
"""Source name → UNIX time of its last successful pipeline run (None: unknown)."""

#: field name in the `metrics` hash → (metric, help, label names)
COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "runs_started": ("connector_runs_started_total", "Runs started.", ("source", "trigger")),
    "runs_resumed": (
        "connector_runs_resumed_total",
        "Runs whose unfinished steps were queued again (connector/pipeline/watchdog.py), "
        "by who asked: watchdog or operator.",
        ("source", "by"),
    ),
    "runs_finished": (
        "connector_runs_finished_total", "Runs finished, by final state.", ("source", "state")
    ),
    "assets": (
        "connector_assets_total",
        "Assets of finished runs (dry runs excluded), by outcome.",
        ("source", "outcome"),
    ),
    "pim_requests": (
        "connector_pim_requests_total",
        "PIM HTTP requests by method, endpoint template and status ('error': no answer).",
        ("method", "endpoint", "status"),
    ),
    "pim_throttled": (
        "connector_pim_throttled_total", "PIM answers 429 Too Many Requests.", ("endpoint",)
    ),
    "pim_retry_after": (
        "connector_pim_retry_after_seconds_total",
        "Seconds of Retry-After the PIM asked for (429/503); the fleet waits them out.",
        ("endpoint",),
    ),
    "budget_waits": (
        "connector_budget_waits_total",
        "Requests that waited for a budget slot (budget: pim, dam).",
        ("budget",),
    ),
    "budget_wait": (
        "connector_budget_wait_seconds_total",
        "Seconds spent waiting for a budget slot (concurrency, rate, Retry-After gate).",
        ("budget",),
    ),
    "pim_tokens": (
        "connector_pim_token_grants_total",
        "PIM token grants: password, refresh, refresh_refused.",
        ("grant",),
    ),
    "media_downloaded": (
        "connector_media_downloaded_bytes_total", "Bytes of DAM binaries downloaded.", ()
    ),
    "media_uploaded": (
        "connector_media_uploaded_bytes_total", "Bytes of media files uploaded to the PIM.", ()
    ),
}

DURATION_METRIC = "connector_run_duration_seconds"

#: counter name in `intake:metrics` → (metric, help, label names after `source`)
INTAKE_COUNTERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "received": (
        "connector_intake_events_received_total",
        "Deliveries and queue messages received.",
        ("via",),
    ),
    "accepted": (
        "connector_intake_events_accepted_total", "Deliveries recorded for processing.", ("via",)
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
        "connector_intake_events_ignored_total", "Deliveries whose event types are ignored.",
        ("via",),
    ),
    "rejected": (
        "connector_intake_events_rejected_total", "Deliveries refused, by reason.",
        ("via", "reason"),
    ),
    "pushed": (
        "connector_intake_assets_pushed_total", "Assets handed to the PIM by real-time flushes.",
        (),
    ),
    "failed": ("connector_intake_assets_failed_total", "Assets whose real-time flush failed.", ()),
}

#: kombu's Redis transport keeps priority messages in `<queue>\x06\x16<n>` lists
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class PipelineCollector(Collector):
    """Every metric of the connector, read from Redis at each `collect()`."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        config: Config,
        queues: Sequence[str] = (),
        *,
        last_success: LastSuccess | None = None,
        broker: redis.Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`queues`: Celery queues whose depth is read from `broker` (the Redis holding the
        broker, when not `client`); none with another broker (RabbitMQ has its exporter)."""
        self.client = client
        self.broker = broker if broker is not None else client
        self.keys = keys
        self.config = config
        self.queues = tuple(queues)
        self.last_success = last_success
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield from self._intake_counters()
        yield from self._gauges()

    # ------------------------------------------------------------ counters
    def _counters(self) -> Iterator[Metric]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(metrics_key(self.keys)))
        values: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        for key, raw_value in sorted(raw.items()):
            name, *labels = _s(key).split(SEP)
            values[name].append((labels, float(raw_value)))
        for name, (metric, help_text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(metric, help_text, labels=label_names)
            for labels, number in values.get(name, []):
                if len(labels) == len(label_names):
                    family.add_metric(labels, number)
            yield family
        yield self._durations(values)

    def _durations(self, values: dict[str, list[tuple[list[str], float]]]) -> Metric:
        """Buckets are stored per observation (not cumulative): summed up here."""
        family = HistogramMetricFamily(
            DURATION_METRIC, "Duration of finished runs (start to finish).", labels=("source",)
        )
        sums = {labels[0]: v for labels, v in values.get("run_duration_sum", []) if labels}
        per_bucket: dict[str, dict[str, float]] = defaultdict(dict)
        for labels, value in values.get("run_duration_bucket", []):
            if len(labels) == 2:
                per_bucket[labels[0]][labels[1]] = value
        for source in sorted(set(sums) | set(per_bucket)):
            running = 0.0
            buckets: list[tuple[str, float]] = []
            for bound in (*(repr(b) for b in DURATION_BUCKETS), "+Inf"):
                running += per_bucket[source].get(bound, 0.0)
                buckets.append((bound, running))
            family.add_metric([source], buckets, sums.get(source, 0.0))
        return family

    def _intake_counters(self) -> Iterator[Metric]:
        """intake:metrics fields are `<name>|<source>|<label>…`; a missing label is empty."""
        series: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        for field_name, value in sorted(read_counters(self.client, self.keys).items()):
            name, *labels = field_name.split("|")
            spec = INTAKE_COUNTERS.get(name)
            if spec is None or not labels:
                continue
            width = 1 + len(spec[2])
            series[name].append(((labels + [""] * width)[:width], float(value)))
        for name, (metric, help_text, label_names) in INTAKE_COUNTERS.items():
            family = CounterMetricFamily(metric, help_text, labels=("source", *label_names))
            for labels, number in series.get(name, []):
                family.add_metric(labels, number)
            yield family

    # ------------------------------------------------------------ gauges
    def _gauges(self) -> Iterator[Metric]:
        now = self.clock()
        depth = GaugeMetricFamily(
            "connector_queue_depth", "Messages waiting in each Celery queue (Redis broker).",
            labels=("queue",),
        )
        if self.queues:
            pipe = self.broker.pipeline(transaction=False)
            for queue in self.queues:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(self.keys.of("celery", queue + suffix))
            lengths = pipe.execute()
            per = len(_PRIORITY_SUFFIXES)
            for i, queue in enumerate(self.queues):
                depth.add_metric([queue], float(sum(lengths[i * per:(i + 1) * per])))
        yield depth

        source_gauges = {
            "dead": GaugeMetricFamily(
                "connector_dead_letters", "Dead letters kept (per source).", labels=("source",)),
            "quarantine": GaugeMetricFamily(
                "connector_quarantined", "Quarantined DAM records kept.", labels=("source",)),
            "intake_depth": GaugeMetricFamily(
                "connector_intake_queue_depth", "Assets waiting for a real-time flush.",
                labels=("source",)),
            "in_flight": GaugeMetricFamily(
                "connector_intake_in_flight", "Assets in batches being pushed now.",
                labels=("source",)),
            "parked": GaugeMetricFamily(
                "connector_intake_parked", "Unreadable messages kept with their reason.",
                labels=("source",)),
            "intake_failed": GaugeMetricFamily(
                "connector_intake_failed_assets", "Assets whose flush failed for good.",
                labels=("source",)),
            "last_success": GaugeMetricFamily(
                "connector_last_successful_run_timestamp_seconds",
                "End of the last successful pipeline run, UNIX time.", labels=("source",)),
            "watermark": GaugeMetricFamily(
                "connector_watermark_timestamp_seconds",
                "Watermark of the source: DAM changes after it are not known to be in the PIM.",
                labels=("source",)),
            "oldest_pending": GaugeMetricFamily(
                "connector_intake_oldest_pending_age_seconds",
                "Age of the oldest intake event waiting for a flush (0: none waiting).",
                labels=("source",)),
            "freshness": GaugeMetricFamily(
                "connector_freshness_seconds",
                "Age of the oldest DAM change not known to be in the PIM "
                "(docs/operations.md, Metrics).",
                labels=("source",)),
        }
        for source in self.config.sources:
            name = source.name
            store = IntakeStore(self.client, self.keys, name, source.realtime)
            pipe = self.client.pipeline(transaction=False)
            pipe.hlen(self.keys.of("dead", name))
            pipe.hlen(self.keys.of("quarantine", name))
            pipe.zcard(store.pending_key)
            pipe.xlen(store.parked_key)
            pipe.hlen(store.failed_key)
            pipe.zrange(store.pending_key, 0, 0, withscores=True)
            pipe.get(self.keys.of("watermark", name))
            dead, quarantined, pending, parked, failed, oldest, watermark = pipe.execute()
            source_gauges["dead"].add_metric([name], float(dead))
            source_gauges["quarantine"].add_metric([name], float(quarantined))
            source_gauges["intake_depth"].add_metric([name], float(pending))
            source_gauges["in_flight"].add_metric([name], float(store.in_flight_count()))
            source_gauges["parked"].add_metric([name], float(parked))
            source_gauges["intake_failed"].add_metric([name], float(failed))
            oldest_score = float(oldest[0][1]) if oldest else None
            oldest_age = max(0.0, now - oldest_score) if oldest_score is not None else 0.0
            source_gauges["oldest_pending"].add_metric([name], oldest_age)
            mark = _timestamp(watermark)
            if mark is not None:
                source_gauges["watermark"].add_metric([name], mark)
            source_gauges["freshness"].add_metric(
                [name], freshness_age(now, oldest_score, mark, source.schedule is not None))
            if self.last_success is not None:
                when = _safe(self.last_success, name)
                if when is not None:
                    source_gauges["last_success"].add_metric([name], when)
        yield from source_gauges.values()


def _timestamp(raw: bytes | None) -> float | None:
    """A stored ISO moment (the watermark) as UNIX time."""
    if not raw:
        return None
    from connector.pipeline.runs.record import parse_time

    moment = parse_time(_s(raw))
    return moment.timestamp() if moment else None


def _safe(fn: LastSuccess, source: str) -> float | None:
    try:
        return fn(source)
    except Exception:  # a missing/odd run store must not break the scrape
        return None


def exposition(collector: PipelineCollector) -> bytes:
    """The text exposition (format 0.0.4) of everything `collector` reads."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def exported_names(collector: PipelineCollector) -> set[str]:
    """Every sample name the collector can expose (with `_bucket`/`_sum`/`_count`, `_total`)."""
    names: set[str] = set()
    for metric, _, _ in (*COUNTERS.values(), *INTAKE_COUNTERS.values()):
        names.add(metric)
    for suffix in ("_bucket", "_sum", "_count"):
        names.add(DURATION_METRIC + suffix)
    for family in collector._gauges():
        names.add(family.name)
    return names


def run_store_last_success(client: redis.Redis, keys: Keys) -> LastSuccess:
    """Source → end (UNIX) of its newest succeeded run among the last 50, from the run store."""
    from connector.pipeline.runs import RunState, RunStore

    runs = RunStore(client, keys)

    def last_success(source: str) -> float | None:
        for run_id in runs.run_ids(source, limit=50):  # newest first
            try:
                record = runs.get(run_id)
            except Exception:  # expired between the index and the record
                continue
            if record.state == RunState.SUCCEEDED and record.finished_at:
                return float(record.finished_at.timestamp())
        return None

    return last_success


def freshness_age(
    now: float, oldest_pending: float | None, watermark: float | None, scheduled: bool
) -> float:
    """The age of the oldest DAM change not yet in the PIM (docs/operations.md, "Metrics"):
    the oldest intake event waiting for a flush, and, for a scheduled source only (it
    catches up by itself), the time since its watermark. One definition for the gauge and
    for the freshness alert."""
    ages = [max(0.0, now - oldest_pending) if oldest_pending is not None else 0.0]
    if watermark is not None and scheduled:
        ages.append(max(0.0, now - watermark))
    return max(ages)
