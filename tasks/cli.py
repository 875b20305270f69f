"""The `connector` console script (pyproject `[project.scripts]`): the CLI, wired to Celery.

Why here and not in connector.cli: commands such as `sync`, `failures retry` and the demo
enqueue pipeline work, and intake consumers enqueue flushes; which task queue they use is
the composition root's choice (tasks.wiring), made once at the entry point, so that
`connector/` never imports Celery or kombu. The commands themselves stay in connector.cli;
this module only wires the process and adds `connector intake amqp` (its consumer is
tasks.amqp_consumer, a kombu adapter).

`python -m connector.cli` and `python -m tasks.cli` run this same entry point. Importing
this module is what wires the process (the console script imports it, then calls `main`).
"""

from __future__ import annotations

from typing import Any

import click

from connector.cli import main as cli
from connector.cli.common import config_option
from connector.cli.intake import intake, run_consumer
from connector.cli.metrics import metrics_command
from tasks.wiring import install, metrics_queues


@intake.command("amqp")
@click.argument("source_name", metavar="SOURCE")
@config_option()
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def amqp(source_name: str, config_path: str | None, verbose: bool) -> None:
    """Consume SOURCE's AMQP queue (RabbitMQ) until stopped."""
    from tasks.amqp_consumer import AmqpConsumer

    def build(source: Any, store: Any, schedule: Any) -> AmqpConsumer:
        return AmqpConsumer(source.queue, store, schedule=schedule)

    run_consumer(source_name, config_path, "amqp", verbose, build)


from tasks.demo import demo  # noqa: E402  (starts workers: queue names are tasks.routing's)

cli.add_command(demo)
cli.add_command(metrics_command(metrics_queues))  # the broker's queues: the wiring's

install()  # importing the entry point wires the process: CliRunner(main) in tests too
main = cli
"""The `connector` click group, in a process wired to Celery."""

if __name__ == "__main__":
    main()
