"""QuarantineStore on the real Redis (namespaced per test)."""

from __future__ import annotations

import time

import redis

from connector.redis_conn import Keys
from connector.transform.quarantine import QuarantineStore
from connector.transform.result import Quarantined


def store(redis_client: redis.Redis, ttl: int = 3600) -> QuarantineStore:
    return QuarantineStore(redis_client, Keys(), ttl=ttl)


def test_add_get_list_remove(namespace: str, redis_client: redis.Redis) -> None:
    s = store(redis_client)
    q1 = Quarantined("A1", "dam", "'wide' is not a number", "width", "packshots")
    q2 = Quarantined("A2", "dam", "no family matches", "family")
    s.add("dam", q1, run_id="run-1")
    s.add("dam", q2, run_id="run-1")
    s.add("other", Quarantined("B1", "other", "missing id"))

    entry = s.get("dam", "A1")
    assert entry is not None
    assert entry["reason"] == "'wide' is not a number"
    assert (entry["field"], entry["family"], entry["run_id"]) == ("width", "packshots", "run-1")
    assert abs(entry["time"] - time.time()) < 60
    assert [e["dam_id"] for e in s.list("dam")] == ["A1", "A2"]
    assert s.count("dam") == 2
    assert s.counts() == {"dam": 2, "other": 1}
    assert s.reasons("dam") == {"'wide' is not a number": 1, "no family matches": 1}

    # the latest quarantine of a record replaces the older one
    s.add("dam", Quarantined("A1", "dam", "text is too long", "label", "packshots"), "run-2")
    assert s.count("dam") == 2
    assert s.get("dam", "A1")["reason"] == "text is too long"  # type: ignore[index]

    assert s.remove("dam", "A1") is True
    assert s.remove("dam", "A1") is False
    assert s.get("dam", "A1") is None
    assert s.count("dam") == 1
    assert redis_client.exists(f"{namespace}:quarantine:dam")


def test_records_without_id_get_a_stable_entry(namespace: str, redis_client: redis.Redis) -> None:
    s = store(redis_client)
    q = Quarantined(None, "dam", "missing id", "id", None, {"raw": '{"name": "x"}'})
    first = s.add("dam", q)
    again = s.add("dam", q)
    other = s.add("dam", Quarantined(None, "dam", "missing id", "id", None, {"raw": "{}"}))
    assert first == again and first.startswith("_noid_") and other != first
    assert s.count("dam") == 2
    assert s.get("dam", first)["details"] == {"raw": '{"name": "x"}'}  # type: ignore[index]


def test_ttl_applies_to_key_and_entries(namespace: str, redis_client: redis.Redis) -> None:
    s = store(redis_client, ttl=100)
    s.add("dam", Quarantined("A1", "dam", "x"))
    assert 0 < int(redis_client.ttl(f"{namespace}:quarantine:dam")) <= 100  # type: ignore[arg-type]
    # an entry older than the ttl is not returned and is dropped when listed
    old = QuarantineStore(redis_client, Keys(), ttl=100)
    key = f"{namespace}:quarantine:dam"
    redis_client.hset(key, "OLD", '{"dam_id": "OLD", "reason": "x", "time": 1}')
    assert old.get("dam", "OLD") is None
    assert [e["dam_id"] for e in old.list("dam")] == ["A1"]
    assert not redis_client.hexists(key, "OLD")


def test_many_and_bulk_remove(namespace: str, redis_client: redis.Redis) -> None:
    s = store(redis_client)
    ids = s.add_many("dam", [Quarantined(f"A{i}", "dam", "x") for i in range(250)], "r")
    assert len(ids) == 250 and s.count("dam") == 250
    assert len(s.list("dam", limit=10)) == 10
    assert s.remove_many("dam", ids[:200]) == 200
    assert s.count("dam") == 50
    assert s.add_many("dam", []) == []
