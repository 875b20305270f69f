"""`connector failures` and `connector quarantine`: what the pipeline set aside, and retries.

Failures are the dead-letter store (assets the PIM refused, or that exhausted their
retries, and refused deletions); the quarantine holds DAM records the transform step could
not turn into assets. Only `failures retry --inline` pushes from this process, for a shell
with no worker.
"""

from __future__ import annotations

from typing import Any

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
from connector.cli.reports import had_failures, wait_for_runs


@click.group()
def failures() -> None:
    """Assets the PIM refused, or that exhausted their retries against the PIM or the DAM
    (the dead-letter store); refused deletions are there too (kind `deletion`)."""


@failures.command("list")
@click.argument("source", required=False)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def failures_list(source: str | None, limit: int, as_json: bool, config_path: str | None) -> None:
    """Dead letters with the PIM's status, message and errors[]."""
    config, services = config_and_services(config_path)
    from connector.pipeline import dead_letters

    out: dict[str, list[dict[str, Any]]] = {}
    with operational_errors():
        for name in source_names(config, source):
            out[name] = dead_letters(name, limit, services=services)
    if as_json:
        echo_json(out)
        return
    total = 0
    for name, letters in out.items():
        for d in letters:
            total += 1
            kind = {"deletion": "deletion refused", "dam": "DAM kept failing"}.get(
                str(d.get("kind")), "push refused")
            click.echo(
                f"{name}  {d.get('dam_id')}  {d.get('family')}/{d.get('code')}  {kind}  "
                f"status {d.get('status')}  attempts {d.get('attempts')}"
            )
            click.echo(f"    {d.get('message')}")
            for e in d.get("errors") or []:
                click.echo(f"    - {e.get('property', '')}: {e.get('message', '')}")
    if not total:
        click.echo("no failures")


@failures.command("retry")
@click.argument("source", required=False)
@click.argument("dam_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every dead letter of SOURCE.")
@click.option("--inline", is_flag=True, help="Push from this process instead of a run.")
@click.option("--wait", is_flag=True, help="Wait for the retry run and print its report.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def failures_retry(
    source: str | None,
    dam_ids: tuple[str, ...],
    retry_all: bool,
    inline: bool,
    wait: bool,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Re-fetch dead-lettered assets from the DAM and push them again (--all or DAM ids).

    A refused deletion is retried the same way: the DAM is read again, and an asset it
    still does not have gets the deletion policy again (never a push)."""
    if not retry_all and not dam_ids:
        fail("name DAM ids to retry, or pass --all", EXIT_CONFIG)
    if retry_all and dam_ids:
        fail("--all and DAM ids exclude each other", EXIT_CONFIG)
    config, services = config_and_services(config_path)
    from connector.pipeline import retry_dead_letters, run_report

    names = source_names(config, source)
    if dam_ids and len(names) != 1:
        fail("DAM ids need a SOURCE when several sources are configured", EXIT_CONFIG)
    results: dict[str, Any] = {}
    with operational_errors():
        for name in names:
            if retry_all and not services.dead_letters.count(name):
                continue
            results[name] = retry_dead_letters(
                name, list(dam_ids) or None, inline=inline, services=services
            )
    problems = False
    if not inline:
        run_ids = [r["run_id"] for r in results.values() if r.get("run_id")]
        problems = any(r.get("busy") for r in results.values())
        if wait and run_ids:
            with operational_errors():
                reports = wait_for_runs(
                    run_ids,
                    lambda run_id: run_report(run_id, services=services),
                    timeout=3600,
                    show_progress=not as_json,
                )
            problems = problems or any(had_failures(r) for r in reports.values())
            results = {"retries": results, "reports": list(reports.values())}
    else:
        problems = any(r.get("failed") or r.get("deletion_failed") or r.get("errors")
                       for r in results.values())
    if as_json:
        echo_json(results)
    elif not results:
        click.echo("nothing to retry")
    else:
        echo_json(results)
    exit_with(EXIT_PROBLEMS if problems else EXIT_OK)


@click.group("quarantine")
def quarantine_group() -> None:
    """DAM records the transform step set aside, with the field and the reason."""


@quarantine_group.command("list")
@click.argument("source", required=False)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def quarantine_list(source: str | None, limit: int, as_json: bool, config_path: str | None) -> None:
    """Quarantined records: DAM id, family, field and reason."""
    config, services = config_and_services(config_path)
    from connector.pipeline import quarantine

    out: dict[str, list[dict[str, Any]]] = {}
    with operational_errors():
        for name in source_names(config, source):
            out[name] = quarantine(name, limit, services=services)
    if as_json:
        echo_json(out)
        return
    total = 0
    for name, entries in out.items():
        for q in entries:
            total += 1
            where = f" field {q.get('field')}" if q.get("field") else ""
            family = q.get("family") or "-"
            click.echo(f"{name}  {q.get('dam_id')}  [{family}]{where}: {q.get('reason')}")
    if not total:
        click.echo("nothing quarantined")
