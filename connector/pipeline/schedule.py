"""The beat schedule, described without Celery: WHAT runs, and when.

One entry per source with a `schedule` (kind `sync`: start a run and fetch) and one per
source with a `reconcile_schedule` (kind `reconcile`); one (kind `watch`) that resumes
runs which stopped moving (connector/pipeline/watchdog.py). A source fed in real time keeps its
scheduled poll as a safety net unless `realtime.poll_enabled` is false. Several beats fire
each entry once (celery-redbeat, tasks/beat.py); and a start that finds the source's run
lock held (a manual sync, a reconcile) gets "busy" anyway.

Which task and queue carry each kind is the task layer's business (tasks/routing.py;
celeryconfig.py turns these entries into beat entries), so this module names no task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from connector.config.model import Config, ScheduleConfig

ScheduleKind = Literal["sync", "reconcile", "freshness", "watch"]

#: how often the freshness of every source is compared with `alerts.freshness_seconds`
FRESHNESS_EVERY = 60.0
#: how often open runs are checked for progress (connector/pipeline/watchdog.py)
WATCH_EVERY = 60.0
#: the beat entry of that check: always there, whatever started the runs
WATCH_ENTRY = "runs:watch"


class ScheduleError(ValueError):
    """A schedule that cannot be used (bad crontab, no period)."""


@dataclass(frozen=True)
class ScheduleEntry:
    """`kind` of `kwargs["source"]`, every `every` seconds or on `crontab`."""

    name: str
    kind: ScheduleKind
    kwargs: dict[str, Any]
    every: float | None = None
    crontab: tuple[str, str, str, str, str] | None = None  # minute hour dom month dow

    @property
    def expires(self) -> float | None:
        """A periodic tick not started within one period is dropped (the next one comes)."""
        return self.every


def parse_crontab(text: str) -> tuple[str, str, str, str, str]:
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"crontab {text!r} must have 5 fields: minute hour day-of-month month day-of-week"
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _entry(name: str, kind: ScheduleKind, kwargs: dict[str, Any],
           schedule: ScheduleConfig) -> ScheduleEntry:
    if schedule.crontab:
        return ScheduleEntry(name, kind, kwargs, crontab=parse_crontab(schedule.crontab))
    if schedule.every and schedule.every > 0:
        return ScheduleEntry(name, kind, kwargs, every=float(schedule.every))
    raise ScheduleError(f"{name}: a schedule needs `every` (seconds) or `crontab`")


def schedule_entries(config: Config) -> list[ScheduleEntry]:
    entries: list[ScheduleEntry] = []
    for source in config.sources:
        if source.schedule is not None and source.realtime.poll_enabled:
            entries.append(
                _entry(f"sync:{source.name}", "sync",
                       {"source": source.name, "trigger": "schedule"}, source.schedule)
            )
        if source.reconcile_schedule is not None:
            entries.append(
                _entry(f"reconcile:{source.name}", "reconcile",
                       {"source": source.name, "apply": True}, source.reconcile_schedule)
            )
    if config.alerts.webhooks and config.alerts.freshness_seconds:
        entries.append(ScheduleEntry("alerts:freshness", "freshness", {}, every=FRESHNESS_EVERY))
    entries.append(ScheduleEntry(WATCH_ENTRY, "watch", {}, every=WATCH_EVERY))
    return entries
