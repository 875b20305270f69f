"""Request budget for one DAM, in-process.

A DAM listing is read by one task at a time (the run lock sees to that), so an
in-process token bucket is enough to stay under the DAM's requests/s quota; the PIM side,
shared by every worker, needs a Redis-held limiter instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Blocks callers so that on average at most `rate` acquisitions happen per second.

    `burst` is how many requests may go out back to back after an idle period (default 1:
    requests are evenly spaced, the friendliest pattern for a remote quota). A rate of 0 or
    less means "unlimited".
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, waiting as long as needed; returns the seconds waited."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        # Sleep outside the lock: the debt is already booked, so a concurrent caller
        # computes its own (longer) wait instead of queuing on the lock.
        if wait > 0:
            self._sleep(wait)
        return wait
