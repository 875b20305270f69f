"""A dry run's report for people: marked as a dry run, and value by value (PIM → DAM) for
the assets it would create as well as those it would update, bounded in length.

The pipeline runs in-process (fakes for the DAM and PIM, real Redis); the text is what
`connector sync --dry-run --wait` prints (tests/e2e/test_dry_run_e2e.py runs the command).
"""

from __future__ import annotations

import pytest

from connector import pipeline as steps
from connector.cli.reports import DIFF_ASSETS_SHOWN, DIFF_VALUES_SHOWN, print_differences
from connector.cli.reports import print_report as print_run_report
from connector.transform.codes import asset_code
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services


def test_a_dry_run_reports_every_value_it_would_set_and_stays_short(
    namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dam, pim = FakeDam([make_asset(i) for i in range(2)]), FakePim()
    services, queue = make_services(make_config(), dam, pim, namespace=namespace)
    steps.start_run("dam", "manual", services=services)
    queue.drain()
    dam.edit("A00000-X", label="changed")
    for i in range(2, 30):
        dam.assets[f"A{i:05d}-X"] = make_asset(i)
    started = steps.start_run("dam", "manual", dry_run=True, full=True, services=services)
    queue.drain()
    assert started.run_id is not None

    report = steps.run_report(started.run_id, services=services)
    assert report["dry_run"] is True and report["counts"]["dry_run"] is True
    diffs = steps.dry_run_differences(started.run_id, services=services)
    created = next(d for d in diffs if d["dam_id"] == "A00002-X")
    assert created["action"] == "create"
    assert created["differences"] == [
        {"attribute": "label", "locale": None, "channel": None, "pim": None, "dam": "asset 2"}
    ]

    capsys.readouterr()
    print_run_report(report)
    print_differences(diffs, total=29)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"run {started.run_id} (dam, manual): succeeded (dry run: nothing was written)"
    )
    text = "\n".join(lines)
    assert (
        f"  update    packshots/{asset_code('A00000-X')} (DAM A00000-X)\n"
        f"      label[-|-]: PIM 'asset 0' → DAM 'changed'\n"
    ) in text
    assert (
        f"  create    packshots/{asset_code('A00002-X')} (DAM A00002-X)\n"
        f"      label[-|-]: PIM (none) → DAM 'asset 2'\n"
    ) in text
    assert sum(line.startswith(("  create ", "  update ")) for line in lines) == DIFF_ASSETS_SHOWN
    assert lines[-1] == f"  … and {29 - DIFF_ASSETS_SHOWN} more assets (--json lists all 29)"


def test_the_values_of_one_asset_are_bounded_too(capsys: pytest.CaptureFixture[str]) -> None:
    changes = [{"attribute": f"a{i:02d}", "locale": "en_US", "channel": "web", "pim": i,
                "dam": i + 1} for i in range(DIFF_VALUES_SHOWN + 5)]
    print_differences([{"action": "update", "family": "f", "code": "c", "dam_id": "d",
                        "differences": changes}], total=1500)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "  update    f/c (DAM d)"
    assert lines[1] == "      a00[en_US|web]: PIM 0 → DAM 1"
    assert len(lines) == 1 + DIFF_VALUES_SHOWN + 2
    assert lines[-2] == "      … and 5 more values (--json lists them)"
    # 1 asset kept of 1500 would-be writes: the run keeps at most 1000 with their values
    assert lines[-1] == "  … and 1499 more assets (--json lists 1)"
