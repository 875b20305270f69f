"""The Celery app (`tasks.app`), its task modules, and the worker-start wiring.

A worker process — the prefork children included, each on `worker_process_init` — gets
the pipeline's collaborators from tasks.wiring before it runs a task: the connector never
looks for its task queue by itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_init, worker_process_init

app = Celery("connector")
app.config_from_object("celeryconfig")

log = logging.getLogger(__name__)


@worker_init.connect
def _wire_worker(sender: Any = None, **kwargs: Any) -> None:
    """The worker's main process (and a solo/threads pool, which has no children)."""
    from tasks.wiring import install

    install()


@worker_process_init.connect
def _wire_child(sender: Any = None, **kwargs: Any) -> None:
    """Each prefork child builds its Services now, with the Celery enqueuer."""
    from tasks.wiring import install_services

    install_services()


@task_postrun.connect
def _flush_metrics(sender: Any = None, **kwargs: Any) -> None:
    """The task's metric deltas (PIM requests, bytes, budget waits) reach Redis in one
    pipeline before the next task (connector.metrics)."""
    from tasks.wiring import flush_metrics

    flush_metrics()


from tasks import TASK_MODULES  # noqa: E402  (the task modules import `app` from here)

for _name in TASK_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)

__all__ = ["app"]
