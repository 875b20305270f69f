"""`connector intake redis-stream SOURCE` / `connector intake amqp SOURCE`: long-running
queue consumers (one process per source and transport; run several for more throughput).

Each message is recorded in Redis and acknowledged; flushes are enqueued as Celery tasks
(`tasks.intake.flush`, through $CONNECTOR_INTAKE_SCHEDULER). SIGTERM/SIGINT stop cleanly:
the message in hand is finished (or left unacknowledged for redelivery).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

import click

from connector.cli.common import EXIT_CONFIG, config_option, fail, load_config_or_exit

if TYPE_CHECKING:
    from connector.config.model import QueueIntakeConfig, SourceConfig


@click.group("intake")
def intake() -> None:
    """Real-time intake: consume DAM change messages from a queue."""


def _queue_source(config_path: str | None, name: str, transport: str) -> SourceConfig:
    config = load_config_or_exit(config_path)
    try:
        source = config.source(name)
    except KeyError:
        known = ", ".join(s.name for s in config.sources) or "none"
        fail(f"unknown source {name!r} (configured: {known})", EXIT_CONFIG)
    if source.queue is None:
        fail(f"source {name!r} has no `queue` block", EXIT_CONFIG)
    if source.queue.transport != transport:
        fail(
            f"source {name!r} uses transport {source.queue.transport!r}, not {transport!r}",
            EXIT_CONFIG,
        )
    return source


def _run_until_signalled(runner: Any, cfg: QueueIntakeConfig) -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"consuming {cfg.transport} {cfg.name!r}; Ctrl-C or SIGTERM to stop", err=True)
    runner.run(stop)
    click.echo("stopped", err=True)


def _store(source: SourceConfig) -> Any:
    from connector.intake.store import IntakeStore
    from connector.redis_conn import Keys, get_redis

    return IntakeStore(get_redis(), Keys(), source.name, source.realtime)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@intake.command("redis-stream")
@click.argument("source_name", metavar="SOURCE")
@config_option()
@click.option("--consumer", default=None, help="Consumer name in the group (default host-pid).")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def redis_stream(
    source_name: str, config_path: str | None, consumer: str | None, verbose: bool
) -> None:
    """Consume SOURCE's Redis stream with its consumer group until stopped."""
    from connector.intake.flush import load_scheduler
    from connector.intake.redis_stream import RedisStreamConsumer, stream_client
    from connector.settings import redis_url

    _logging(verbose)
    source = _queue_source(config_path, source_name, "redis_stream")
    assert source.queue is not None
    runner = RedisStreamConsumer(
        source.queue,
        _store(source),
        stream_client(source.queue, redis_url()),
        consumer=consumer,
        schedule=load_scheduler(),
    )
    _run_until_signalled(runner, source.queue)


@intake.command("amqp")
@click.argument("source_name", metavar="SOURCE")
@config_option()
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def amqp(source_name: str, config_path: str | None, verbose: bool) -> None:
    """Consume SOURCE's AMQP queue (RabbitMQ) until stopped."""
    from connector.intake.amqp import AmqpConsumer
    from connector.intake.flush import load_scheduler

    _logging(verbose)
    source = _queue_source(config_path, source_name, "amqp")
    assert source.queue is not None
    runner = AmqpConsumer(source.queue, _store(source), schedule=load_scheduler())
    _run_until_signalled(runner, source.queue)
