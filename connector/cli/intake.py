"""`connector intake redis-stream|amqp|sqs SOURCE`: long-running queue consumers (one
process per source and transport; run several for more throughput).

Each message is recorded in Redis and acknowledged; flushes are enqueued through the
scheduler the entry point wired in (tasks/wiring.py: a Celery task). The `amqp` command is
added to this group by tasks/cli.py, because its consumer needs kombu, which connector/
does not import. SIGTERM/SIGINT stop cleanly: the message in hand is finished (or left
unacknowledged for redelivery).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from connector.cli.common import EXIT_CONFIG, config_option, fail, load_config_or_exit

if TYPE_CHECKING:
    from connector.config.model import QueueIntakeConfig, SourceConfig
    from connector.intake.flush import FlushScheduler


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


def flush_scheduler() -> FlushScheduler | None:
    """What the entry point wired in (tasks/: a Celery flush task); None: the events wait
    for the next sweep instead of a flush of their own."""
    from connector.pipeline.services import wiring

    return wiring().flush_scheduler


def run_consumer(
    source_name: str,
    config_path: str | None,
    transport: str,
    verbose: bool,
    build: Callable[[SourceConfig, Any, FlushScheduler | None], Any],
) -> None:
    """Run the consumer `build(source, store, schedule)` makes for SOURCE until signalled
    (the transports that need a broker library are added by tasks/cli.py)."""
    _logging(verbose)
    source = _queue_source(config_path, source_name, transport)
    assert source.queue is not None
    _run_until_signalled(build(source, _store(source), flush_scheduler()), source.queue)


@intake.command("redis-stream")
@click.argument("source_name", metavar="SOURCE")
@config_option()
@click.option("--consumer", default=None, help="Consumer name in the group (default host-pid).")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def redis_stream(
    source_name: str, config_path: str | None, consumer: str | None, verbose: bool
) -> None:
    """Consume SOURCE's Redis stream with its consumer group until stopped."""
    from connector.intake.redis_stream import RedisStreamConsumer, stream_client
    from connector.settings import redis_url

    def build(source: SourceConfig, store: Any, schedule: FlushScheduler | None) -> Any:
        assert source.queue is not None
        return RedisStreamConsumer(
            source.queue,
            store,
            stream_client(source.queue, redis_url()),
            consumer=consumer,
            schedule=schedule,
        )

    run_consumer(source_name, config_path, "redis_stream", verbose, build)


@intake.command("sqs")
@click.argument("source_name", metavar="SOURCE")
@config_option()
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def sqs(source_name: str, config_path: str | None, verbose: bool) -> None:
    """Consume the SQS queue of S3 event notifications of SOURCE (type s3) until stopped."""
    from connector.aws import MissingExtraError, boto3_module
    from connector.intake.sqs import SqsConsumer

    try:
        boto3_module("connector intake sqs")
    except MissingExtraError as exc:
        fail(str(exc), EXIT_CONFIG)

    def build(source: SourceConfig, store: Any, schedule: FlushScheduler | None) -> Any:
        assert source.queue is not None
        if source.s3 is None:  # the config loader refuses sqs without type s3
            fail(f"source {source.name!r}: transport sqs needs type s3", EXIT_CONFIG)
        return SqsConsumer(source.queue, store, source.s3, schedule=schedule)

    run_consumer(source_name, config_path, "sqs", verbose, build)
