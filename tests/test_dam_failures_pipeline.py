"""A DAM that fails some downloads: the asset becomes a `dam` dead letter, its chunk goes on,
and a chunk retried after a DAM outage does not redo what it already transformed.

In-process fakes for the DAM, PIM and queue (tests/pipeline_fakes.py); the run bookkeeping
is real (real Redis). The Celery side of the same story runs in tests/faults.
"""

from __future__ import annotations

import pytest

from connector import pipeline as steps
from connector.dam.base import DamAsset, TransientDamError
from connector.pipeline import dead_letters, retry_dead_letters, run_report
from connector.transform.result import Quarantined, Skipped, TransformedAsset
from tests.pipeline_fakes import FakeDam, FakePim, FakeTransformer, make_asset, make_config
from tests.pipeline_fakes import make_services as _make_services


class FlakyDamTransformer(FakeTransformer):
    """FakeTransformer whose media download fails (TransientDamError) for `failing` ids."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.seen: list[str] = []

    def transform(self, asset: DamAsset) -> TransformedAsset | Quarantined | Skipped:
        self.seen.append(asset.id)
        if asset.id in self.failing:
            self.calls += 1
            raise TransientDamError(f"download of /media/{asset.id} answered HTTP 503")
        return super().transform(asset)


def _world(n: int):
    assets = [make_asset(i) for i in range(n)]
    dam, pim = FakeDam(assets), FakePim()
    services, queue = _make_services(make_config(chunk_size=50), dam, pim)
    transformer = FlakyDamTransformer()
    services._transformer_factory = lambda s, src: transformer
    return dam, pim, services, queue, transformer


def test_a_download_that_keeps_failing_is_a_dam_dead_letter_and_the_chunk_goes_on(
    namespace: str,
) -> None:
    _dam, pim, services, queue, transformer = _world(20)
    transformer.failing = {"A00007-X"}
    started = steps.start_run("dam", "test", services=services)
    queue.drain()
    report = run_report(started.run_id, services=services)
    assert report["state"] == "succeeded", report
    assert report["counts"]["created"] == 19 and report["counts"]["failed"] == 1, report
    assert pim.total() == 19
    letters = dead_letters("dam", services=services)
    assert [d["dam_id"] for d in letters] == ["A00007-X"]
    assert letters[0]["kind"] == "dam"
    assert "HTTP 503" in letters[0]["message"]
    assert services.quarantine.count("dam") == 0  # not the record's fault
    # the DAM serves the file again: a retry of the failures writes it
    transformer.failing.clear()
    retried = retry_dead_letters("dam", services=services)
    queue.drain()
    again = run_report(retried["run_id"], services=services)
    assert again["state"] == "succeeded" and again["counts"]["created"] == 1, again
    assert dead_letters("dam", services=services) == [] and pim.total() == 20


def test_a_retried_chunk_does_not_redo_the_assets_it_already_transformed(
    namespace: str,
) -> None:
    _dam, pim, services, queue, transformer = _world(50)
    # the DAM goes down from the 21st asset on: three failures in a row look like an outage
    # (not an asset's fault), so the chunk's task fails and is retried later
    transformer.failing = {f"A{i:05d}-X" for i in range(20, 50)}
    started = steps.start_run("dam", "test", services=services)
    run_id = started.run_id
    kind, args = queue.queue.popleft()
    queue.run_one(kind, args)  # fetch: one chunk of 50
    kind, args = queue.queue.popleft()
    assert kind == "transform"
    with pytest.raises(TransientDamError):
        queue.run_one(kind, args)
    assert dead_letters("dam", services=services) == []  # an outage is no asset's fault
    first_pass = list(transformer.seen)
    assert first_pass[:20] == [f"A{i:05d}-X" for i in range(20)]
    # the DAM is back; Celery runs the same chunk again
    transformer.failing.clear()
    transformer.seen.clear()
    queue.run_one(kind, args)
    assert transformer.seen == [f"A{i:05d}-X" for i in range(20, 50)]
    queue.drain()
    report = run_report(run_id, services=services)
    assert report["state"] == "succeeded", report
    assert report["counts"]["created"] == 50 and report["counts"]["failed"] == 0, report
    assert pim.total() == 50


def test_a_chunk_stopped_by_the_pim_keeps_its_progress_too(namespace: str) -> None:
    from connector.pim.errors import TransientPimError

    _dam, pim, services, queue, transformer = _world(30)
    original = transformer.transform

    def upload_refused_once(asset: DamAsset) -> TransformedAsset | Quarantined | Skipped:
        if asset.id == "A00010-X" and not getattr(transformer, "refused", False):
            transformer.refused = True  # type: ignore[attr-defined]
            raise TransientPimError("media upload: 429", retry_after=1.0)
        return original(asset)

    transformer.transform = upload_refused_once  # type: ignore[method-assign]
    started = steps.start_run("dam", "test", services=services)
    kind, args = queue.queue.popleft()
    queue.run_one(kind, args)
    kind, args = queue.queue.popleft()
    with pytest.raises(TransientPimError):
        queue.run_one(kind, args)
    transformer.seen.clear()
    queue.run_one(kind, args)
    assert transformer.seen == [f"A{i:05d}-X" for i in range(10, 30)]
    queue.drain()
    report = run_report(started.run_id, services=services)
    assert report["state"] == "succeeded" and report["counts"]["created"] == 30, report
    assert pim.total() == 30
