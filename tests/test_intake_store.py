"""Event parsing, coalescing, batches and flushes against the real Redis (fake pipeline)."""

from __future__ import annotations

import uuid

import pytest

from connector.config.model import EventFieldsConfig, RealtimeConfig
from connector.intake.events import Event, MalformedEvent, extract, parse_events
from connector.intake.flush import flush_source
from connector.intake.store import FLUSH_LATER, FLUSH_NOW, NO_FLUSH, IntakeStore
from connector.pim.errors import PermanentPimError, TransientPimError
from connector.redis_conn import Keys
from connector.retry import is_transient

FIELDS = EventFieldsConfig(
    event_type="type",
    asset_id="asset.id",
    delivery_id="delivery",
    record="asset",
    actions={"asset.updated": "upsert", "asset.created": "upsert", "asset.deleted": "delete"},
)


@pytest.fixture
def store(namespace, redis_client):
    return IntakeStore(redis_client, Keys(namespace), "dam", RealtimeConfig(window=2.0))


def up(*ids: str) -> list[Event]:
    return [Event("upsert", i) for i in ids]


def down(*ids: str) -> list[Event]:
    return [Event("delete", i) for i in ids]


# ------------------------------------------------------------------ parsing


def test_paths():
    doc = {"a": {"b": [{"id": 1}, {"id": "x"}, {"no": 2}]}, "l": [5, 6]}
    assert extract(doc, "a.b[].id") == [1, "x"]
    assert extract(doc, "l.1") == 6
    assert extract(doc, "a.missing") is None
    assert extract([{"id": "p"}], "[].id") == ["p"]


def test_parse_events_maps_types_and_ignores_unknown():
    events = parse_events(
        [
            {"type": "asset.updated", "asset": {"id": "A", "name": "x"}},
            {"type": "asset.deleted", "asset": {"id": "B"}},
            {"type": "asset.viewed", "asset": {"id": "C"}},
        ],
        FIELDS,
    )
    assert [(e.action, e.asset_id) for e in events] == [("upsert", "A"), ("delete", "B")]
    assert events[0].record == {"id": "A", "name": "x"}
    assert events[1].record is None


def test_cloudinary_bulk_delete_shape():
    fields = EventFieldsConfig(
        event_type="notification_type",
        asset_id="resources[].public_id",
        actions={"delete": "delete"},
    )
    doc = {"notification_type": "delete", "resources": [{"public_id": "a"}, {"public_id": "b"}]}
    assert [e.asset_id for e in parse_events(doc, fields)] == ["a", "b"]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"type": "asset.updated", "asset": {}}, "no asset id"),
        ({"type": "asset.updated", "asset": {"id": ["", None]}}, "no asset id"),
        ("just a string", "expected a JSON object"),
        ({"type": {"nested": 1}, "asset": {"id": "A"}}, "not a string"),
    ],
)
def test_malformed_events_say_why(doc, reason):
    with pytest.raises(MalformedEvent) as err:
        parse_events(doc, FIELDS)
    assert reason in err.value.reason


# ------------------------------------------------------------------ coalescing


def test_repeated_updates_coalesce_and_delete_wins(store):
    for _ in range(10):
        store.record(up("A"), via="t")
    store.record(up("B"), via="t")
    store.record(down("B"), via="t")
    store.record(down("C"), via="t")
    store.record(up("C"), via="t")  # later upsert after delete → upsert
    assert sorted(store.pending_ids()) == ["A", "B", "C"]
    assert store.deleted_ids() == {"B"}
    assert store.log_length() == 14
    batch = store.take_batch("b1")
    assert batch is not None
    assert sorted(batch.upserts) == ["A", "C"] and batch.deletes == ["B"]
    assert store.pending_count() == 0 and store.deleted_ids() == set()


def test_duplicate_delivery_recorded_once(store):
    first = store.record(up("A"), via="t", delivery_id="d-1", dedupe_ttl=60)
    again = store.record(up("A", "B"), via="t", delivery_id="d-1", dedupe_ttl=60)
    assert first.accepted and not again.accepted
    assert store.pending_ids() == ["A"]
    assert store.log_length() == 1


def test_schedule_codes_one_delayed_flush_per_window_then_flush_now(store):
    store.realtime = RealtimeConfig(window=30.0, batch_size=3)
    store2 = IntakeStore(store.redis, store.keys, "dam", store.realtime)
    assert store2.record(up("A"), via="t").schedule == FLUSH_LATER
    assert store2.record(up("B"), via="t").schedule == NO_FLUSH  # guard held for the window
    assert store2.record(up("C"), via="t").schedule == FLUSH_NOW
    assert store2.record(up("D"), via="t").schedule == NO_FLUSH  # one immediate flush at a time
    batch = store2.take_batch("b")
    assert batch is not None and len(batch) == 3
    assert store2.pending_ids() == ["D"]  # oldest first: D waits
    assert store2.record(up("E"), via="t").schedule == NO_FLUSH  # 2 < 3, window guard held


def test_batch_keeps_ids_until_complete_and_resumes(store):
    store.record(up("A", "B"), via="t")
    first = store.take_batch("b1")
    store.record(up("A"), via="t")  # a newer event while the batch is in flight
    resumed = store.take_batch("b1")  # same batch id (redelivered task) → same content
    assert first is not None and resumed is not None
    assert sorted(resumed.upserts) == ["A", "B"]
    assert store.in_flight_count() == 2
    store.complete("b1")
    assert store.in_flight_count() == 0
    assert store.pending_ids() == ["A"]


