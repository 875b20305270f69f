"""Operating the pipeline from a shell: sync, status, failures, quarantine, explain, reconcile.

These commands enqueue work for the Celery workers (through the pipeline's application API
in `connector.pipeline`) and read the run state back from Redis; none of them pushes to the
PIM itself, except `failures retry --inline`, which exists for a shell with no worker.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from connector.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    config_option,
    echo_json,
    exit_with,
    fail,
    load_config_or_exit,
)

if TYPE_CHECKING:
    from connector.config.model import Config
    from connector.pipeline.services import Services

TERMINAL = ("succeeded", "failed", "abandoned")
# report field → how a dry run says it (it writes nothing: "would …")
DRY_RUN_COUNTS = (
    ("would_create", "would create {n}"),
    ("would_update", "would update {n}"),
    ("would_delete", "would delete {n}"),
    ("would_upload", "would upload {n} files"),
    ("would_create_options", "would create {n} options"),
)
PLANNED_SHOWN = 20
FAILURE_COUNTS = ("failed", "dead_lettered", "quarantined", "deletion_failed")


# ---------------------------------------------------------------- shared helpers


def _services(config_path: str | None) -> tuple[Config, Services]:
    """Config (exit 2 on errors) and this process's pipeline services built from it."""
    config = load_config_or_exit(config_path)
    if config_path:
        os.environ["CONNECTOR_CONFIG"] = config_path  # the services read the same file
    from connector.pipeline import get_services

    with _operational_errors():
        return config, get_services()


