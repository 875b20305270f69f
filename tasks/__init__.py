"""The task layer and composition root: `celery -A tasks worker|beat|flower`.

`connector/` is plain Python that knows nothing of Celery; this package is where the
processes are put together: the Celery app and its tasks (tasks.celery_app, settings in
celeryconfig.py), the names of tasks and queues (tasks.routing), what a process plugs into
the pipeline (tasks.wiring: the Celery enqueuer and the intake flush scheduler, installed
on worker start), the `connector` console script (tasks.cli), the webhook WSGI app
(tasks.web) and the AMQP intake consumer (tasks.amqp_consumer).

`app` is resolved lazily (PEP 562) so that importing `tasks.routing` — celeryconfig.py
does, so do tests and benchmarks — neither builds the app nor imports the task modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

TASK_MODULES = ("tasks.pipeline", "tasks.intake")
"""Imported with the app, so that a worker registers all tasks whatever `-A` form is used
(add new task modules here; `tasks.web` is the webhook WSGI app, not a task module)."""


def __getattr__(name: str) -> Any:
    if name == "app":
        from tasks.celery_app import app as found

        return found
    raise AttributeError(f"module 'tasks' has no attribute {name!r}")


__all__ = ["TASK_MODULES", "app"]
