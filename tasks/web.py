"""The `web` process: `gunicorn tasks.web:app` serves the webhook receiver.

Wires `connector.intake.web.WebhookApp` to the config ($CONNECTOR_CONFIG, loaded once per
gunicorn worker), Redis ($REDIS_URL, keys under $CONNECTOR_NAMESPACE), Celery (flush tasks
are enqueued through `tasks.intake.schedule_flush`) and the pipeline's run store (for the
"last successful run" gauge of /metrics).
"""

from __future__ import annotations

import logging
from typing import Any

from connector.intake.web import WebhookApp
from connector.redis_conn import Keys, get_redis
from tasks.intake import config, schedule_flush
from tasks.wiring import install

log = logging.getLogger(__name__)


def last_success(source: str) -> float | None:
    """End time (UNIX) of the newest succeeded run of `source` in the pipeline's run store."""
    from connector.pipeline.runs import RunState, RunStore  # optional: no gauge if absent

    runs = RunStore(get_redis(), Keys())
    for run_id in runs.run_ids(source, limit=50):  # newest first
        record = _get(runs, run_id)
        if record is not None and record.state == RunState.SUCCEEDED and record.finished_at:
            return float(record.finished_at.timestamp())
    return None


def _get(runs: Any, run_id: str) -> Any:
    try:
        return runs.get(run_id)
    except Exception:
        return None


def create_app() -> WebhookApp:
    """The receiver of this gunicorn worker; the process is wired to Celery first (its
    entry point is this module: tasks.wiring)."""
    install()
    return WebhookApp(
        config(), get_redis(), Keys(), schedule=schedule_flush, last_success=last_success
    )


app = create_app()
