"""The beat scheduler: celery-redbeat, with the schedule written only by the lock holder.

Why redbeat: two `beat` processes with Celery's file scheduler each poll on their own
clock, so every schedule fires twice. RedBeat keeps the schedule (each entry's last run)
and a lock in Redis: one beat holds the lock and sends, the others wait for it and take
over when it expires (`beat_max_loop_interval` x 5, see celeryconfig.py).

Why a subclass: RedBeat writes the process's schedule into Redis (and prunes the entries
a previous config had and this one has not) when the scheduler is built, *before* it waits
for the lock, so a standby beat started with another file, or with a config that does not
load, would rewrite or wipe the fleet's schedule. Here only the beat that holds the lock
writes it, once, on its first tick; a beat whose config could not be loaded keeps what is
in Redis and says so.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat.schedulers import RedBeatScheduler  # also connects redbeat's lock on beat_init

log = logging.getLogger(__name__)


class ConnectorBeatScheduler(RedBeatScheduler):
    """RedBeat whose schedule is installed by the lock holder, never by a standby."""

    _installed = False

    def setup_schedule(self) -> None:
        """Deferred to the first tick, which only runs once the lock is held."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self._installed:
            self._installed = True
            self.install_schedule()
        return float(super().tick(*args, **kwargs))

    def install_schedule(self) -> None:
        """This config's entries into Redis; entries of a removed schedule leave it."""
        import celeryconfig

        error = celeryconfig.BEAT_SCHEDULE_ERROR
        if error is not None:
            log.error("beat: %s: keeping the schedule in Redis as the last good config left it",
                      error)
            return
        super().setup_schedule()
        log.info("beat: schedule installed: %s", ", ".join(sorted(self.app.conf.beat_schedule)))
