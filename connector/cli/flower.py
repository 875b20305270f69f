"""`connector flower`: Flower (the Celery monitor) behind basic auth, never without it.

A command of its own because it replaces this process with Flower (`os.execvpe`) rather
than talking to the pipeline.
"""

from __future__ import annotations

import os
import sys

import click

from connector.cli.common import EXIT_CONFIG, fail


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--address",
    default=lambda: os.environ.get("FLOWER_ADDRESS", "127.0.0.1"),
    show_default="127.0.0.1 or $FLOWER_ADDRESS",
)
@click.option(
    "--port",
    default=lambda: int(os.environ.get("FLOWER_PORT", "5555")),
    show_default="5555 or $FLOWER_PORT",
)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def flower(address: str, port: int, extra: tuple[str, ...]) -> None:
    """Start Flower with basic auth from FLOWER_BASIC_AUTH (user:password[,user2:pw2]).

    Flower can revoke tasks and shut workers down: it never starts without credentials.
    """
    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    if not auth or any(":" not in pair or pair.startswith(":") for pair in auth.split(",")):
        fail(
            "FLOWER_BASIC_AUTH must be set to user:password (Flower never runs without auth)",
            EXIT_CONFIG,
        )
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tasks",
        "flower",
        f"--address={address}",
        f"--port={port}",
        *extra,
    ]
    # The credentials travel in the environment (Flower reads FLOWER_BASIC_AUTH itself), not
    # on the command line where `ps` would show them.
    os.execvpe(argv[0], argv, dict(os.environ, FLOWER_BASIC_AUTH=auth))
