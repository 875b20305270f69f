"""The mass-deletion guard's configuration and arithmetic, and the default `all_ids` of a
DAM adapter (a record that failed normalisation still exists). The guard at work, over
HTTP with real workers, is in tests/e2e/test_deletion_safety.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import IO, Any

import pytest

from connector import pipeline as steps
from connector.config import ConfigError, parse_config
from connector.config.model import MaxDeletions
from connector.dam.base import BadRecord, DamAsset, DamSource, Page
from connector.pim.errors import TransientPimError
from connector.pipeline import apply_deletions, dead_letters
from connector.pipeline.deletions import guard_message
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services
from tests.test_config import ENV, base, put


def _policy(value: Any) -> Any:
    data = put(base(), "sources/bynder/deletion_policy", value)
    return parse_config(data, ENV).source("bynder").deletion_policy


def test_max_deletions_defaults_and_custom_values() -> None:
    assert _policy({"action": "delete"}).max_deletions == MaxDeletions(500, 10.0)
    custom = _policy({"action": "delete", "max_deletions": {"count": 20, "percent": 2.5}})
    assert custom.max_deletions == MaxDeletions(20, 2.5)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"percent": 150}, "sources.bynder.deletion_policy.max_deletions.percent: "
                           "must be at most 100"),
        ({"count": -1}, "sources.bynder.deletion_policy.max_deletions.count: "
                        "must be at least 0"),
        ({"count": "many"}, "sources.bynder.deletion_policy.max_deletions.count: "
                            'must be an integer, got "many"'),
        ({"limit": 5}, "sources.bynder.deletion_policy.max_deletions.limit: unknown key"),
    ],
)
def test_bad_max_deletions_are_named(value: dict[str, Any], expected: str) -> None:
    data = put(base(), "sources/bynder/deletion_policy",
               {"action": "delete", "max_deletions": value})
    with pytest.raises(ConfigError) as info:
        parse_config(data, ENV)
    assert any(e.startswith(expected) for e in info.value.errors), info.value.errors


def test_the_limit_is_the_smaller_of_count_and_share_rounded_up() -> None:
    limits = MaxDeletions()
    assert limits.limit(12) == 2        # 10 % of 12 = 1.2 → 2
    assert limits.limit(1_250) == 125
    assert limits.limit(100_000) == 500  # the absolute count wins
    assert limits.limit(0) == 0          # a PIM without assets of the source
    assert MaxDeletions(percent=100).limit(7) == 7
    assert MaxDeletions(count=0).limit(1_000) == 0


def test_the_refusal_names_the_numbers_and_the_way_out() -> None:
    assert guard_message("X", "reconcile", "delete", 1_200, 1_250, 500, 10.0) == (
        "reconcile would delete 1,200 of 1,250 assets of source X (limit 500 or 10 %): "
        "nothing deleted; check the DAM, or run "
        "`connector reconcile X --apply --allow-mass-deletion` once"
    )
    assert "would flag 3 of 4" in guard_message("X", "sync", "flag", 3, 4, 500, 10.0)


class _Listing(DamSource):
    """A DAM whose only listing has one sound record and two it cannot normalise."""

    name = "dam"

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        yield Page(
            assets=[DamAsset(id="ok", source="dam", properties={})],
            bad=[BadRecord("dam", {}, "unparsable date", "updated", "broken"),
                 BadRecord("dam", {}, "missing id", "id", None)],
        )

    def get(self, asset_id: str) -> DamAsset | None:
        return None

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        raise NotImplementedError


def test_all_ids_counts_records_that_failed_normalisation() -> None:
    assert list(_Listing().all_ids()) == ["ok", "broken"]


class _BusyPim(FakePim):
    """Answers DELETE with 503 (Retry-After 0.04 s, under the fake's backoff_max) `busy`
    times, then as usual."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.busy = busy

    def delete_asset(self, family: str, code: str) -> bool:
        if self.busy > 0:
            self.busy -= 1
            raise TransientPimError("Service Unavailable", status=503, retry_after=0.04)
        return super().delete_asset(family, code)


@pytest.mark.parametrize(("busy", "dead"), [(2, 0), (99, 2)])
def test_transient_deletions_are_retried_in_rounds_then_dead_lettered(
    namespace: str, busy: int, dead: int
) -> None:
    pim = _BusyPim(0)
    dam = FakeDam([make_asset(i) for i in range(2)])
    services, queue = make_services(make_config(max_retries=3), dam, pim)
    assert steps.start_run("dam", "test", services=services).started
    queue.drain()
    pim.busy = busy
    waits: list[float] = []
    counts = apply_deletions("dam", ["A00000-X", "A00001-X"], services=services,
                             sleep=waits.append)
    assert (counts["deleted"], counts["failed"]) == (2 - dead, dead), counts
    assert all(w >= 0.04 for w in waits)  # Retry-After honoured
    assert len(waits) == (1 if not dead else 2)  # one wait per round, not per id
    letters = dead_letters("dam", services=services)
    assert [(d["kind"], d["status"], d["attempts"]) for d in letters] == [
        ("deletion", 503, 3)] * dead
    assert all(d["message"].startswith("gave up after repeated transient") for d in letters)


def test_the_sandbox_delete_knobs_refuse_what_they_cannot_answer() -> None:
    from sandbox.dam import DamSandbox
    from sandbox.pim import PimSandbox

    pim = PimSandbox()
    with pytest.raises(ValueError, match="delete_errors should be a list of statuses"):
        pim.update_settings(delete_errors=[204])
    assert pim.update_settings(delete_errors=[429, 403]).delete_errors == [429, 403]
    assert DamSandbox(assets=3).configure(list_empty=True).list_empty is True
