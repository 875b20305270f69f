"""RunState is an enum, but Redis, JSON and the CLI keep seeing the same words."""

from __future__ import annotations

import json

from connector.pipeline.runs import FINAL_REPORT_STATES, TERMINAL_STATES, RunRecord, RunState


def test_run_states_are_the_stored_words() -> None:
    assert [s.value for s in RunState] == ["queued", "running", "succeeded", "failed", "abandoned"]
    assert json.dumps({"state": RunState.FAILED}) == '{"state": "failed"}'
    assert f"{RunState.SUCCEEDED:<10}|" == "succeeded |"


def test_terminal_states_accept_plain_strings() -> None:
    assert "succeeded" in TERMINAL_STATES and "failed" in TERMINAL_STATES
    assert "abandoned" not in TERMINAL_STATES and "running" not in TERMINAL_STATES
    assert set(FINAL_REPORT_STATES) == {"succeeded", "failed", "abandoned"}


def test_a_stored_run_reads_back_as_a_state() -> None:
    record = RunRecord.from_hash("r1", {b"source": b"one", b"state": b"running"})
    assert record.state is RunState.RUNNING
    assert RunRecord.from_hash("r2", {b"source": b"one"}).state is RunState.QUEUED
