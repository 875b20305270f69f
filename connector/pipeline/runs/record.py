"""A run as stored: its state, its record (the run hash, typed) and what starting one answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, cast

from connector.pipeline.runs.report import RunCounts


class RunState(StrEnum):
    """The state of a run. String-valued: Redis and JSON hold the same words as before.

    queued → running → succeeded | failed. `abandoned` is never stored: reports say it of
    a run whose lock expired without a finisher (every worker of it died).
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABANDONED = "abandoned"


#: states a run never leaves (stored by the finisher)
TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED})
#: states after which a report no longer changes (what a waiting CLI waits for)
FINAL_REPORT_STATES = frozenset({*TERMINAL_STATES, RunState.ABANDONED})


def utcnow() -> datetime:
    """Now, timezone-aware (every stored moment is UTC)."""
    return datetime.now(UTC)


def parse_time(text: str | None) -> datetime | None:
    """A stored ISO moment (naive ones are UTC); None for an empty field."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _report(text: str | None) -> RunCounts:
    """The stored final report (JSON), or an empty one while the run is not finished."""
    return cast(RunCounts, json.loads(text)) if text else RunCounts()


@dataclass
class StartResult:
    """What `start_run` answers: a run id, or who holds the source."""

    run_id: str | None
    busy: bool = False
    holder: str | None = None
    message: str = ""

    @property
    def started(self) -> bool:
        """A run was started (not busy, an id was given)."""
        return self.run_id is not None and not self.busy

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (CLI output, task results)."""
        return {"run_id": self.run_id, "busy": self.busy, "holder": self.holder,
                "message": self.message}


@dataclass
class RunRecord:
    """The run hash, typed."""

    run_id: str
    source: str
    trigger: str
    state: RunState
    started_at: datetime
    full: bool = False
    since: datetime | None = None
    has_asset_ids: bool = False
    force: bool = False
    dry_run: bool = False
    finished_at: datetime | None = None
    error: str | None = None
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    fetch_done: bool = False
    report: RunCounts = field(default_factory=lambda: RunCounts())
    # the fingerprint and file of the config the run was started with (None: not recorded)
    config_hash: str | None = None
    config_path: str | None = None

    @classmethod
    def from_hash(cls, run_id: str, raw: dict[bytes, bytes]) -> RunRecord:
        """The run hash as Redis holds it (bytes → bytes)."""
        d = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            run_id=run_id,
            source=d["source"],
            trigger=d.get("trigger", ""),
            state=RunState(d.get("state", RunState.QUEUED)),
            started_at=parse_time(d.get("started_at")) or utcnow(),
            full=d.get("full") == "1",
            since=parse_time(d.get("since")),
            has_asset_ids=d.get("asset_ids") == "1",
            force=d.get("force") == "1",
            dry_run=d.get("dry_run") == "1",
            finished_at=parse_time(d.get("finished_at")),
            error=d.get("error") or None,
            watermark_before=parse_time(d.get("watermark_before")),
            watermark_after=parse_time(d.get("watermark_after")),
            fetch_done=d.get("fetch_done") == "1",
            report=_report(d.get("report")),
            config_hash=d.get("config_hash") or None,
            config_path=d.get("config_path") or None,
        )

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish; None while the run is not finished."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
