"""Request budgets for one DAM: fleet-wide in Redis, or in-process as a fallback.

Every DAM request (listing page, single get, binary download) takes a slot first. With
Redis (the workers' case) the slot comes from `DamRequestBudget`: the same Lua-scripted
limiter as the PIM's (connector.pim.budget), under the DAM source's own keys, so that N
worker processes together send at most `requests_per_second`, at most `max_in_flight` at
once, and nothing at all while a Retry-After the DAM sent to any of them is running.
Without Redis (a one-off CLI check, unit tests) `LocalThrottle` does the same for one
process: a token bucket and an in-process Retry-After gate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import redis

from connector.dam.base import TransientDamError
from connector.pim.budget import Lease, RequestBudget
from connector.redis_conn import Keys


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


class DamThrottle(Protocol):
    """What a DAM adapter needs from a budget: a slot per request, and a way to tell every
    sender that the DAM asked for a pause."""

    def slot(self) -> AbstractContextManager[object]:
        """Hold one request slot (blocks; TransientDamError when the wait is too long)."""
        ...

    def block_for(self, seconds: float) -> None:
        """Nothing is sent to this DAM for `seconds` (a Retry-After; never shortens)."""
        ...


class DamThrottledError(TransientDamError):
    """The budget would block longer than a request may wait (a long Retry-After, Redis
    unavailable): not any asset's fault, so the step is retried later as a whole."""


class LocalThrottle:
    """In-process budget: a token bucket plus a Retry-After gate for this process only."""

    def __init__(
        self,
        rate: float,
        *,
        max_wait: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.bucket = TokenBucket(rate, clock=clock, sleep=sleep)
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._not_before = 0.0
        self._lock = threading.Lock()

    def block_for(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def gate_remaining(self) -> float:
        with self._lock:
            return max(0.0, self._not_before - self._clock())

    @contextmanager
    def slot(self) -> Iterator[None]:
        wait = self.gate_remaining()
        if wait > self.max_wait:
            raise DamThrottledError("the DAM asked for a longer pause than we wait in-process",
                                    retry_after=wait)
        if wait > 0:
            self._sleep(wait)
        self.bucket.acquire()
        yield


class DamRequestBudget(RequestBudget):
    """Fleet-wide budget of one DAM source (keys `dam:<source>:budget:*`), shared by every
    process: request rate, requests in flight and the Retry-After gate."""

    label = "DAM"

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        source: str,
        *,
        requests_per_second: float,
        max_in_flight: int = 4,
        lease_ttl: float = 150.0,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(
            redis_client,
            keys,
            max_in_flight=max_in_flight,
            # 0 or less means "no rate limit" (as for TokenBucket): a window nobody fills
            requests_per_second=requests_per_second if requests_per_second > 0 else 1e6,
            lease_ttl=lease_ttl,
            max_wait=max_wait,
            clock=clock,
            sleep=sleep,
        )
        self.source = source
        self.in_flight_key = keys.of("dam", source, "budget", "in_flight")
        self.rate_key = keys.of("dam", source, "budget", "rate")
        self.option_key = keys.of("dam", source, "budget", "unused")
        self.gate_key = keys.of("dam", source, "budget", "gate")

    def _error(self, message: str, retry_after: float | None) -> Exception:
        return DamThrottledError(f"{self.source}: DAM {message}", retry_after=retry_after)

    @contextmanager
    def slot(self, *, option_write: bool = False) -> Iterator[Lease]:
        lease = self.acquire()
        try:
            yield lease
        finally:
            self.release(lease)