def test_expired_batches_go_back_to_pending_newer_events_win(store):
    store.record(up("A") + down("B") + up("C"), via="t")
    store.take_batch("dead")
    store.record(up("B"), via="t")  # after the delete was taken: B is now an upsert
    assert store.recover_expired() == 0  # lease still running
    assert store.recover_expired(now=10**12) == 2  # A and C restored, B already pending
    assert sorted(store.pending_ids()) == ["A", "B", "C"]
    assert store.deleted_ids() == set()
    assert store.in_flight_count() == 0


def test_expired_delete_is_restored_as_delete(store):
    store.record(down("X"), via="t")
    store.take_batch("dead")
    store.recover_expired(now=10**12)
    assert store.deleted_ids() == {"X"}


# ------------------------------------------------------------------ flush


class FakeSync:
    def __init__(self, fail: Exception | None = None):
        self.calls: list[tuple[str, list[str], list[str], str]] = []
        self.fail = fail

    def __call__(self, source, asset_ids, deleted_ids=(), trigger="webhook"):
        self.calls.append((source, sorted(asset_ids), sorted(deleted_ids), trigger))
        if self.fail is not None:
            raise self.fail
        return {"pushed": len(asset_ids) + len(deleted_ids), "failed": 0}


def test_flush_calls_pipeline_and_schedules_the_rest(store):
    store.realtime = RealtimeConfig(batch_size=2, window=5)
    s = IntakeStore(store.redis, store.keys, "dam", store.realtime)
    s.record(up("A", "B", "C") + down("D"), via="t")
    scheduled: list[tuple[str, float]] = []
    sync = FakeSync()
    out = flush_source(s, "b1", sync, schedule=lambda src, cd: scheduled.append((src, cd)))
    assert sync.calls == [("dam", ["A", "B"], [], "webhook")]
    assert out.pushed == 2
    assert scheduled == [("dam", 0.0)]  # two more waiting = a full batch → now
    flush_source(s, "b2", sync, schedule=lambda src, cd: scheduled.append((src, cd)))
    assert sync.calls[-1] == ("dam", ["C"], ["D"], "webhook")
    assert s.pending_count() == 0 and s.in_flight_count() == 0


def test_transient_failure_keeps_the_batch_for_the_retry(store):
    store.record(up("A"), via="t")
    with pytest.raises(TransientPimError):
        flush_source(store, "b1", FakeSync(TransientPimError("429", retry_after=1)))
    assert store.in_flight_count() == 1
    sync = FakeSync()
    flush_source(store, "b1", sync)  # the retry, same task id
    assert sync.calls == [("dam", ["A"], [], "webhook")]
    assert store.in_flight_count() == 0


def test_permanent_failure_parks_ids_in_failed(store):
    store.record(up("A"), via="t")
    with pytest.raises(PermanentPimError):
        flush_source(store, "b1", FakeSync(PermanentPimError("bad family", status=404)))
    assert store.in_flight_count() == 0
    assert store.failed()["A"]["reason"].startswith("PermanentPimError")


def test_records_travel_only_when_the_pipeline_takes_them(store):
    store.record([Event("upsert", "A", record={"id": "A", "v": 2})], via="t")
    got: dict = {}

    def sync(source, asset_ids, deleted_ids=(), trigger="webhook", records=None):
        got.update(records or {})

    flush_source(store, "b1", sync)
    assert got == {"A": {"id": "A", "v": 2}}


def test_transient_classification():
    class TransientThing(Exception):
        pass

    assert is_transient(TransientPimError("x"))
    assert is_transient(TransientThing())
    assert is_transient(ConnectionError())
    assert not is_transient(ValueError())
    assert not is_transient(PermanentPimError("x"))


def test_heartbeat_extends_the_lease(store):
    store.realtime = RealtimeConfig(batch_lease=0.3)
    s = IntakeStore(store.redis, store.keys, "dam", store.realtime)
    s.record(up("A"), via="t")
    seen: list[int] = []

    def slow_sync(source, asset_ids, deleted_ids=(), trigger="webhook"):
        # while we "work", another flush's recovery must not steal the batch
        from tests.helpers import wait_for

        t0 = s.redis.zscore(s.batches_key, "b1")
        wait_for(lambda: s.redis.zscore(s.batches_key, "b1") != t0, timeout=5)
        seen.append(s.recover_expired())

    flush_source(s, "b1", slow_sync)
    assert seen == [0]


def test_unique_batches_do_not_collide(store):
    store.record(up(*[f"id{i}" for i in range(250)]), via="t")
    ids = set()
    for _ in range(3):
        b = store.take_batch(uuid.uuid4().hex)
        assert b is not None
        ids.update(b.upserts)
    assert len(ids) == 250


def test_get_batch_reads_without_taking(store):
    store.record(up("A"), via="t")
    assert store.get_batch("b1") is None
    assert store.pending_ids() == ["A"]  # nothing was taken
    store.take_batch("b1")
    got = store.get_batch("b1")
    assert got is not None and got.upserts == ["A"]
