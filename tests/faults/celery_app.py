"""`celery -A tests.faults.celery_app worker`: the connector's app with a short broker
visibility timeout (FAULTS_VISIBILITY_TIMEOUT seconds) and a restore sweep every second.

Why: with the Redis transport, the messages a SIGKILLed worker held unacked come back only
after the visibility timeout (2 h in celeryconfig), and not before the restore mutex a
killed worker may have held expires (300 s). The kill test shortens that time scale;
everything else is the production configuration.

FAULTS_FETCH_TIME_LIMIT (seconds, optional): the fetch task's hard time limit, with no soft
limit, so that the time-limit test sees the pool kill a fetch (tests/faults/
test_hard_time_limit.py) without waiting 16 minutes; FAULTS_RECONCILE_TIME_LIMIT the
same for the reconcile task (an hour in production).
"""

from __future__ import annotations

import os

from tasks import app
from tasks.pipeline import fetch_changed_assets, reconcile_source

_visibility = float(os.environ.get("FAULTS_VISIBILITY_TIMEOUT") or 10)
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": _visibility,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    # a worker SIGKILLed while it holds the restore mutex blocks every restore until the
    # mutex expires (300 s by default): keep that on the same compressed time scale
    "unacked_mutex_expire": max(2, int(_visibility / 2)),
}

_fetch_limit = os.environ.get("FAULTS_FETCH_TIME_LIMIT")
if _fetch_limit:  # billiard falls back to the pool's soft limit: no default one either
    app.conf.task_soft_time_limit = None
    fetch_changed_assets.time_limit = float(_fetch_limit)
    fetch_changed_assets.soft_time_limit = None
_reconcile_limit = os.environ.get("FAULTS_RECONCILE_TIME_LIMIT")
if _reconcile_limit:
    app.conf.task_soft_time_limit = None
    reconcile_source.time_limit = float(_reconcile_limit)
    reconcile_source.soft_time_limit = None

__all__ = ["app"]
