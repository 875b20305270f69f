"""What this process plugs into the connector: the composition root's wiring.

The pipeline hands work to a task queue through `connector.pipeline.Enqueuer`, and intake
schedules flushes through a `FlushScheduler`; both are Celery here. Every process that
enqueues installs them from its entry point: workers on start (tasks.celery_app), the
`connector` command (tasks.cli), the webhook receiver (tasks.web). Nothing in
`connector/` imports this package.
"""

from __future__ import annotations

import logging
from typing import Any

from connector.pipeline.services import Services, set_services, wire

log = logging.getLogger(__name__)


class LazyCeleryEnqueuer:
    """tasks.pipeline.CeleryEnqueuer, imported on first use: wiring a process (the CLI's
    `--help` included) must not build the Celery app and import every task module."""

    def fetch(self, source: str, run_id: str, part: int = 0) -> None:
        from tasks.pipeline import CeleryEnqueuer

        CeleryEnqueuer().fetch(source, run_id, part)

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        from tasks.pipeline import CeleryEnqueuer

        CeleryEnqueuer().transform(run_id, chunk_id, media)

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        from tasks.pipeline import CeleryEnqueuer

        CeleryEnqueuer().push(run_id, batch_id, countdown)


def schedule_flush(source: str, countdown: float) -> None:
    """The intake FlushScheduler: tasks.intake.schedule_flush, imported on first use."""
    from tasks.intake import schedule_flush as celery_schedule_flush

    celery_schedule_flush(source, countdown)


def install() -> None:
    """Make this process's Services use the Celery enqueuer and flush scheduler."""
    wire(enqueuer=LazyCeleryEnqueuer(), flush_scheduler=schedule_flush)


def metrics_queues() -> tuple[Any, tuple[str, ...]]:
    """The Redis holding the broker and the Celery queues whose depth /metrics reports;
    (None, ()) with another broker (RabbitMQ: its own exporter tells queue depths)."""
    import celeryconfig
    from connector.redis_conn import get_redis
    from tasks import routing

    if not celeryconfig.broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None, ()
    return get_redis(celeryconfig.broker_url), (*routing.QUEUES, routing.DEFAULT_QUEUE)


def flush_metrics() -> None:
    """Write this process's metric deltas to Redis (after each task; connector.metrics)."""
    from connector import metrics
    from connector.redis_conn import get_redis

    metrics.flush(get_redis())


def build_services() -> Services:
    """This process's Services, from $CONNECTOR_CONFIG, with the Celery wiring."""
    from connector.config import load_config

    install()
    return Services(load_config())


def install_services() -> None:
    """Wire and build Services now (a worker child, before its first task). A config that
    cannot be loaded must not kill the child: the first task reports it instead."""
    install()
    from connector import metrics
    from connector.redis_conn import get_redis

    metrics.recorder.reset()  # deltas inherited from the parent are the parent's
    metrics.bind(get_redis())  # a long task flushes its metrics every few seconds too
    try:
        set_services(build_services())
    except Exception as exc:
        log.warning("pipeline services not built at worker start: %s", exc)
