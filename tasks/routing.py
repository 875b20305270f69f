"""The one routing table: every Celery task name, every queue name, and which goes where.

Why one module: the names are a contract between processes (beat, workers, the CLI, the
webhook receiver, tests and benchmarks that send messages from an app of their own), and
a name spelled differently in two places is a message nobody consumes. celeryconfig.py
builds `task_queues`, `task_routes` and the beat entries from here; the task modules take
their names from here; tests/ and bench/ send by these names.

Pure data on purpose: importing it imports neither Celery nor the connector, so a test
process can use it without building the app (celeryconfig reads the environment once).
"""

from __future__ import annotations

from typing import Final

# ---------------------------------------------------------------- queues (one per stage)
FETCH_QUEUE: Final = "fetch"
TRANSFORM_QUEUE: Final = "transform"
MEDIA_QUEUE: Final = "media"          # transform of media families (downloads/uploads)
PUSH_QUEUE: Final = "push"            # PIM writes: the fleet-wide PIM budget lives here
DEFAULT_QUEUE: Final = "celery"       # anything not routed (other modules' tasks)

#: the stage queues, in pipeline order (celeryconfig declares these + DEFAULT_QUEUE)
QUEUES: Final = (FETCH_QUEUE, TRANSFORM_QUEUE, PUSH_QUEUE, MEDIA_QUEUE)
#: what a `worker` line of the Procfile consumes (push has its own line)
WORKER_QUEUES: Final = (FETCH_QUEUE, TRANSFORM_QUEUE, MEDIA_QUEUE, DEFAULT_QUEUE)

# ---------------------------------------------------------------- task names
#: with a run id: that run's fetch; without (beat): start a run and fetch it, in one task
FETCH_TASK: Final = "tasks.pipeline.fetch_changed_assets"
TRANSFORM_TASK: Final = "tasks.pipeline.transform_chunk"
PUSH_TASK: Final = "tasks.pipeline.push_batch"
RECONCILE_TASK: Final = "tasks.pipeline.reconcile_source"
SYNC_IDS_TASK: Final = "tasks.pipeline.sync_asset_ids"
FRESHNESS_TASK: Final = "tasks.pipeline.check_freshness"  # alerts.freshness_seconds
WATCH_TASK: Final = "tasks.pipeline.watch_runs"  # resumes stalled runs (default queue)
FLUSH_TASK: Final = "tasks.intake.flush"
SWEEP_TASK: Final = "tasks.intake.sweep"

#: the pipeline's tasks (a run's steps, reconcile, real-time ids)
PIPELINE_TASKS: Final = (FETCH_TASK, TRANSFORM_TASK, PUSH_TASK, RECONCILE_TASK, SYNC_IDS_TASK)

# ---------------------------------------------------------------- routes
ROUTES: Final[dict[str, dict[str, str]]] = {
    FETCH_TASK: {"queue": FETCH_QUEUE},
    RECONCILE_TASK: {"queue": FETCH_QUEUE},
    TRANSFORM_TASK: {"queue": TRANSFORM_QUEUE},  # media families: `media`, per message
    PUSH_TASK: {"queue": PUSH_QUEUE},
    SYNC_IDS_TASK: {"queue": PUSH_QUEUE},
    FLUSH_TASK: {"queue": PUSH_QUEUE},  # consumed by every push worker of the Procfile
    SWEEP_TASK: {"queue": PUSH_QUEUE},
}


def queue_of(task: str) -> str:
    """The queue `task` is sent to (DEFAULT_QUEUE when it has no route)."""
    return ROUTES.get(task, {}).get("queue", DEFAULT_QUEUE)


def transform_queue(media: bool) -> str:
    """Chunks of media families go to their own queue (slow downloads/uploads)."""
    return MEDIA_QUEUE if media else TRANSFORM_QUEUE


# ---------------------------------------------------------------- names on the broker
def is_amqp(broker_url: str) -> bool:
    """An AMQP broker (RabbitMQ): queue names are the broker's own, shared by a vhost."""
    return broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


def broker_queue(queue: str, namespace: str, broker_url: str) -> str:
    """The name `queue` has on the broker. AMQP: `<namespace>.<queue>` (the exchange and
    routing key too), so two deployments sharing a vhost do not consume each other's
    tasks, like CONNECTOR_NAMESPACE separates their Redis keys. Redis: the table's name;
    the transport already prefixes every broker key (`global_keyprefix`, celeryconfig),
    and a second prefix would only move the lists away from where tools look."""
    return f"{namespace}.{queue}" if is_amqp(broker_url) else queue


def broker_conf(namespace: str, broker_url: str) -> dict[str, object]:
    """The Celery settings that name things on the broker, for the connector's app
    (celeryconfig) and for any app that sends to it (tests, benchmarks): the queues, each
    known by its table name as an alias (`-Q fetch`, `queue="fetch"` keep working), the
    default exchange, and on AMQP the control and event exchanges (a ping or Flower sees
    this deployment's workers only). Plain dicts: Celery builds the kombu objects."""
    names = {q: broker_queue(q, namespace, broker_url) for q in (*QUEUES, DEFAULT_QUEUE)}
    queues = {
        name: {"exchange": name, "exchange_type": "direct", "routing_key": name,
               **({"alias": queue} if name != queue else {})}
        for queue, name in names.items()
    }
    conf: dict[str, object] = {
        "task_queues": queues,
        "task_default_queue": DEFAULT_QUEUE,
        "task_default_exchange": names[DEFAULT_QUEUE],
        "task_default_routing_key": names[DEFAULT_QUEUE],
    }
    if is_amqp(broker_url):
        conf["control_exchange"] = f"{namespace}.celery"
        conf["event_exchange"] = f"{namespace}.celeryev"
    return conf


# ---------------------------------------------------------------- beat
#: what a schedule entry of the user config runs (`connector.pipeline.schedule` kinds)
SCHEDULED_TASKS: Final[dict[str, str]] = {
    "sync": FETCH_TASK,  # no run id: the task starts the run and fetches in one hop
    "reconcile": RECONCILE_TASK,
    "freshness": FRESHNESS_TASK,  # default queue: any `worker` line consumes it
    "watch": WATCH_TASK,          # default queue too
}
#: the intake safety net, run by beat every SWEEP_EVERY seconds
SWEEP_ENTRY: Final = "intake:sweep"
SWEEP_EVERY: Final = 30.0
