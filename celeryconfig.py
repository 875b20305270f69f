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
from typing import Any, cast

from celery.schedules import crontab
from kombu import Queue

from connector import timebudget
from connector.pipeline.schedule import ScheduleEntry, schedule_entries
from connector.settings import key_namespace, redis_url
from tasks import routing

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- time budget
# Task time limits, the visibility timeout and the longest countdown: one place,
# connector/timebudget.py (why they must fit together is said there); the task decorators
# (tasks/pipeline.py) read them from here, the config loader checks countdowns against them.
TASK_SOFT_TIME_LIMIT = timebudget.TASK_SOFT_TIME_LIMIT        # transform / push / intake
TASK_TIME_LIMIT = timebudget.TASK_TIME_LIMIT
FETCH_SOFT_TIME_LIMIT = timebudget.FETCH_SOFT_TIME_LIMIT      # one slice of a fetch
FETCH_TIME_LIMIT = timebudget.FETCH_TIME_LIMIT
RECONCILE_SOFT_TIME_LIMIT = timebudget.RECONCILE_SOFT_TIME_LIMIT
RECONCILE_TIME_LIMIT = timebudget.RECONCILE_TIME_LIMIT
MAX_COUNTDOWN = timebudget.COUNTDOWN_MAX
VISIBILITY_TIMEOUT = timebudget.VISIBILITY_TIMEOUT

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
# names on the broker (tasks/routing.py broker_conf): on AMQP `<namespace>.<queue>`, each
# queue also known by its table name (alias), so `-Q fetch` and `queue="fetch"` still work
_broker_names = routing.broker_conf(_namespace, broker_url)
task_default_queue = DEFAULT_QUEUE
task_default_exchange = str(_broker_names["task_default_exchange"])
task_default_routing_key = str(_broker_names["task_default_routing_key"])
task_queues = [
    Queue.from_dict(name, **options)
    for name, options in cast(dict[str, dict[str, str]], _broker_names["task_queues"]).items()
]
if "control_exchange" in _broker_names:
    control_exchange = str(_broker_names["control_exchange"])
    event_exchange = str(_broker_names["event_exchange"])
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


def build_beat_schedule() -> tuple[dict[str, dict[str, Any]], str | None]:
    """From $CONNECTOR_CONFIG when set and valid; otherwise empty, with the reason."""
    if not os.environ.get("CONNECTOR_CONFIG"):
        return {}, "CONNECTOR_CONFIG is not set"
    try:
        from connector.config import load_config

        config = load_config()
        return {e.name: _beat_entry(e) for e in schedule_entries(config)}, None
    except Exception as exc:  # a broken config must not stop workers from starting
        log.warning("no beat schedule: the config could not be used: %s", exc)
        return {}, f"the config could not be used: {exc}"


beat_schedule, BEAT_SCHEDULE_ERROR = build_beat_schedule()

# HA beat (tasks/beat.py): celery-redbeat keeps the schedule and a lock in the connector's
# Redis, inside the namespace (`<ns>:beat:<entry>`, `<ns>:beat::lock`). Any number of beats
# may run; the lock holder sends, the others wait. The holder renews the lock on every tick
# (at most BEAT_MAX_INTERVAL apart); redbeat's lock timeout is 5 x the max interval (25 s),
# so a standby takes over at most ~30 s after the holder died (`--max-interval` scales both).
BEAT_MAX_INTERVAL = 5
beat_scheduler = "tasks.beat:ConnectorBeatScheduler"
beat_max_loop_interval = BEAT_MAX_INTERVAL
redbeat_redis_url = _redis_url
redbeat_redis_options: dict[str, Any] = {}   # not the broker's transport options
redbeat_key_prefix = f"{_namespace}:beat:"
