"""DAM requests retry transient answers themselves, through a fleet-wide budget in Redis.

Retry-After parsing (shared with the PIM side), the DAM budget's rate and Retry-After gate
shared by every process (two budget objects stand for two worker processes), and binary
downloads retried against the sandbox DAM instead of failing their chunk.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis

from connector.config.model import MediaConfig, RestSourceConfig, SourceConfig
from connector.dam.base import TransientDamError
from connector.dam.factory import build_source
from connector.dam.ratelimit import DamRequestBudget
from connector.dam.rest import RestSource
from connector.redis_conn import Keys
from connector.retry import backoff_delay, parse_retry_after
from sandbox.dam import DamSandbox
from sandbox.server import BackgroundServer
from tests.test_dam_rest import collect, make_config

# ---------------------------------------------------------------- Retry-After, backoff


def test_one_retry_after_parser_for_the_pim_and_the_dam() -> None:
    from connector.dam import rest
    from connector.pim import http

    assert rest.parse_retry_after is parse_retry_after
    assert http.parse_retry_after is parse_retry_after
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(junk) is None, junk
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 30.0
    assert parse_retry_after(later, now=lambda: now.timestamp()) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_backoff_is_exponential_jittered_capped_and_retry_after_wins() -> None:
    for attempt in range(1, 12):
        delay = backoff_delay(attempt, 0.5, 4.0)
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(1, 0.5, 4.0, retry_after=3.0) == 3.0
    assert backoff_delay(1, 0.5, 4.0, retry_after=60.0) == 4.0


# ---------------------------------------------------------------- the fleet-wide budget


def _budget(client: redis.Redis, namespace: str, source: str = "dam", **kw: Any
            ) -> DamRequestBudget:
    defaults: dict[str, Any] = {"requests_per_second": 1000.0, "max_in_flight": 4,
                                  "max_wait": 10.0}
    defaults.update(kw)
    return DamRequestBudget(client, Keys(namespace), source, **defaults)  # type: ignore[arg-type]


def test_a_retry_after_seen_by_one_process_holds_every_process_of_that_dam(
    redis_client: redis.Redis, namespace: str
) -> None:
    # asserted on the schedule, not on elapsed time: the sleeps asked for, and the Redis
    # time at which a slot was granted (its score in the budget's rate log)
    other_sleeps: list[float] = []
    first, second = _budget(redis_client, namespace), _budget(redis_client, namespace)
    other_dam = _budget(redis_client, namespace, source="other", sleep=other_sleeps.append)
    first.block_for(1.0)
    gate = int(redis_client.get(first.gate_key) or 0)  # "not before", Redis-server ms
    first.block_for(0.2)  # a shorter Retry-After never shortens the gate
    assert int(redis_client.get(second.gate_key) or 0) == gate
    assert second.gate_remaining() <= 1.0
    assert other_dam.gate_remaining() == 0.0
    with other_dam.slot():
        assert other_sleeps == []  # another DAM's gate holds nobody here
    with second.slot() as lease:
        assert int(redis_client.zscore(second.rate_key, lease.id) or 0) >= gate
    assert second.gate_remaining() == 0.0


def test_the_request_rate_is_shared_by_every_process(
    redis_client: redis.Redis, namespace: str
) -> None:
    budgets = [_budget(redis_client, namespace, requests_per_second=5.0) for _ in range(2)]
    started = time.monotonic()
    for i in range(10):
        with budgets[i % 2].slot():
            pass
    # 5/s fleet-wide: the 6th request waits for the first second's window to pass
    assert time.monotonic() - started >= 0.95


def test_a_gate_longer_than_the_wait_bound_is_a_transient_error_with_the_wait(
    redis_client: redis.Redis, namespace: str
) -> None:
    sleeps: list[float] = []
    budget = _budget(redis_client, namespace, max_wait=0.2, sleep=sleeps.append)
    budget.block_for(30.0)
    with pytest.raises(TransientDamError) as err, budget.slot():
        pass
    assert sleeps == []  # refused at once, without blocking
    assert err.value.retry_after is not None and 29.0 < err.value.retry_after <= 30.0


# ---------------------------------------------------------------- downloads, against the sandbox


@pytest.fixture
def dam() -> Iterator[tuple[DamSandbox, str]]:
    sandbox = DamSandbox(assets=60, shape="bynder", seed=7, auth="any")
    server = BackgroundServer(sandbox.app).start()
    try:
        yield sandbox, server.url
    finally:
        server.stop()


def _media_assets(source: RestSource) -> list:
    """Assets whose binary the sandbox serves (its bad records carry broken URLs)."""
    return [a for a in collect(source)[0] if a.media_url and "/media/" in a.media_url]


def _read(source: RestSource, asset) -> bytes:
    with source.open_binary(asset) as stream:
        return stream.read()


def test_a_429_on_a_download_is_retried_after_its_retry_after(
    dam: tuple[DamSandbox, str],
) -> None:
    sb, url = dam
    source = RestSource("dam", make_config(url, "bynder"), backoff_base=0.01)
    asset = _media_assets(source)[0]
    sb.configure(limit_media=True, inject_429=1, retry_after=1)
    started = time.monotonic()
    assert _read(source, asset)
    assert time.monotonic() - started >= 1.0
    counters = sb.counters()
    assert counters["429"] == 1 and counters["early_after_429"] == 0


def test_a_download_failing_every_time_is_transient_after_the_bounded_retries(
    dam: tuple[DamSandbox, str],
) -> None:
    sb, url = dam
    source = RestSource("dam", make_config(url, "bynder", max_retries=2), backoff_base=0.01)
    asset = _media_assets(source)[0]
    sb.configure(fail_media=(asset.id,))
    with pytest.raises(TransientDamError, match="503"):
        _read(source, asset)
    media = [e for e in sb.request_log() if e["rule"].startswith("/media/")]
    assert [e["status"] for e in media] == [503, 503, 503]  # 1 try + 2 retries


def test_two_processes_downloading_never_send_before_a_retry_after_expires(
    dam: tuple[DamSandbox, str], redis_url: str, namespace: str
) -> None:
    sb, url = dam
    config = make_config(url, "bynder", max_retries=8, requests_per_second=200)
    assets = _media_assets(RestSource("dam", config))
    assert len(assets) >= 20
    sb.configure(limit_media=True, inject_429_every=5, retry_after=0.5)
    sb.reset_counters()
    # one in flight fleet-wide: no request can already be on the wire when a 429 comes back
    sources = [
        build_source(
            SourceConfig(name="dam", type="rest", rest=_with(config, max_in_flight=1),
                         media=MediaConfig()),
            redis_client=redis.Redis.from_url(redis_url), keys=Keys(namespace),
        )
        for _ in range(2)
    ]
    got: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def worker(source, mine) -> None:
        try:
            for asset in mine:
                got[asset.id] = _read(source, asset)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(sources[i], assets[i::2]))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert set(got) == {a.id for a in assets} and all(got.values())
    counters = sb.counters()
    assert counters["429"] >= 3, counters
    assert counters["early_after_429"] == 0, counters


def _with(config: RestSourceConfig, **changes: object) -> RestSourceConfig:
    from dataclasses import replace

    return replace(config, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- configuration


def test_the_dam_budget_and_backoff_keys_are_configurable_and_checked() -> None:
    from connector.config import parse_config
    from tests.test_config import ENV, base, errors_of, put

    data = put(base(), "sources/bynder/rest/max_in_flight", 2)
    data = put(data, "sources/bynder/rest/backoff_base", "250ms")
    data = put(data, "sources/bynder/rest/backoff_max", "1m")
    rest = parse_config(data, ENV).source("bynder").rest
    assert rest is not None
    assert (rest.max_in_flight, rest.backoff_base, rest.backoff_max) == (2, 0.25, 60.0)
    assert errors_of(put(base(), "sources/bynder/rest/max_in_flight", 0)) == [
        "sources.bynder.rest.max_in_flight: must be at least 1"]
    assert errors_of(put(base(), "sources/bynder/rest/backoff_max", 0.1)) == [
        "sources.bynder.rest.backoff_max: must be at least backoff_base (0.5)"]
