"""The fleet-wide PIM request budget, held in Redis.

Akeneo allows 4 concurrent calls per connection and 100 requests/s per instance, and option
writes are limited to 3/s. Celery's `rate_limit` is per worker, so every process on every
machine takes a slot here before it sends anything:

- in-flight leases: a sorted set of lease ids scored by their expiry. A process that dies
  holding a lease loses it when the lease expires (`lease_ttl`), so a crash cannot leak a
  slot forever;
- request rate and option-write rate: sliding-window logs (sorted sets of send times);
- the Retry-After gate: "send nothing before T", set by whoever received a 429.

All times come from the Redis server's `TIME`, so machines with skewed clocks agree.
Acquiring is one Lua script (gate, then concurrency, then rates, then commit all), so two
processes can never both take the last slot. The only local time is the caller's wait
bound and its sleeps between polls: `clock` and `sleep` are injectable so that tests can
assert on the schedule (what was slept, when Redis granted) instead of on elapsed time.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis

from connector import metrics
from connector.config.model import PimConfig
from connector.pim.errors import TransientPimError
from connector.redis_conn import Keys

log = logging.getLogger(__name__)

#: the name of the optional second Akeneo connection, for media uploads
MEDIA_CONNECTION = "media"

# Reasons returned by the acquire script when it refuses.
GRANTED, WAIT_GATE, WAIT_IN_FLIGHT, WAIT_RATE, WAIT_OPTION = 0, 1, 2, 3, 4
_REASONS = {
    WAIT_GATE: "gate", WAIT_IN_FLIGHT: "in_flight", WAIT_RATE: "rate", WAIT_OPTION: "option"
}

_ACQUIRE = """
-- KEYS: 1 in-flight zset, 2 rate zset, 3 gate, 4 option-rate zset
-- ARGV: 1 lease id, 2 max in flight, 3 lease ttl ms, 4 rate limit, 5 rate window ms,
--       6 option limit (0 = not an option write), 7 option window ms
-- returns {reason, wait_ms}; reason 0 = granted
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gate = tonumber(redis.call('GET', KEYS[3]) or '0')
if gate > now then return {1, gate - now} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return {2, 0} end
local window = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {3, math.max(1, tonumber(oldest[2]) + window - now)}
end
local option_limit = tonumber(ARGV[6])
local option_window = tonumber(ARGV[7])
if option_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - option_window)
  if redis.call('ZCARD', KEYS[4]) >= option_limit then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    return {4, math.max(1, tonumber(oldest[2]) + option_window - now)}
  end
  redis.call('ZADD', KEYS[4], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[4], option_window * 2)
end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], window * 2)
return {0, 0}
"""

_RELEASE = """
-- KEYS: 1 in-flight zset; ARGV: 1 lease id. Returns 1 when the lease was still held.
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

_BLOCK = """
-- KEYS: 1 gate; ARGV: 1 delay ms. Moves "not before" later, never earlier. Returns it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local target = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if target > current then
  redis.call('SET', KEYS[1], target, 'PX', tonumber(ARGV[1]) + 1000)
  return target
end
return current
"""

_GATE_REMAINING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gate = tonumber(redis.call('GET', KEYS[1]) or '0')
return math.max(0, gate - now)
"""


def rate_window(rate: float, margin: float = 0.0) -> tuple[int, int]:
    """A rate (per second) as (max events, window in ms) for a sliding-window log.

    2.5/s → 2 per 800 ms; 0.5/s → 1 per 2000 ms. `margin` widens the window a little so that
    send-time jitter cannot make the PIM see one request too many in any one second.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    limit = max(1, math.floor(rate))
    return limit, math.ceil(1000.0 * limit / rate * (1.0 + margin))


@dataclass(frozen=True)
class Lease:
    """One in-flight slot; give it back with `RequestBudget.release`."""

    id: str
    option_write: bool = False


