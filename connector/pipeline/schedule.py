"""The beat schedule, described without Celery (celeryconfig.py turns it into entries).

One entry per source with a `schedule` (→ fetch_changed_assets) and one per source with a
`reconcile_schedule` (→ reconcile_source). A source fed in real time keeps its scheduled
poll as a safety net unless `realtime.poll_enabled` is false. Running two beats by
mistake does not run a source twice: the scheduled task takes the source's run lock, and
the second gets "busy".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.config.model import Config, ScheduleConfig

FETCH_TASK = "tasks.pipeline.fetch_changed_assets"
RECONCILE_TASK = "tasks.pipeline.reconcile_source"


class ScheduleError(ValueError):
    """A schedule that cannot be used (bad crontab, no period)."""


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    kwargs: dict[str, Any]
    every: float | None = None
    crontab: tuple[str, str, str, str, str] | None = None  # minute hour dom month dow
    options: dict[str, Any] = field(default_factory=dict)


def parse_crontab(text: str) -> tuple[str, str, str, str, str]:
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"crontab {text!r} must have 5 fields: minute hour day-of-month month day-of-week"
        )
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _entry(name: str, task: str, kwargs: dict[str, Any], schedule: ScheduleConfig,
           queue: str) -> ScheduleEntry:
    if schedule.crontab:
        return ScheduleEntry(name, task, kwargs, crontab=parse_crontab(schedule.crontab),
                             options={"queue": queue})
    if schedule.every and schedule.every > 0:
        return ScheduleEntry(name, task, kwargs, every=float(schedule.every),
                             options={"queue": queue, "expires": float(schedule.every)})
    raise ScheduleError(f"{name}: a schedule needs `every` (seconds) or `crontab`")


def schedule_entries(config: Config) -> list[ScheduleEntry]:
    entries: list[ScheduleEntry] = []
    for source in config.sources:
        if source.schedule is not None and source.realtime.poll_enabled:
            entries.append(
                _entry(f"sync:{source.name}", FETCH_TASK,
                       {"source": source.name, "trigger": "schedule"}, source.schedule, "fetch")
            )
        if source.reconcile_schedule is not None:
            entries.append(
                _entry(f"reconcile:{source.name}", RECONCILE_TASK,
                       {"source": source.name, "apply": True}, source.reconcile_schedule,
                       "fetch")
            )
    return entries
