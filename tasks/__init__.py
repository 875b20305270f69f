"""The Celery app: `celery -A tasks worker|beat|flower` (settings in celeryconfig.py).

Task bodies live in `connector` (plain Python); the modules of this package only declare
tasks (queue, retries, acks) and call into it. The task modules are imported here so that
a worker registers all tasks whatever `-A` form is used (add new task modules to
TASK_MODULES; `tasks.web` is the webhook WSGI app, not a task module).
"""

from __future__ import annotations

import importlib
import importlib.util

from celery import Celery

app = Celery("connector")
app.config_from_object("celeryconfig")

TASK_MODULES = ("tasks.pipeline", "tasks.intake")

for _name in TASK_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)

__all__ = ["TASK_MODULES", "app"]
