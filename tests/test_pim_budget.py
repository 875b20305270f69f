"""The fleet-wide PIM request budget, against the real Redis (and real processes).

Timing is asserted on the schedule, never on elapsed wall-clock time (a busy machine makes
that flaky): the sleeps the budget asked for (`Sleeps`, injected) and the Redis-server times
at which it granted leases (their scores in the budget's sliding-window logs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import redis

from connector.config.model import PimConfig
from connector.pim.budget import Lease, RequestBudget, rate_window
from connector.pim.errors import TransientPimError
from connector.redis_conn import Keys
from tests.helpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


POLL = 0.005


class Sleeps:
    """The budget's sleep: records each requested pause, then really sleeps it (the limits
    live in Redis, whose clock must move on)."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        time.sleep(seconds)


def make_budget(redis_client: redis.Redis, namespace: str, **kw: Any) -> RequestBudget:
    options: dict[str, Any] = {"max_wait": 5.0, "poll_interval": POLL, **kw}
    return RequestBudget(redis_client, Keys(namespace), **options)


def granted_at(redis_client: redis.Redis, key: str, lease: Lease) -> int:
    """When Redis granted `lease`, in Redis-server ms (its score in the window log `key`)."""
    score = redis_client.zscore(key, lease.id)
    assert score is not None, "read it while the lease is still in the window"
    return int(score)


@pytest.mark.parametrize(
    ("rate", "margin", "expected"),
    [
        (100.0, 0.0, (100, 1000)),
        (3.0, 0.0, (3, 1000)),
        (2.5, 0.0, (2, 800)),
        (0.5, 0.0, (1, 2000)),
        (3.0, 0.02, (3, 1020)),
    ],
)
def test_rate_window_turns_a_rate_into_a_sliding_window(rate, margin, expected):
    assert rate_window(rate, margin) == expected


def test_rate_window_refuses_nonsense():
    with pytest.raises(ValueError, match="positive"):
        rate_window(0)


def test_from_config_takes_the_limits_and_a_lease_longer_than_any_call(redis_client, namespace):
    budget = RequestBudget.from_config(
        redis_client, Keys(namespace), PimConfig(timeout=10, max_in_flight=2,
                                                 requests_per_second=50,
                                                 option_writes_per_second=3)
    )
    assert budget.max_in_flight == 2
    assert budget.rate_limit == 50
    assert budget.option_limit == 3
    assert budget.lease_ttl_ms == 50_000


def test_in_flight_limit_blocks_the_fifth_and_release_frees_a_slot(redis_client, namespace):
    budget = make_budget(redis_client, namespace, max_in_flight=4, max_wait=0.2)
    leases = [budget.acquire() for _ in range(4)]
    assert budget.in_flight() == 4
    with pytest.raises(TransientPimError, match="budget wait exceeded"):
        budget.acquire()
    budget.release(leases.pop())
    assert budget.in_flight() == 3
    leases.append(budget.acquire())
    assert budget.in_flight() == 4
    stats = budget.stats()
    assert stats["acquired"] == 5
    assert stats["gave_up"] == 1


def test_a_waiting_thread_gets_the_slot_as_soon_as_one_is_released(redis_client, namespace):
    sleeps = Sleeps()
    budget = make_budget(redis_client, namespace, max_in_flight=1, sleep=sleeps)
    first = budget.acquire()
    got: list[int] = []

    def second() -> None:
        with budget.slot() as lease:
            got.append(granted_at(redis_client, budget.rate_key, lease))

    thread = threading.Thread(target=second)
    thread.start()
    wait_for(lambda: budget.stats()["waiting_now"] == 1, 2, what="the second thread to wait")
    assert not got  # still blocked: the only slot is held
    budget.release(first)
    thread.join(5)
    assert got
    # it only ever polled (never slept longer than one jittered poll), so it took the slot
    # at the first poll after the release
    assert sleeps.requested and max(sleeps.requested) <= 1.5 * POLL
    assert budget.stats()["waits"] == 1


HOLDER = textwrap.dedent(
    """
    import sys, time, redis
    from connector.pim.budget import RequestBudget
    from connector.redis_conn import Keys
    budget = RequestBudget(redis.Redis.from_url(sys.argv[1]), Keys(sys.argv[2]),
                           max_in_flight=4, lease_ttl=float(sys.argv[3]))
    for _ in range(4):
        budget.acquire()
    print("holding", flush=True)
    time.sleep(60)
    """
)


def test_a_killed_process_cannot_leak_its_slots(redis_client, redis_url, namespace):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, redis_url, namespace, "3.0"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
    finally:
        proc.kill()
        proc.wait(10)
    sleeps = Sleeps()
    budget = make_budget(redis_client, namespace, max_in_flight=4, lease_ttl=30, max_wait=10,
                         sleep=sleeps)
    assert budget.in_flight() == 4  # the dead process still "holds" them…
    expiries = [int(score) for _, score in
                redis_client.zrange(budget.in_flight_key, 0, -1, withscores=True)]
    leases = [budget.acquire() for _ in range(4)]  # …until their leases expire
    grants = [granted_at(redis_client, budget.rate_key, lease) for lease in leases]
    assert max(grants) >= max(expiries)  # not one slot before the dead leases expired…
    # …and no longer: it polled (no long sleep), at most the 3 s lease time in all
    assert max(sleeps.requested, default=0) <= 1.5 * POLL and sum(sleeps.requested) < 3.5
    for lease in leases:
        budget.release(lease)
    assert budget.in_flight() == 0


