"""`celery -A tests.faults.celery_app worker`: the connector's app with a short broker
visibility timeout (FAULTS_VISIBILITY_TIMEOUT seconds) and a restore sweep every second.

Why: with the Redis transport, the messages a SIGKILLed worker held unacked come back only
after the visibility timeout (2 h in celeryconfig), and not before the restore mutex a
killed worker may have held expires (300 s). The kill test shortens that time scale;
everything else is the production configuration.
"""

from __future__ import annotations

import os

from tasks import app

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

__all__ = ["app"]