@contextmanager
def _operational_errors() -> Iterator[None]:
    """Redis/PIM/DAM failures → one clear line and exit 1 (no traceback for an operator)."""
    import redis

    from connector.dam.base import DamError
    from connector.pim.errors import PimError
    from connector.pipeline.errors import PipelineError, UnknownRunError, UnknownSourceError
    from connector.settings import SettingsError

    try:
        yield
    except (UnknownSourceError, UnknownRunError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except SettingsError as exc:
        fail(str(exc), EXIT_CONFIG)
    except redis.RedisError as exc:
        fail(f"Redis is unreachable or failed ({type(exc).__name__}): {exc}")
    except (PimError, DamError, PipelineError) as exc:
        fail(f"{type(exc).__name__}: {exc}")


def _sources(config: Config, source: str | None) -> list[str]:
    names = [s.name for s in config.sources]
    if source is None:
        return names
    if source not in names:
        fail(f"unknown source {source!r}; configured: {', '.join(names) or 'none'}", EXIT_CONFIG)
    return [source]


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since: not an ISO 8601 date/time: {value!r}", EXIT_CONFIG)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _had_failures(report: dict[str, Any]) -> bool:
    if report.get("state") != "succeeded":
        return True
    counts = report.get("counts") or {}
    return any(int(counts.get(name) or 0) for name in FAILURE_COUNTS)


def _progress_line(report: dict[str, Any]) -> str:
    c = report.get("counts") or {}
    chunks = f"{c.get('chunks_done', 0)}/{c.get('chunks_total', '?')}"
    if report.get("dry_run"):  # nothing is pushed: say what would be
        return (
            f"{report['source']}: {report['state']:<9} (dry run) chunks {chunks}  "
            + "  ".join(label.format(n=c.get(name, 0)) for name, label in DRY_RUN_COUNTS)
            + f"  unchanged {c.get('unchanged', 0)}"
            f"  failures {int(c.get('failed', 0)) + int(c.get('quarantined', 0))}"
        )
    return (
        f"{report['source']}: {report['state']:<9} chunks {chunks}  "
        f"pushed {int(c.get('created', 0)) + int(c.get('updated', 0))}  "
        f"unchanged {c.get('unchanged', 0)}  "
        f"failures {int(c.get('failed', 0)) + int(c.get('quarantined', 0))}"
    )


def _wait_for_runs(
    run_ids: list[str],
    report_of: Callable[[str], dict[str, Any]],
    *,
    timeout: float,
    show_progress: bool,
) -> dict[str, dict[str, Any]]:
    """Poll the runs' reports until each is terminal (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    reports: dict[str, dict[str, Any]] = {}
    tty = show_progress and sys.stderr.isatty()
    last_line = ""
    while True:
        reports = {run_id: report_of(run_id) for run_id in run_ids}
        if show_progress:
            line = " | ".join(_progress_line(r) for r in reports.values())
            if tty:
                click.echo("\r" + line.ljust(len(last_line)), nl=False, err=True)
            elif line != last_line:
                click.echo(line, err=True)
            last_line = line
        if all(r["state"] in TERMINAL for r in reports.values()):
            break
        if time.monotonic() > deadline:
            if tty:
                click.echo("", err=True)
            fail(f"gave up waiting after {timeout:.0f}s; the run(s) go on: {', '.join(run_ids)}")
        time.sleep(0.5)
    if tty:
        click.echo("", err=True)
    return reports


def _print_report(report: dict[str, Any]) -> None:
    c = dict(report.get("counts") or {})
    dry = bool(report.get("dry_run"))
    click.echo(
        f"run {report['run_id']} ({report['source']}, {report['trigger']}): {report['state']}"
        + (" (dry run: nothing was written)" if dry else "")
    )
    if report.get("duration") is not None:
        click.echo(f"  duration            {report['duration']:.1f}s")
    if report.get("error"):
        click.echo(f"  error               {report['error']}")
    names: tuple[str, ...] = (
        "seen",
        "skipped",
        "quarantined",
        "unchanged",
        "created",
        "updated",
        "superseded",
        "deleted",
        "dead_lettered",
        "deletion_failed",
        "requests",
        "mean_assets_per_request",
    )
    if dry:
        names = ("seen", "skipped", "quarantined", "unchanged")
    for name in names:
        if name in c:
            click.echo(f"  {name:<19} {c[name]}")
    if dry:
        for name, label in DRY_RUN_COUNTS:
            click.echo(f"  {label.format(n=c.get(name, 0))}")
        planned = list(c.get("planned") or [])
        for effect in planned[:PLANNED_SHOWN]:
            click.echo(f"  · {effect.get('text')}")
        if len(planned) > PLANNED_SHOWN:
            click.echo(f"  · … and more (--json lists {len(planned)})")
    if report.get("watermark_after"):
        click.echo(f"  watermark           {report['watermark_after']}")
    for error in c.get("errors") or []:
        click.echo(f"  ! {error}")
    source = report["source"]
    if dry:
        return  # nothing went to the quarantine or failure stores: the list above is all
    if int(c.get("quarantined") or 0):
        click.echo(f"  → bad DAM records: connector quarantine list {source}")
    if int(c.get("dead_lettered") or 0) or int(c.get("deletion_failed") or 0):
        click.echo(f"  → refused by the PIM: connector failures list {source}")


# ---------------------------------------------------------------- sync


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
    since = _parse_since(since_text)
    config, services = _services(config_path)
    from connector.pipeline import dry_run_differences, run_report, start_run

    names = _sources(config, source)
    if asset_ids and len(names) != 1:
        fail("--asset needs a SOURCE when several sources are configured", EXIT_CONFIG)
    started: dict[str, str] = {}
    busy: list[dict[str, Any]] = []
    with _operational_errors():
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

    with _operational_errors():
        reports = _wait_for_runs(
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
    failed = bool(busy) or any(_had_failures(r) for r in reports.values())
    if as_json:
        payload: dict[str, Any] = {"runs": list(reports.values()), "busy": busy}
        if dry_run:
            payload["differences"] = diffs
        echo_json(payload)
    else:
        for run_id, report in reports.items():
            _print_report(report)
            if dry_run:
                _print_differences(diffs.get(run_id) or [])
        for b in busy:
            click.echo(f"{b['source']}: {b['message']}", err=True)
    exit_with(EXIT_PROBLEMS if failed else EXIT_OK)


def _print_differences(diffs: list[dict[str, Any]]) -> None:
    if not diffs:
        click.echo("  no differences: nothing would be written")
        return
    for d in diffs:
        action = d.get("action", "?")
        click.echo(f"  {action:<9} {d.get('family', '')}/{d.get('code', '')} (DAM {d['dam_id']})")
        for change in d.get("differences") or []:
            click.echo(
                f"      {change.get('attribute')}"
                f"[{change.get('locale') or '-'}|{change.get('channel') or '-'}]: "
                f"PIM {change.get('pim')!r} → DAM {change.get('dam')!r}"
            )


# ---------------------------------------------------------------- status


@click.command()
@click.argument("source", required=False)
@click.option("--runs", "run_count", default=5, show_default=True, help="Recent runs to list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def status(source: str | None, run_count: int, as_json: bool, config_path: str | None) -> None:
    """Runs per source: when, how long, counts, watermark, lock holder, failures waiting."""
    config, services = _services(config_path)
    from connector.pipeline import list_runs, source_status

    out = []
    with _operational_errors():
        for name in _sources(config, source):
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


# ---------------------------------------------------------------- failures & quarantine


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
    config, services = _services(config_path)
    from connector.pipeline import dead_letters

    out: dict[str, list[dict[str, Any]]] = {}
    with _operational_errors():
        for name in _sources(config, source):
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
    config, services = _services(config_path)
    from connector.pipeline import retry_dead_letters, run_report

    names = _sources(config, source)
    if dam_ids and len(names) != 1:
        fail("DAM ids need a SOURCE when several sources are configured", EXIT_CONFIG)
    results: dict[str, Any] = {}
    with _operational_errors():
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
            with _operational_errors():
                reports = _wait_for_runs(
                    run_ids,
                    lambda run_id: run_report(run_id, services=services),
                    timeout=3600,
                    show_progress=not as_json,
                )
            problems = problems or any(_had_failures(r) for r in reports.values())
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
    config, services = _services(config_path)
    from connector.pipeline import quarantine

    out: dict[str, list[dict[str, Any]]] = {}
    with _operational_errors():
        for name in _sources(config, source):
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


# ---------------------------------------------------------------- explain & reconcile


@click.command()
@click.argument("dam_id")
@click.option("--source", "source_name", help="Source of the asset (default: the only one).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option()
def explain(dam_id: str, source_name: str | None, as_json: bool, config_path: str | None) -> None:
    """The path of one DAM asset: last seen in the DAM, its transformed values, its last push
    result or its quarantine/dead-letter reason."""
    config, services = _services(config_path)
    from connector.pipeline import explain as explain_asset

    names = _sources(config, source_name)
    if len(names) != 1:
        fail("several sources are configured: pass --source", EXIT_CONFIG)
    with _operational_errors():
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
    config, services = _services(config_path)
    from connector.pipeline import MassDeletionError
    from connector.pipeline import reconcile as reconcile_source

    reports = []
    refused: list[str] = []
    with _operational_errors():
        for name in _sources(config, source):
            try:
                reports.append(reconcile_source(
                    name, apply=apply_changes, allow_mass_deletion=allow_mass_deletion,
                    services=services,
                ))
            except MassDeletionError as exc:
                refused.append(str(exc))
                reports.append(dict(exc.report or {"source": name}, applied=False,
                                    error=str(exc)))
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


# ---------------------------------------------------------------- flower


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
