"""A fetch in parts (steps/slices.py): each part reads a slice of the DAM's pages, saves
where the listing is and queues the next part; the run sees every asset exactly once, and
a part delivered twice changes nothing. Sandbox DAM over HTTP (every paginator style) and
a hot folder; the PIM and the task queue are in-process fakes."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from connector import pipeline as steps
from connector.config.model import FolderSourceConfig, SyncConfig
from connector.dam.base import DamAsset, DamSource
from connector.dam.folder import FolderSource
from connector.dam.rest import RestSource
from connector.pipeline import Services
from connector.pipeline.steps.slices import FetchCheckpoint, FetchSlices
from connector.redis_conn import Keys, get_redis
from connector.transform.result import Skipped
from sandbox.dam import DamSandbox
from sandbox.server import BackgroundServer
from tests.pipeline_fakes import FakeCache, FakePim, FakeQuarantine, QueueEnqueuer, make_config
from tests.test_dam_rest import make_config as rest_config


class Recorder:
    """A transformer that only notes which assets the run hands it."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()

    def transform(self, asset: DamAsset) -> Skipped:
        self.seen[asset.id] += 1
        return Skipped(asset.id, asset.source, "recorded")

    def plan(self, asset: DamAsset, keep_binaries: bool = False) -> Skipped:
        return self.transform(asset)


class Dispatcher:
    def __init__(self) -> None:
        self.current: DamSandbox | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        assert self.current is not None
        return self.current.app(environ, start_response)


@pytest.fixture(scope="module")
def dam_server() -> Iterator[tuple[Dispatcher, str]]:
    dispatcher = Dispatcher()
    background = BackgroundServer(dispatcher).start()
    yield dispatcher, background.url
    background.stop()


def _services(source: DamSource, slice_pages: int, chunk_size: int = 7
              ) -> tuple[Services, QueueEnqueuer, Recorder]:
    base = make_config(chunk_size=chunk_size)
    config = replace(base, sync=replace(base.sync, fetch_slice_pages=slice_pages))
    queue, recorder = QueueEnqueuer(), Recorder()
    services = Services(
        config, get_redis(), Keys(), client=FakePim(), cache=FakeCache(),
        sources={"dam": source}, enqueuer=queue,
        transformer_factory=lambda s, src: recorder, quarantine=FakeQuarantine(),
    )
    queue.services = services
    return services, queue, recorder


def _listed(source: DamSource) -> list[str]:
    return [a.id for page in source.changed_since(None) for a in page.assets]


def _run(services: Services, queue: QueueEnqueuer, duplicate: float = 0.0) -> str:
    import random

    started = steps.start_run("dam", "test", services=services)
    assert started.started, started.message
    queue.drain(rng=random.Random(7) if duplicate else None, duplicate=duplicate)
    return started.run_id


def _fetch_parts(queue: QueueEnqueuer) -> list[int]:
    return [args[1] for kind, args in queue.sent if kind == "fetch"]


@pytest.mark.parametrize("style", ["bynder", "offset", "cursor", "header_cursor", "link",
                                   "cloudinary"])
def test_a_fetch_in_parts_sees_every_asset_exactly_once(
    namespace: str, dam_server: tuple[Dispatcher, str], style: str
) -> None:
    dispatcher, url = dam_server
    shape = "cloudinary" if style == "cloudinary" else "bynder"
    dispatcher.current = DamSandbox(assets=95, shape=shape, bad=False, auth="any")
    source = RestSource("dam", rest_config(url, style), backoff_base=0.01)
    expected = _listed(source)
    assert len(expected) == 95
    services, queue, recorder = _services(source, slice_pages=2)

    run = services.runs.get(_run(services, queue))

    assert run.state == "succeeded", run.to_dict()
    assert recorder.seen == collections.Counter(expected)  # each one, once
    assert services.runs.counts(run.run_id)["seen"] == 95
    # 10 items a page, 2 pages a part: 10 pages, 5 parts (the continuation of the last
    # full page may find an empty one: at most one more)
    parts = _fetch_parts(queue)
    assert parts[:5] == [0, 1, 2, 3, 4] and len(parts) in (5, 6), parts
    assert parts == sorted(set(parts))


