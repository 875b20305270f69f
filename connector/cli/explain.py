"""`connector explain`: the path of one DAM asset through the pipeline, for a person.

Read-only: it plans the transform (no option created, no file uploaded), reads the PIM's
asset (GET) and the stores, so it can be run against production at any time. Exit 1 when
the DAM does not have the asset (or cannot be asked), with the reason and the key to fix.
"""

from __future__ import annotations

import json
from typing import Any

import click

from connector.cli.common import (
    EXIT_CONFIG,
    EXIT_PROBLEMS,
    config_and_services,
    config_option,
    echo_json,
    exit_with,
    fail,
    operational_errors,
    source_names,
)

DEFAULT_SCAN_LIMIT = 10_000  # connector.pipeline.explain.SCAN_LIMIT (not imported: --help)


@click.command()
@click.argument("dam_id")
@click.option("--source", "source_name", help="Source of the asset (default: the only one).")
@click.option(
    "--scan", is_flag=True,
    help="DAM without a single-asset endpoint (no rest.get_path): look the id up in the "
    "listing.",
)
@click.option(
    "--scan-limit", type=click.IntRange(min=1), default=DEFAULT_SCAN_LIMIT, show_default=True,
    help="With --scan: records of the listing read at most.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def explain(
    dam_id: str,
    source_name: str | None,
    scan: bool,
    scan_limit: int,
    as_json: bool,
    config_path: str | None,
) -> None:
    """The path of one DAM asset: its DAM record, which selector rejects it (if one does),
    the payload a sync would send and how it differs from the PIM, its last push result or
    its quarantine/dead-letter reason."""
    config, services = config_and_services(config_path)
    from connector.pipeline import explain as explain_asset

    names = source_names(config, source_name)
    if len(names) != 1:
        fail("several sources are configured: pass --source", EXIT_CONFIG)
    with operational_errors():
        out = explain_asset(names[0], dam_id, scan=scan, scan_limit=scan_limit,
                            services=services)
    problem = out.get("dam_error") or out.get("not_found")
    if as_json:
        echo_json(out)
        if problem:
            exit_with(EXIT_PROBLEMS)
        return
    _print(dam_id, names[0], out)
    if problem:
        fail(str(problem))


def _show(value: Any) -> str:
    """A value as JSON (what the PIM receives), `(none)` when absent."""
    if value is None:
        return "(none)"
    return json.dumps(value, ensure_ascii=False, default=str)


def _print(dam_id: str, source: str, out: dict[str, Any]) -> None:
    click.echo(f"DAM asset {dam_id} (source {source})")
    dam = out.get("dam")
    if out.get("dam_unreadable"):
        click.echo(f"  DAM: {out['dam_unreadable']}")
    elif dam is not None:
        click.echo(
            f"  DAM: {dam.get('filename')} in {dam.get('folder')} updated {dam.get('updated')}"
        )
    scan = out.get("scan")
    if scan and out.get("found"):
        click.echo(f"  found by scanning {scan['scanned']} records of the listing")
    _print_transform(out)
    click.echo(f"  last push: {_last_push(out.get('last_push'))}")
    if out.get("dead_letter"):
        d = out["dead_letter"]
        click.echo(f"  dead letter: status {d.get('status')}: {d.get('message')}")
    if out.get("quarantine"):
        q = out["quarantine"]
        click.echo(f"  quarantine: {q.get('reason')} (field {q.get('field')})")


def _last_push(state: dict[str, Any] | None) -> str:
    """`created packshots/abc at 2026-… (run …)`, or `never`."""
    if not state:
        return "never"
    text = f"{state.get('status')} {state.get('family')}/{state.get('code')} at {state.get('at')}"
    if state.get("run_id"):
        text += f" (run {state['run_id']})"
    message = (state.get("result") or {}).get("message")
    return text + (f": {message}" if message else "")


def _print_transform(out: dict[str, Any]) -> None:
    transformed = out.get("transformed")
    if out.get("transform_error"):
        click.echo(f"  transform: failed: {out['transform_error']}")
        return
    if not transformed:
        return
    families = (out.get("selection") or {}).get("families") or []
    if "quarantined" in transformed:
        q = transformed["quarantined"]
        click.echo(f"  transform: quarantined: {q.get('reason')} (field {q.get('field')})")
        if q.get("field") == "family":
            _print_families(families)
        return
    if "skipped" in transformed:
        rejected = out.get("rejected_by")
        line = f"  transform: skipped: {transformed['skipped']}"
        if rejected:
            click.echo(f"{line}: rejected by {_verdict(rejected, holds=False)}")
        else:  # no family's match and no family's product_asset holds
            click.echo(f"{line}: no family matches")
            _print_families(families)
        return
    click.echo(f"  transform: {transformed['family']}/{transformed['code']}")
    payload = out.get("payload") or {}
    click.echo(
        f"  payload (PATCH /api/rest/v1/asset-families/{transformed['family']}/assets):"
    )
    text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    for line in text.splitlines():
        click.echo(f"    {line}")
    _print_pim(transformed, out)
    click.echo(f"  would push now: {'yes' if out.get('would_push') else 'no (unchanged)'}")
    for effect in out.get("planned_effects") or []:
        click.echo(f"  · {effect.get('text')}")


def _print_pim(transformed: dict[str, Any], out: dict[str, Any]) -> None:
    target = f"{transformed['family']}/{transformed['code']}"
    if out.get("pim_error"):
        click.echo(f"  PIM: cannot read {target}: {out['pim_error']}")
        return
    pim = out.get("pim") or {}
    if not pim.get("exists"):
        click.echo(f"  PIM: no asset {target} yet: a sync would create it")
        return
    differences = pim.get("differences") or []
    if not differences:
        click.echo(f"  PIM: {target} already has every value")
        return
    click.echo("  PIM differences (attribute [locale|channel]: PIM value → new value):")
    for d in differences:
        click.echo(
            f"    {d['attribute']} [{d.get('locale') or '-'}|{d.get('channel') or '-'}]: "
            f"{_show(d.get('pim'))} → {_show(d.get('dam'))}"
        )


def _print_families(families: list[dict[str, Any]]) -> None:
    for verdict in families:
        click.echo(f"    {_verdict(verdict, holds=bool(verdict.get('holds')))}")


def _verdict(verdict: dict[str, Any], holds: bool) -> str:
    """`key: selector does not hold (path = value, …)` (see connector.transform.why)."""
    if verdict.get("error"):
        return f"{verdict['key']}: {verdict['selector']} failed: {verdict['error']}"
    shown = [f"{path} = {_show(value)}" if value is not None else f"{path} is absent"
             for path, value in (verdict.get("read") or {}).items()]
    outcome = "holds" if holds else "does not hold"
    return f"{verdict['key']}: {verdict['selector']} {outcome}" + (
        f" ({', '.join(shown)})" if shown else ""
    )
