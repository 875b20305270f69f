"""`connector links`: direct product links the connector has not been able to make yet.

A link waits (pending) when its product does not exist yet, the PIM refused the product
write, or the PIM was unreachable; every run of the source and every reconcile tries the
pending links again, and a link that succeeds leaves the list.
"""

from __future__ import annotations

from typing import Any

import click

from connector.cli.common import (
    config_and_services,
    config_option,
    echo_json,
    operational_errors,
    source_names,
)


@click.group("links")
def links() -> None:
    """Direct product links (product_link mode "direct")."""


@links.command("pending")
@click.argument("source", required=False)
@click.option("--limit", default=100, show_default=True, help="At most this many per source.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def links_pending(
    source: str | None, limit: int, as_json: bool, config_path: str | None
) -> None:
    """Pending links: product, asset, link or unlink, why, since when, tries."""
    config, services = config_and_services(config_path)
    from connector.pipeline.linking import pending_links

    out: dict[str, list[dict[str, Any]]] = {}
    with operational_errors():
        for name in source_names(config, source):
            out[name] = pending_links(name, limit, services=services)
    if as_json:
        echo_json(out)
        return
    total = 0
    for name, entries in out.items():
        for p in entries:
            total += 1
            click.echo(
                f"{name}  {p['action']} {p['code']} → product {p['identifier']!r} "
                f"({p['attribute']})  since {p['since']}  tries {p['attempts']}"
            )
            click.echo(f"    {p['reason']}")
    if not total:
        click.echo("no pending links")
