"""Counterexamples the model-based pipeline test found, kept as ordinary regression tests.

Each test replays the shrunk interleaving deterministically (no worker, no timing).
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.pipeline import run_report, start_run
from connector.pipeline.services import Services
from tests.pipeline_fakes import FakeDam, FakePim, make_config, make_services


@pytest.fixture
def services(namespace: str) -> Any:
    config = make_config()
    s, _enqueuer = make_services(config, FakeDam([]), FakePim(), namespace=namespace)
    yield s
    s.close()


def test_a_run_finishing_while_its_report_is_read_is_not_reported_abandoned(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the model test: `connector sync --wait` (and the model's own waiting) saw a
    run that succeeded as "abandoned" — and would exit 1 — when the run finished between
    the report's read of the run record (still running) and its read of the source's lock
    (already released by the finisher). Replayed: the run is finalised exactly there."""
    started = start_run("dam", "manual", services=services, enqueue=False)
    assert started.run_id is not None
    run_id = started.run_id
    services.runs.mark_running(run_id)
    real_holder = services.runs.holder

    def holder_after_the_finisher(source: str) -> str | None:
        # the finisher runs between the two reads: state written, then the lock released
        services.runs.finalize(run_id, overlap=0, advance_watermark=False)
        return real_holder(source)

    monkeypatch.setattr(services.runs, "holder", holder_after_the_finisher)
    report = run_report(run_id, services=services)
    assert report["state"] == "succeeded", report
