"""`connector explain`: the path of one DAM asset through the pipeline, for a person.

Read-only: it plans the transform (no option created, no file uploaded) and reads the
stores, so it can be run against production at any time.
"""

from __future__ import annotations

import click

from connector.cli.common import (
    EXIT_CONFIG,
    config_and_services,
    config_option,
    echo_json,
    fail,
    operational_errors,
    source_names,
)


@click.command()
@click.argument("dam_id")
@click.option("--source", "source_name", help="Source of the asset (default: the only one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def explain(dam_id: str, source_name: str | None, as_json: bool, config_path: str | None) -> None:
    """The path of one DAM asset: last seen in the DAM, its transformed values, its last push
    result or its quarantine/dead-letter reason."""
    config, services = config_and_services(config_path)
    from connector.pipeline import explain as explain_asset

    names = source_names(config, source_name)
    if len(names) != 1:
        fail("several sources are configured: pass --source", EXIT_CONFIG)
    with operational_errors():
        out = explain_asset(names[0], dam_id, services=services)
    if as_json:
        echo_json(out)
        return
    click.echo(f"DAM asset {dam_id} (source {names[0]})")
    if out.get("dam_error"):
        click.echo(f"  DAM: unreachable: {out['dam_error']}")
    elif out.get("dam") is None:
        click.echo("  DAM: not found (deleted, or never existed)")
    else:
        dam = out["dam"]
        click.echo(
            f"  DAM: {dam.get('filename')} in {dam.get('folder')} updated {dam.get('updated')}"
        )
    transformed = out.get("transformed")
    if out.get("transform_error"):
        click.echo(f"  transform: failed: {out['transform_error']}")
    elif transformed:
        if "quarantined" in transformed:
            q = transformed["quarantined"]
            click.echo(f"  transform: quarantined: {q.get('reason')} (field {q.get('field')})")
        elif "skipped" in transformed:
            click.echo(f"  transform: skipped: {transformed['skipped']}")
        else:
            click.echo(f"  transform: {transformed['family']}/{transformed['code']}")
            for attr, values in sorted(transformed["values"].items()):
                for v in values:
                    click.echo(
                        f"      {attr}[{v.get('locale') or '-'}|{v.get('channel') or '-'}] = "
                        f"{v.get('data')!r}"
                    )
            click.echo(f"  would push now: {'yes' if out.get('would_push') else 'no (unchanged)'}")
            for effect in out.get("planned_effects") or []:
                click.echo(f"  · {effect.get('text')}")
    click.echo(f"  last push: {out.get('last_push') or 'never'}")
    if out.get("dead_letter"):
        d = out["dead_letter"]
        click.echo(f"  dead letter: status {d.get('status')}: {d.get('message')}")
    if out.get("quarantine"):
        click.echo(f"  quarantine: {out['quarantine']}")
