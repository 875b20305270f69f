"""The `connector` command line.

`main` is the click group; each area keeps its commands in its own module of this package
and registers them below with one import and one `main.add_command(...)`. Command modules
import only click at module level (heavy imports go inside the commands) so that
`connector --help` stays fast.

The `connector` console script is tasks.cli:main: this same group, in a process that the
composition root (tasks/) has wired to Celery first, and with `intake amqp` added (its
consumer needs kombu). Commands that enqueue work get their task queue from that wiring,
never by importing tasks/ themselves.
"""

from __future__ import annotations

import click

from connector import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="connector")
def main() -> None:
    """DAM → Akeneo PIM asset connector.

    Exit codes: 0 fine, 1 problems found or an operation failed, 2 bad configuration or usage.
    """


# ---------------------------------------------------------------- subcommands
# One line per command module: import it, then add its commands.
from connector.cli.intake import intake  # noqa: E402
from connector.cli.sandbox import sandbox  # noqa: E402
from connector.cli.structure import cache, check, structure  # noqa: E402

main.add_command(sandbox)
main.add_command(cache)
main.add_command(structure)
main.add_command(check)
main.add_command(intake)

from connector.cli.explain import explain  # noqa: E402
from connector.cli.failures import failures, quarantine_group  # noqa: E402
from connector.cli.flower import flower  # noqa: E402
from connector.cli.reconcile import reconcile  # noqa: E402
from connector.cli.sync import resume, status, sync  # noqa: E402

for _command in (sync, status, resume, failures, quarantine_group, explain, reconcile, flower):
    main.add_command(_command)

from connector.cli.links import links  # noqa: E402

main.add_command(links)
