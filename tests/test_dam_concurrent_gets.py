"""`get_current_many`: a real-time batch reads the DAM's current records at once where the
adapter allows it (`DamSource.concurrent_gets`), in the ids' order, and one after another
where it does not. Why: a webhook batch of 100 ids was 100 DAM round trips in a row,
a fixed share of the freshness latency (docs/performance.md, section 9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import IO

import pytest

from connector.dam.base import DamAsset, DamSource, Page, TransientDamError
from connector.pipeline.steps.fetch import get_current_many


class CountingDam(DamSource):
    """Counts `get` calls in flight; `meet` makes every call wait for that many others."""

    def __init__(self, concurrent_gets: int, meet: int = 0) -> None:
        self.name = "counting"
        self.concurrent_gets = concurrent_gets
        self.barrier = threading.Barrier(meet, timeout=10) if meet else None
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.fail: set[str] = set()

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        return iter(())

    def get(self, asset_id: str) -> DamAsset | None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            if self.barrier is not None:
                self.barrier.wait()  # only returns once `meet` calls are in flight together
            if asset_id in self.fail:
                raise TransientDamError(f"{asset_id}: 503")
            if asset_id.startswith("gone"):
                return None
            return DamAsset(id=asset_id, source="counting", properties={},
                            updated=datetime(2026, 1, 1, tzinfo=UTC))
        finally:
            with self.lock:
                self.now -= 1

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        raise NotImplementedError


def test_an_adapter_that_allows_it_is_read_in_parallel_in_order() -> None:
    # every call waits until 4 are in flight together: one after another would time out
    together = CountingDam(concurrent_gets=4, meet=4)
    ids = [f"a{i}" for i in range(7)] + ["gone-1"]
    found = get_current_many(together, ids)
    assert list(found) == ids and found["gone-1"] is None
    assert all(found[i] is not None for i in ids[:7])
    assert together.most == 4  # never more than the adapter allows
    bounded = CountingDam(concurrent_gets=3)
    assert len(get_current_many(bounded, [f"b{i}" for i in range(30)])) == 30
    assert 1 <= bounded.most <= 3


def test_an_adapter_that_does_not_is_read_one_after_another() -> None:
    dam = CountingDam(concurrent_gets=1)
    found = get_current_many(dam, [f"a{i}" for i in range(20)])
    assert len(found) == 20 and dam.most == 1


def test_the_first_failure_is_raised_as_before() -> None:
    dam = CountingDam(concurrent_gets=3)
    dam.fail = {"a5"}
    with pytest.raises(TransientDamError, match="a5: 503"):
        get_current_many(dam, [f"a{i}" for i in range(10)])


def test_the_rest_source_allows_its_budget() -> None:
    from connector.config.model import ListEndpointConfig, RestSourceConfig
    from connector.dam.rest import RestSource

    source = RestSource("r", RestSourceConfig(base_url="https://dam.example.com",
                                              list=ListEndpointConfig(path="/assets"),
                                              max_in_flight=6))
    try:
        assert source.concurrent_gets == 3  # half its budget: the other half stays free
    finally:
        source.close()
