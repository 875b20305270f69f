"""`connector sync` and `connector status`: start runs, and read back how they went.

These commands enqueue work for the Celery workers (through the pipeline's application API
in `connector.pipeline`) and read the run state back from Redis; they never push to the
PIM themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
from connector.cli.reports import had_failures, print_differences, print_report, wait_for_runs


def parse_since(value: str | None) -> datetime | None:
    """--since as an aware datetime (naive means UTC); exit 2 when it is not ISO 8601."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since: not an ISO 8601 date/time: {value!r}", EXIT_CONFIG)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command()
@click.argument("source", required=False)
@click.option("--full", is_flag=True, help="Ignore the watermark: every asset of the DAM.")
@click.option("--since", "since_text", metavar="ISO", help="Assets changed after this moment.")
@click.option("--asset", "asset_ids", multiple=True, metavar="ID", help="Only these DAM ids.")
@click.option("--force", is_flag=True, help="Push even assets whose content is unchanged.")
@click.option("--dry-run", is_flag=True, help="Compute what would change; write nothing.")
@click.option("--wait", is_flag=True, help="Show progress and end with the run report.")
@click.option("--timeout", default=3600.0, show_default=True, help="--wait gives up after this.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def sync(
    source: str | None,
    full: bool,
    since_text: str | None,
    asset_ids: tuple[str, ...],
    force: bool,
    dry_run: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
    config_path: str | None,
) -> None:
    """Enqueue a sync of SOURCE (default: every configured source).

    Exit codes: 0 everything synced (or enqueued), 1 the run finished with failures or the
    source is busy, 2 usage or configuration errors.
    """
    if full and since_text:
        fail("--full and --since exclude each other", EXIT_CONFIG)
    since = parse_since(since_text)
    config, services = config_and_services(config_path)
    from connector.pipeline import dry_run_differences, run_report, start_run

    names = source_names(config, source)
    if asset_ids and len(names) != 1:
        fail("--asset needs a SOURCE when several sources are configured", EXIT_CONFIG)
    started: dict[str, str] = {}
    busy: list[dict[str, Any]] = []
    with operational_errors():
        for name in names:
            result = start_run(
                name,
                "manual",
                full=full,
                since=since,
                asset_ids=list(asset_ids) or None,
                force=force,
                dry_run=dry_run,
                services=services,
            )
            if result.started and result.run_id:
                started[name] = result.run_id
            else:
                busy.append({"source": name, **result.to_dict()})
    if not wait:
        if as_json:
            echo_json({"started": started, "busy": busy})
        else:
            for name, run_id in started.items():
                click.echo(f"{name}: run {run_id} enqueued")
            for b in busy:
                click.echo(f"{b['source']}: {b['message']}", err=True)
        exit_with(EXIT_PROBLEMS if busy else EXIT_OK)

    with operational_errors():
        reports = wait_for_runs(
            list(started.values()),
            lambda run_id: run_report(run_id, services=services),
            timeout=timeout,
            show_progress=not as_json,
        )
        diffs = (
            {run_id: dry_run_differences(run_id, services=services) for run_id in reports}
            if dry_run
            else {}
        )
    failed = bool(busy) or any(had_failures(r) for r in reports.values())
    if as_json:
        payload: dict[str, Any] = {"runs": list(reports.values()), "busy": busy}
        if dry_run:
            payload["differences"] = diffs
        echo_json(payload)
    else:
        for run_id, report in reports.items():
            print_report(report)
            if dry_run:
                c = report.get("counts") or {}
                would = int(c.get("would_create") or 0) + int(c.get("would_update") or 0)
                print_differences(diffs.get(run_id) or [], total=would)
        for b in busy:
            click.echo(f"{b['source']}: {b['message']}", err=True)
    exit_with(EXIT_PROBLEMS if failed else EXIT_OK)


@click.command()
@click.argument("source", required=False)
@click.option("--runs", "run_count", default=5, show_default=True, help="Recent runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def status(source: str | None, run_count: int, as_json: bool, config_path: str | None) -> None:
    """Runs per source: when, how long, counts, watermark, lock holder, failures waiting."""
    config, services = config_and_services(config_path)
    from connector.pipeline import list_runs, source_status

    out = []
    with operational_errors():
        for name in source_names(config, source):
            st = source_status(name, services=services)
            st["runs"] = list_runs(name, run_count, services=services)
            out.append(st)
    if as_json:
        echo_json(out)
        return
    for st in out:
        click.echo(f"source {st['source']}")
        click.echo(f"  watermark     {st['watermark'] or '(none: next run is a full sync)'}")
        click.echo(f"  lock holder   {st['lock_holder'] or '(free)'}")
        click.echo(f"  dead letters  {st['dead_letters']}")
        click.echo(f"  quarantined   {st['quarantined']}")
        if not st["runs"]:
            click.echo("  no runs yet")
        for r in st["runs"]:
            c = r.get("counts") or {}
            took = f"{r['duration']:.1f}s" if r.get("duration") is not None else "running"
            if r.get("dry_run"):  # wrote nothing: never "created"
                what = (
                    f"dry run: would create {c.get('would_create', c.get('created', 0))} "
                    f"would update {c.get('would_update', c.get('updated', 0))} "
                    f"would delete {c.get('would_delete', 0)} "
                    f"unchanged {c.get('unchanged', 0)} "
                    f"quarantined {c.get('quarantined', 0)}"
                )
            else:
                what = (
                    f"created {c.get('created', 0)} updated {c.get('updated', 0)} "
                    f"unchanged {c.get('unchanged', 0)} failed {c.get('dead_lettered', 0)} "
                    f"quarantined {c.get('quarantined', 0)}"
                )
            click.echo(
                f"  {r['started_at']}  {r['state']:<10} {took:>8}  "
                f"{what}  [{r['trigger']}] {r['run_id']}"
            )
            if r.get("error"):
                click.echo(f"      error: {r['error']}")


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def resume(run_id: str, as_json: bool, config_path: str | None) -> None:
    """Queue again what a stuck run has not done (its fetch part, chunks, batches).

    For a run that stays `running` with nothing moving: a task message the broker lost.
    Beat does the same by itself once a run has not moved for `sync.stall_after`. Every
    step is idempotent: a step that was only slow runs twice, nothing is written twice
    wrongly. Exit 1 when the run could not be resumed (already over, or closed because
    another run holds its source)."""
    _config, services = config_and_services(config_path)
    from connector.pipeline import UnknownRunError, resume_run

    with operational_errors():
        try:
            out = resume_run(run_id, services=services)
        except UnknownRunError as exc:
            fail(str(exc), EXIT_CONFIG)
    if as_json:
        echo_json(out.to_dict())
    else:
        click.echo(f"run {out.run_id} ({out.source}): {out.summary()}")
    exit_with(EXIT_PROBLEMS if out.closed else EXIT_OK)
