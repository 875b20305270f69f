"""The `web` process: `gunicorn tasks.web:app` serves the webhook receiver.

Wires `connector.intake.web.WebhookApp` to the config ($CONNECTOR_CONFIG, loaded once per
gunicorn worker), Redis ($REDIS_URL, keys under $CONNECTOR_NAMESPACE), Celery (flush tasks
are enqueued through `tasks.intake.schedule_flush`) and the pipeline's run store (for the
"last successful run" gauge of /metrics).
"""

from __future__ import annotations

import logging

from connector.intake.web import WebhookApp
from connector.metrics.collector import run_store_last_success
from connector.redis_conn import Keys, get_redis
from tasks.intake import config, schedule_flush
from tasks.wiring import install, metrics_queues

log = logging.getLogger(__name__)


def last_success(source: str) -> float | None:
    """End time (UNIX) of the newest succeeded run of `source` in the pipeline's run store."""
    return run_store_last_success(get_redis(), Keys())(source)


def create_app() -> WebhookApp:
    """The receiver of this gunicorn worker; the process is wired to Celery first (its
    entry point is this module: tasks.wiring)."""
    install()
    broker, queues = metrics_queues()
    return WebhookApp(
        config(), get_redis(), Keys(), schedule=schedule_flush, last_success=last_success,
        queues=queues, broker=broker,
    )


app = create_app()
