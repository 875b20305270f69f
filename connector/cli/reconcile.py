"""`connector reconcile`: the DAM's product assets against the PIM's, orphans and missing.

Without --apply it only reports; with it, the deletion policy (and its mass-deletion guard)
is applied to orphans and missing assets are queued again.
"""

from __future__ import annotations

import click

from connector.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    config_and_services,
    config_option,
    echo_json,
    exit_with,
    fail,
    operational_errors,
    source_names,
)


@click.command()
@click.argument("source", required=False)
@click.option(
    "--apply",
    "apply_changes",
    is_flag=True,
    help="Apply the deletion policy to orphans and re-queue missing assets.",
)
@click.option(
    "--allow-mass-deletion",
    is_flag=True,
    help="With --apply: delete even more than deletion_policy.max_deletions (this once).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def reconcile(
    source: str | None,
    apply_changes: bool,
    allow_mass_deletion: bool,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Compare the DAM's product assets with the PIM's assets: orphans and missing ones.

    Exit 1 when differences were found and not applied, when the mass-deletion guard
    refused (nothing deleted), or when the PIM refused deletions (dead letters).
    """
    if allow_mass_deletion and not apply_changes:
        fail("--allow-mass-deletion only goes with --apply", EXIT_CONFIG)
    config, services = config_and_services(config_path)
    from connector.pipeline import MassDeletionError, SourceBusyError
    from connector.pipeline import reconcile as reconcile_source

    reports = []
    refused: list[str] = []
    with operational_errors():
        for name in source_names(config, source):
            try:
                reports.append(reconcile_source(
                    name, apply=apply_changes, allow_mass_deletion=allow_mass_deletion,
                    services=services,
                ))
            except MassDeletionError as exc:
                refused.append(str(exc))
                reports.append(dict(exc.report or {"source": name}, applied=False,
                                    error=str(exc)))
            except SourceBusyError as exc:  # a run of the source holds its lock
                refused.append(str(exc))
                reports.append({"source": name, "applied": False, "busy": True,
                                "holder": exc.holder, "error": str(exc)})
    for message in refused:
        click.echo(f"error: {message}", err=True)
    if as_json:
        echo_json(reports)
    else:
        for r in reports:
            if "orphans" not in r:
                continue
            click.echo(
                f"{r['source']}: {r['dam_product_assets']} product assets in the DAM, "
                f"PIM {r['pim_assets']}; orphans {r['orphans']}, missing {r['missing']}"
                + (" (applied)" if r.get("applied") else "")
            )
            for code in r.get("orphan_sample") or []:
                click.echo(f"  orphan  {code}")
            for dam_id in r.get("missing_sample") or []:
                click.echo(f"  missing {dam_id}")
            deletions = r.get("deletions") or {}
            if deletions:
                click.echo(
                    "  deletion policy: "
                    + ", ".join(f"{k} {deletions.get(k, 0)}"
                                for k in ("deleted", "flagged", "not_found", "failed"))
                )
            for message in deletions.get("errors") or []:
                click.echo(f"  ! deletion refused: {message}")
            if deletions.get("failed"):
                click.echo(f"  → refused by the PIM: connector failures list {r['source']}")
    differences = any(r.get("orphans") or r.get("missing") for r in reports)
    deletion_failed = any((r.get("deletions") or {}).get("failed") for r in reports)
    exit_with(
        EXIT_PROBLEMS
        if refused or deletion_failed or (differences and not apply_changes)
        else EXIT_OK
    )