def test_every_message_delivered_twice_changes_nothing(
    namespace: str, dam_server: tuple[Dispatcher, str]
) -> None:
    dispatcher, url = dam_server
    dispatcher.current = DamSandbox(assets=63, bad=False)
    source = RestSource("dam", rest_config(url, "cursor"), backoff_base=0.01)
    services, queue, recorder = _services(source, slice_pages=1)

    run_id = _run(services, queue, duplicate=1.0)  # acks_late redelivery of every task

    run = services.runs.get(run_id)
    assert run.state == "succeeded"
    assert sorted(recorder.seen) == sorted(_listed(source))
    assert set(recorder.seen.values()) == {1}
    assert services.runs.counts(run.run_id)["seen"] == 63
    # each part queued once, each chunk queued once, though each message ran twice
    parts = _fetch_parts(queue)
    assert parts == sorted(set(parts)) and len(parts) >= 7
    chunks = [args[1] for kind, args in queue.sent if kind == "transform"]
    # 63 assets, 10 a page, a part a page: each part flushes its buffer (7 + 3), the last 3
    assert len(chunks) == len(set(chunks)) == 13
    # and an old part delivered once more, after the run: nothing moves
    counts = services.runs.counts(run_id)
    before = len(queue.sent)
    steps.fetch(run_id, part=2, services=services)
    assert len(queue.sent) == before
    assert services.runs.counts(run_id) == counts


def test_a_replayed_part_queues_no_chunk_twice(
    namespace: str, dam_server: tuple[Dispatcher, str]
) -> None:
    """The crash case: part 0 ran (chunks queued) but died before its checkpoint moved;
    its redelivery re-reads the same pages and must not queue their chunks again."""
    dispatcher, url = dam_server
    dispatcher.current = DamSandbox(assets=40, bad=False)
    source = RestSource("dam", rest_config(url, "bynder"), backoff_base=0.01)
    services, queue, _recorder = _services(source, slice_pages=2)
    started = steps.start_run("dam", "test", services=services)
    run_id = started.run_id
    assert run_id is not None
    queue.queue.clear()  # the start's own fetch message: we deliver by hand
    slices = FetchSlices(services, run_id)

    steps.fetch(run_id, part=0, services=services)
    first = [m for m in queue.sent if m[0] == "transform"]
    assert slices.load().part == 1
    # rewind the checkpoint: as if part 0 crashed after queuing its chunks
    services.redis.delete(slices.key)
    steps.fetch(run_id, part=0, services=services)
    second = [m for m in queue.sent if m[0] == "transform"]
    assert second == first  # no chunk queued again
    assert _fetch_parts(queue).count(1) == 2  # the checkpoint moved again: part 1 re-queued


def test_the_checkpoint_moves_once_per_part(namespace: str) -> None:
    services, _queue, _recorder = _services(FolderSource("dam", FolderSourceConfig(path=".")),
                                            slice_pages=1)
    slices = FetchSlices(services, "run-x")
    following = FetchCheckpoint(part=1, resume='{"pages": 1}', sequence=3)
    assert slices.advance(0, following) is True
    assert slices.advance(0, following) is False  # the other delivery of part 0
    assert slices.load() == following
    assert slices.advance(1, replace(following, part=2)) is True


def test_a_hot_folder_resumes_after_its_last_file(namespace: str, tmp_path: Path) -> None:
    for d in ("a", "b/c", "b/d"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    names = [f"{d}/{i:02d}.jpg" for d in ("a", "b/c", "b/d") for i in range(9)] + ["z.jpg"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    folder = FolderSource("dam", FolderSourceConfig(path=str(tmp_path)), page_size=4)
    services, queue, recorder = _services(folder, slice_pages=1, chunk_size=3)

    run = services.runs.get(_run(services, queue))

    assert run.state == "succeeded"
    assert recorder.seen == collections.Counter(names)
    # 28 files, 4 a page, a part a page; the 7th page is full, so an 8th part finds the end
    assert _fetch_parts(queue) == list(range(8))


def test_fetch_slice_keys_have_defaults_and_limits() -> None:
    from connector.config.schemas.sync import SyncSchema

    assert SyncConfig().fetch_slice_seconds == 240.0
    assert SyncSchema().load({"fetch_slice_seconds": "2m"}).fetch_slice_seconds == 120.0
    with pytest.raises(Exception, match="fetch task's soft time limit"):
        SyncSchema().load({"fetch_slice_seconds": "20m"})