def test_request_rate_never_exceeds_the_limit_in_any_window(redis_client, namespace):
    sleeps = Sleeps()
    budget = make_budget(redis_client, namespace, max_in_flight=50, requests_per_second=10,
                         window_margin=0.0, sleep=sleeps)
    grants = []
    slept_before = []
    for _ in range(15):
        slept_before.append(len(sleeps.requested))
        with budget.slot() as lease:
            grants.append(granted_at(redis_client, budget.rate_key, lease))
    assert all(grants[i + 10] - grants[i] >= 1000 for i in range(len(grants) - 10))
    assert slept_before[10] == 0  # a burst up to the limit is allowed: no wait at all
    assert budget.stats()["waits"] >= 1


def test_option_writes_have_their_own_slower_window(redis_client, namespace):
    sleeps = Sleeps()
    budget = make_budget(redis_client, namespace, max_in_flight=50, requests_per_second=100,
                         option_writes_per_second=3, sleep=sleeps)
    option_grants = []
    for _ in range(5):
        with budget.slot(option_write=True) as lease:
            option_grants.append(granted_at(redis_client, budget.option_key, lease))
    assert option_grants[3] - option_grants[0] >= 1000
    assert option_grants[4] - option_grants[1] >= 1000
    # Other requests are not held back by the option-write window.
    slept = len(sleeps.requested)
    with budget.slot():
        pass
    assert len(sleeps.requested) == slept


def test_retry_after_gate_holds_every_sender_and_never_shortens(redis_client, namespace):
    budget = make_budget(redis_client, namespace)
    other_process_view = make_budget(redis_client, namespace)
    budget.block_for(0.6)
    gate = int(redis_client.get(budget.gate_key) or 0)  # "not before", Redis-server ms
    budget.block_for(0.1)  # a shorter Retry-After must not reopen the gate early
    assert int(redis_client.get(budget.gate_key) or 0) == gate
    assert other_process_view.gate_remaining() <= 0.6
    with other_process_view.slot() as lease:
        granted = granted_at(redis_client, other_process_view.rate_key, lease)
    assert granted >= gate  # nothing granted before the gate opened
    assert other_process_view.gate_remaining() == 0


def test_a_gate_longer_than_the_wait_bound_is_handed_to_the_caller(redis_client, namespace):
    sleeps = Sleeps()
    budget = make_budget(redis_client, namespace, max_wait=0.5, sleep=sleeps)
    budget.block_for(30)
    with pytest.raises(TransientPimError, match="budget wait exceeded") as info:
        budget.acquire()
    assert sleeps.requested == []  # no pointless blocking
    assert info.value.retry_after is not None and 29 < info.value.retry_after <= 30


WORKER = textwrap.dedent(
    """
    import sys, threading, time, redis
    from connector.pim.budget import RequestBudget
    from connector.redis_conn import Keys
    url, ns, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = redis.Redis.from_url(url)
    budget = RequestBudget(client, Keys(ns), max_in_flight=4, max_wait=30, poll_interval=0.002)
    probe = Keys(ns).of("probe")
    track = client.register_script(
        "local v = redis.call('INCR', KEYS[1]) "
        "if v > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], v) end "
        "return v")
    def work():
        for _ in range(rounds):
            with budget.slot():
                track(keys=[probe, probe + ":max"])
                time.sleep(0.005)  # the "request" being made while the slot is held
                client.decr(probe)
    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("done", flush=True)
    """
)


def test_two_processes_share_four_slots(redis_client, redis_url, namespace):
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_url, namespace, "25"],
                         cwd=REPO, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    peak = int(redis_client.get(f"{namespace}:probe:max") or 0)
    assert 2 <= peak <= 4, json.dumps({"peak": peak})


def test_redis_outage_is_a_transient_error():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    budget = RequestBudget(dead, Keys("nowhere"), max_wait=0.5)
    with pytest.raises(TransientPimError, match="budget unavailable"):
        budget.acquire()


def test_the_media_connection_has_slots_of_its_own_and_shares_the_instance_rate(
    redis_client, namespace
):
    """Akeneo: 4 concurrent calls per connection, 100 requests/s per instance. Uploads on
    their own connection (AKENEO_MEDIA_*) never wait for a bulk PATCH's slot, but every
    request of both counts against one rate and one Retry-After gate."""
    from connector.pim.budget import MEDIA_CONNECTION

    config = PimConfig(max_in_flight=2, media_max_in_flight=3, requests_per_second=50)
    main = RequestBudget.from_config(redis_client, Keys(namespace), config, max_wait=0.2,
                                     poll_interval=POLL)
    media = RequestBudget.from_config(redis_client, Keys(namespace), config, max_wait=0.2,
                                      poll_interval=POLL, connection=MEDIA_CONNECTION)
    assert (main.max_in_flight, media.max_in_flight) == (2, 3)
    held = [main.acquire(), main.acquire()]
    with pytest.raises(TransientPimError):
        main.acquire()  # the main connection is full...
    uploads = [media.acquire() for _ in range(3)]  # ...the media one is not
    assert (main.in_flight(), media.in_flight()) == (2, 3)
    with pytest.raises(TransientPimError):
        media.acquire()
    # one request rate for the instance: both logs are the same key, holding all five
    assert media.rate_key == main.rate_key
    assert redis_client.zcard(main.rate_key) == 5
    # a 429's Retry-After on either connection holds both back
    assert media.gate_key == main.gate_key
    for lease in held:
        main.release(lease)
    for lease in uploads:
        media.release(lease)
    media.block_for(30)
    with pytest.raises(TransientPimError):
        main.acquire()
