"""Run reports for people: waiting for runs with a progress line, printing a report.

Shared by `sync`, `failures retry --wait` and the demo, which all end by showing the same
report; the commands themselves live in their own modules of this package.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from connector.cli.common import fail

if TYPE_CHECKING:
    from connector.pipeline.runs import RunReport

# report field → how a dry run says it (it writes nothing: "would …")
DRY_RUN_COUNTS = (
    ("would_create", "would create {n}"),
    ("would_update", "would update {n}"),
    ("would_delete", "would delete {n}"),
    ("would_upload", "would upload {n} files"),
    ("would_create_options", "would create {n} options"),
)
PLANNED_SHOWN = 20
DIFF_ASSETS_SHOWN = 20  # assets a dry run's report prints value by value
DIFF_VALUES_SHOWN = 10  # values printed per asset
FAILURE_COUNTS = ("failed", "dead_lettered", "quarantined", "deletion_failed")


def had_failures(report: Mapping[str, Any]) -> bool:
    """Whether a run ended in anything but a clean success (the commands' exit 1)."""
    if report.get("state") != "succeeded":
        return True
    counts = report.get("counts") or {}
    return any(int(counts.get(name) or 0) for name in FAILURE_COUNTS)


def progress_line(report: Mapping[str, Any]) -> str:
    """One line of a run in progress (what a dry run would do, or what was pushed)."""
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


def wait_for_runs(
    run_ids: list[str],
    report_of: Callable[[str], RunReport],
    *,
    timeout: float,
    show_progress: bool,
) -> dict[str, RunReport]:
    """Poll the runs' reports until each is terminal (or the timeout passes)."""
    from connector.pipeline.runs import FINAL_REPORT_STATES  # lazy: the CLI starts fast

    deadline = time.monotonic() + timeout
    reports: dict[str, RunReport] = {}
    tty = show_progress and sys.stderr.isatty()
    last_line = ""
    while True:
        reports = {run_id: report_of(run_id) for run_id in run_ids}
        if show_progress:
            line = " | ".join(progress_line(r) for r in reports.values())
            if tty:
                click.echo("\r" + line.ljust(len(last_line)), nl=False, err=True)
            elif line != last_line:
                click.echo(line, err=True)
            last_line = line
        if all(r["state"] in FINAL_REPORT_STATES for r in reports.values()):
            break
        if time.monotonic() > deadline:
            if tty:
                click.echo("", err=True)
            fail(f"gave up waiting after {timeout:.0f}s; the run(s) go on: {', '.join(run_ids)}")
        time.sleep(0.5)
    if tty:
        click.echo("", err=True)
    return reports


def print_report(report: Mapping[str, Any]) -> None:
    """A finished run for people, with where to look next for its failures."""
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


def _shown(value: Any) -> str:
    """A value as people read it: absent is `(none)`, the rest as Python writes it."""
    return "(none)" if value is None else repr(value)


def print_differences(diffs: list[dict[str, Any]], total: int | None = None) -> None:
    """A dry run's differences, value by value: PIM now → DAM, for the assets it would
    create (from nothing) and update. Bounded: the first DIFF_ASSETS_SHOWN assets with
    up to DIFF_VALUES_SHOWN values each, then how many more (`total`: every asset the run
    would write, of which the run keeps the first 1000 with their values)."""
    total = max(total or 0, len(diffs))
    if not diffs:
        click.echo("  no differences: nothing would be written")
        return
    for d in diffs[:DIFF_ASSETS_SHOWN]:
        action = d.get("action", "?")
        click.echo(f"  {action:<9} {d.get('family', '')}/{d.get('code', '')} (DAM {d['dam_id']})")
        changes = list(d.get("differences") or [])
        for change in changes[:DIFF_VALUES_SHOWN]:
            click.echo(
                f"      {change.get('attribute')}"
                f"[{change.get('locale') or '-'}|{change.get('channel') or '-'}]: "
                f"PIM {_shown(change.get('pim'))} → DAM {_shown(change.get('dam'))}"
            )
        if len(changes) > DIFF_VALUES_SHOWN:
            more = len(changes) - DIFF_VALUES_SHOWN
            click.echo(f"      … and {more} more values (--json lists them)")
    shown = min(len(diffs), DIFF_ASSETS_SHOWN)
    if total > shown:
        listed = f"all {total}" if len(diffs) >= total else str(len(diffs))
        click.echo(f"  … and {total - shown} more assets (--json lists {listed})")
