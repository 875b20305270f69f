"""`connector metrics`: print every pipeline metric (Prometheus text), as `/metrics` serves it.

Built by a factory because the broker and the Celery queue names are the composition
root's (`celeryconfig.py`, `tasks/routing.py`): `tasks/cli.py` adds the command with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from connector.cli.common import config_option, load_config_or_exit


def metrics_command(broker_queues: Callable[[], tuple[Any, Sequence[str]]]) -> click.Command:
    """The `metrics` command; `broker_queues()` gives the Redis holding the broker and the
    queues whose depth it reports (LLEN of the broker's lists)."""

    @click.command("metrics")
    @config_option()
    def metrics(config_path: str | None) -> None:
        """Print every pipeline metric in the Prometheus text format (what /metrics serves)."""
        from connector.metrics.collector import (
            PipelineCollector,
            exposition,
            run_store_last_success,
        )
        from connector.redis_conn import Keys, get_redis

        config = load_config_or_exit(config_path)
        client, keys = get_redis(), Keys()
        broker, queues = broker_queues()
        collector = PipelineCollector(
            client, keys, config, queues, broker=broker,
            last_success=run_store_last_success(client, keys),
        )
        click.echo(exposition(collector).decode(), nl=False)

    return metrics
