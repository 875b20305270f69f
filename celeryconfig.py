"""Celery settings of the connector (`app.config_from_object("celeryconfig")`).

Read docs/design.md ("Celery and Redis traps") before changing anything here: the values
below exist to defeat the known Celery/Redis traps (early ack, redelivery loops past the
visibility timeout, pickle, unbounded prefetch, one beat too many).

Environment:
  CELERY_BROKER_URL    broker (redis://… or amqp://…); default REDIS_URL
  REDIS_URL            Redis for connector state and the result backend
  CONNECTOR_NAMESPACE  prefix of every Redis key, broker keys included (Redis transport):
                       deployments/tests sharing one Redis server do not see each other
  CONNECTOR_CONFIG     the user config; its schedules become beat entries
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

from connector.pipeline.schedule import ScheduleEntry, schedule_entries
from connector.settings import key_namespace, redis_url
from tasks import routing

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- time budget
# Every countdown + time limit must stay well below the visibility timeout, or the Redis
# transport hands an unacked task to a second worker while the first still runs it.
TASK_SOFT_TIME_LIMIT = 300          # transform / push / intake
TASK_TIME_LIMIT = 360
FETCH_SOFT_TIME_LIMIT = 3300        # fetch streams the whole change set; reconcile too
FETCH_TIME_LIMIT = 3600
MAX_COUNTDOWN = 300                 # SyncConfig.backoff_max default; retries never wait longer
VISIBILITY_TIMEOUT = 2 * 3600       # > FETCH_TIME_LIMIT + MAX_COUNTDOWN, with margin

QUEUES = routing.QUEUES               # one per stage; names and routes: tasks/routing.py
DEFAULT_QUEUE = routing.DEFAULT_QUEUE  # anything not routed (other modules' tasks)

_namespace = key_namespace()
_redis_url = redis_url()
broker_url = os.environ.get("CELERY_BROKER_URL") or _redis_url
_redis_broker = broker_url.startswith(("redis://", "rediss://", "unix://"))

# ---------------------------------------------------------------- serialisation: JSON only
task_serializer = "json"
result_serializer = "json"
event_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

# ---------------------------------------------------------------- delivery guarantees
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_soft_time_limit = TASK_SOFT_TIME_LIMIT
task_time_limit = TASK_TIME_LIMIT
worker_max_memory_per_child = 512_000   # KiB: recycle a child that grew past ~500 MB
worker_max_tasks_per_child = 1000
broker_connection_retry_on_startup = True

broker_transport_options: dict[str, Any] = {"visibility_timeout": VISIBILITY_TIMEOUT}
if _redis_broker:
    broker_transport_options["global_keyprefix"] = f"{_namespace}:celery:"

# ---------------------------------------------------------------- results: not kept
task_ignore_result = True
result_expires = 3600
result_backend = _redis_url
result_backend_transport_options: dict[str, Any] = {
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "global_keyprefix": f"{_namespace}:celery:",
}

# ---------------------------------------------------------------- events for Flower
worker_send_task_events = True
task_send_sent_event = True

# ---------------------------------------------------------------- one queue per stage
task_default_queue = DEFAULT_QUEUE
task_default_exchange = DEFAULT_QUEUE
task_default_routing_key = DEFAULT_QUEUE
task_queues = [
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (*QUEUES, DEFAULT_QUEUE)
]
task_routes = {task: dict(route) for task, route in routing.ROUTES.items()}

timezone = "UTC"
enable_utc = True


# ---------------------------------------------------------------- beat
def _beat_entry(entry: ScheduleEntry) -> dict[str, Any]:
    """What the user's schedule says runs, as the task and queue tasks/routing.py name."""
    schedule: Any
    if entry.crontab is not None:
        minute, hour, dom, month, dow = entry.crontab
        schedule = crontab(minute=minute, hour=hour, day_of_month=dom, month_of_year=month,
                           day_of_week=dow)
    else:
        schedule = timedelta(seconds=entry.every or 0)
    task = routing.SCHEDULED_TASKS[entry.kind]
    options: dict[str, Any] = {"queue": routing.queue_of(task)}
    if entry.expires is not None:
        options["expires"] = entry.expires
    return {"task": task, "schedule": schedule, "kwargs": entry.kwargs, "options": options}


def build_beat_schedule() -> dict[str, dict[str, Any]]:
    """From $CONNECTOR_CONFIG when set and valid; otherwise empty (with a warning)."""
    if not os.environ.get("CONNECTOR_CONFIG"):
        return {}
    try:
        from connector.config import load_config

        config = load_config()
        return {e.name: _beat_entry(e) for e in schedule_entries(config)}
    except Exception as exc:  # a broken config must not stop workers from starting
        log.warning("no beat schedule: the config could not be used: %s", exc)
        return {}


beat_schedule = build_beat_schedule()