class RequestBudget:
    """Fleet-wide concurrency, rate and Retry-After limits for one PIM connection."""

    #: who the budget is for, in log lines; the DAM's budget (connector.dam.ratelimit) says DAM
    label = "PIM"

    def __init__(
        self,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        max_in_flight: int = 4,
        requests_per_second: float = 100.0,
        option_writes_per_second: float = 3.0,
        lease_ttl: float = 90.0,
        max_wait: float = 60.0,
        poll_interval: float = 0.01,
        window_margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        connection: str = "",
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._redis = redis_client
        self._keys = keys
        self.max_in_flight = max_in_flight
        self.rate_limit, self.rate_window_ms = rate_window(requests_per_second, window_margin)
        self.option_limit, self.option_window_ms = rate_window(
            option_writes_per_second, window_margin
        )
        self.lease_ttl_ms = max(1, int(lease_ttl * 1000))
        self.max_wait = max_wait
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        # Akeneo counts concurrent calls per connection, requests per second per instance:
        # a second connection (media uploads) has in-flight slots of its own and shares
        # the request rate and the Retry-After gate with the first
        self.connection = connection
        self.in_flight_key = (keys.of("pim", "budget", connection, "in_flight") if connection
                              else keys.of("pim", "budget", "in_flight"))
        self.rate_key = keys.of("pim", "budget", "rate")
        self.option_key = keys.of("pim", "budget", "option_rate")
        self.gate_key = keys.of("pim", "budget", "gate")
        self._acquire = redis_client.register_script(_ACQUIRE)
        self._release = redis_client.register_script(_RELEASE)
        self._block = redis_client.register_script(_BLOCK)
        self._gate_remaining = redis_client.register_script(_GATE_REMAINING)
        self._lock = threading.Lock()
        self._stats: dict[str, float] = {
            "acquired": 0, "gave_up": 0, "waits": 0, "wait_seconds": 0.0, "waiting_now": 0
        }

    @classmethod
    def from_config(
        cls, redis_client: redis.Redis, keys: Keys, config: PimConfig, *, connection: str = "",
        **overrides: float,
    ) -> RequestBudget:
        """Limits from `PimConfig`; a lease outlives any single call (2 * timeout + 30 s).
        The media connection (`connection="media"`) has `media_max_in_flight` slots."""
        kwargs: dict[str, Any] = {
            "max_in_flight": config.max_in_flight,
            "requests_per_second": config.requests_per_second,
            "option_writes_per_second": config.option_writes_per_second,
            "lease_ttl": 2 * config.timeout + 30,
        }
        if connection == MEDIA_CONNECTION:
            kwargs["max_in_flight"] = config.media_max_in_flight
        kwargs.update(overrides)
        kwargs["max_in_flight"] = int(kwargs["max_in_flight"])
        return cls(redis_client, keys, connection=connection, **kwargs)

    # ------------------------------------------------------------------ slots

    def acquire(self, *, option_write: bool = False) -> Lease:
        """Block (polling Redis) until a slot is free; TransientPimError after `max_wait`."""
        lease = Lease(uuid.uuid4().hex, option_write)
        started = self._clock()
        deadline = started + self.max_wait
        waited = False
        args: list[str | int] = [
            lease.id,
            self.max_in_flight,
            self.lease_ttl_ms,
            self.rate_limit,
            self.rate_window_ms,
            self.option_limit if option_write else 0,
            self.option_window_ms,
        ]
        keys = [self.in_flight_key, self.rate_key, self.gate_key, self.option_key]
        while True:
            try:
                reason, wait_ms = (int(v) for v in self._acquire(keys=keys, args=args))
            except redis.RedisError as exc:
                if waited:
                    self._count(True, self._clock() - started, acquired=False)
                raise self._error(
                    f"request budget unavailable (Redis: {type(exc).__name__})", None
                ) from exc
            if reason == GRANTED:
                self._count(waited, self._clock() - started, acquired=True)
                return lease
            if not waited:
                log.debug("%s budget: waiting (%s, %d ms)", self.label, _REASONS.get(reason),
                          wait_ms)
                with self._lock:
                    self._stats["waiting_now"] += 1
            waited = True
            now = self._clock()
            remaining = deadline - now
            if reason == WAIT_GATE and wait_ms / 1000.0 > remaining:
                # The PIM asked for a pause longer than we may block: hand it to the caller.
                self._count(True, now - started, acquired=False)
                raise self._error("budget wait exceeded", wait_ms / 1000.0)
            if remaining <= 0:
                self._count(True, now - started, acquired=False)
                raise self._error("budget wait exceeded", self.poll_interval)
            jitter = random.uniform(0.5, 1.5) * self.poll_interval
            self._sleep(min(remaining, max(wait_ms / 1000.0, 0.0) + jitter))

    def _error(self, message: str, retry_after: float | None) -> Exception:
        """The transient error a refused acquisition raises (the DAM's budget overrides it)."""
        return TransientPimError(message, retry_after=retry_after)

    def release(self, lease: Lease) -> None:
        """Give the slot back (a Redis failure here only delays it until the lease expires)."""
        try:
            self._release(keys=[self.in_flight_key], args=[lease.id])
        except redis.RedisError:
            log.warning("%s budget: could not release a lease; it expires by itself", self.label)

    @contextmanager
    def slot(self, *, option_write: bool = False) -> Iterator[Lease]:
        lease = self.acquire(option_write=option_write)
        try:
            yield lease
        finally:
            self.release(lease)

    # ------------------------------------------------------------------ Retry-After gate

    def block_for(self, seconds: float) -> None:
        """Record "nothing is sent for `seconds`" for every process (never shortens a gate)."""
        if seconds <= 0:
            return
        try:
            self._block(keys=[self.gate_key], args=[math.ceil(seconds * 1000)])
        except redis.RedisError:
            log.warning("%s budget: could not record a Retry-After gate", self.label)
        log.info("%s budget: %s asked for a pause of %.2f s", self.label, self.label, seconds)

    def gate_remaining(self) -> float:
        """Seconds until the Retry-After gate opens (0 when open)."""
        return int(self._gate_remaining(keys=[self.gate_key])) / 1000.0

    def in_flight(self) -> int:
        """Live leases right now (fleet-wide)."""
        now_s, now_us = cast(tuple[int, int], self._redis.time())
        now_ms = int(now_s) * 1000 + int(now_us) // 1000
        return int(cast(int, self._redis.zcount(self.in_flight_key, f"({now_ms}", "+inf")))

    # ------------------------------------------------------------------ observability

    def _count(self, waited: bool, seconds: float, *, acquired: bool) -> None:
        with self._lock:
            self._stats["acquired" if acquired else "gave_up"] += 1
            if waited:
                self._stats["waiting_now"] -= 1
                self._stats["waits"] += 1
                self._stats["wait_seconds"] += seconds
        if waited:  # fleet-wide metrics (connector.metrics), flushed after the task
            metrics.add("budget_waits", self.label.lower(), keys=self._keys)
            metrics.add("budget_wait", self.label.lower(), by=seconds, keys=self._keys)

    def stats(self) -> dict[str, float]:
        """This process's acquisitions, how many had to wait (and how long in total), how
        many gave up, and how many threads are waiting right now."""
        with self._lock:
            return dict(self._stats)
