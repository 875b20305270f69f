"""StructureCache against the sandbox PIM over real HTTP and the real Redis.

Two StructureCache instances stand for two worker processes: they share nothing but Redis.
PIM reads are counted from the sandbox's own request log, not from the cache's counters.
"""

from __future__ import annotations

import threading

import pytest
import redis

from connector.config.model import PimConfig
from connector.pim.cache import StructureCache, StructureUnavailableError, UnknownFamilyError
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from sandbox.pim import PimSandbox
from sandbox.server import BackgroundServer
from tests.helpers import wait_for

FAMILY_PATH = "/api/rest/v1/asset-families/{}"


@pytest.fixture
def pim(pim_server) -> tuple[PimSandbox, BackgroundServer]:
    """The module's sandbox, emptied and seeded afresh (a server per test costs 0.5 s)."""
    sandbox, server = pim_server
    sandbox.reset()
    sandbox.update_settings(latency=0.0)
    sandbox.seed_family(
        "packshots",
        {"labels": {"en_US": "Packshots"}},
        attributes=[
            {"code": "image_url", "type": "media_link", "media_type": "image",
             "prefix": "https://cdn.example.com/"},
            {"code": "main_colors", "type": "multiple_options"},
            {"code": "disclaimer", "type": "text", "value_per_locale": True},
            {"code": "width", "type": "number"},
        ],
        options={"main_colors": ["red", "blue"]},
    )
    sandbox.seed_family("videos", {"labels": {"en_US": "Videos"}},
                        attributes=[{"code": "title", "type": "text"}])
    return sandbox, server


def make_client(
    server: BackgroundServer, namespace: str, redis_client: redis.Redis
) -> AkeneoClient:
    credentials = PimCredentials(
        url=server.url,
        client_id="sandbox-client",
        client_secret=Secret("sandbox-secret"),
        username="sandbox",
        password=Secret("sandbox-password"),
    )
    config = PimConfig(timeout=10, max_in_flight=16, requests_per_second=10_000,
                       option_writes_per_second=10_000)
    return AkeneoClient(credentials, config, redis_client, Keys(namespace))


def family_gets(sandbox: PimSandbox, code: str) -> int:
    """GETs of the family resource itself: exactly one per structure fetch."""
    path = FAMILY_PATH.format(code)
    return sum(1 for r in sandbox.log() if r["method"] == "GET" and r["path"] == path)


def cache_for(client: AkeneoClient, redis_client: redis.Redis, namespace: str,
              **kw: float) -> StructureCache:
    kw.setdefault("memo_ttl", 0)
    return StructureCache(client, redis_client, Keys(namespace), **kw)  # type: ignore[arg-type]


def test_structure_is_read_from_the_pim(pim, namespace, redis_client):
    _, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    structure = cache.family("packshots")
    assert structure.code == "packshots"
    assert structure.attributes["image_url"].type == "media_link"
    assert structure.attributes["image_url"].prefix == "https://cdn.example.com/"
    assert structure.attributes["disclaimer"].value_per_locale is True
    assert set(structure.attributes["main_colors"].options) == {"red", "blue"}
    # the sandbox, like Akeneo, creates `label` and `media` with every family
    assert structure.attributes["media"].type == "media_file"
    assert structure.fetched_at > 0


def test_one_fetch_for_many_reads_across_processes(pim, namespace, redis_client):
    sandbox, server = pim
    first = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    second = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    first.family("packshots")
    for _ in range(5):
        assert second.family("packshots").attributes["width"].type == "number"
    assert family_gets(sandbox, "packshots") == 1
    assert first.stats() == {"hits": 5, "misses": 1, "fetches": 1}
    assert second.stats() == first.stats()  # fleet-wide: the same counters for both


def test_in_process_memo_spares_redis(pim, namespace, redis_client):
    _, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace,
                      memo_ttl=60)
    for _ in range(10):
        cache.family("packshots")
    assert cache.stats() == {"hits": 0, "misses": 1, "fetches": 1}
    assert cache.memo_hits == 9


def test_ttl_expiry_refetches(pim, namespace, redis_client):
    sandbox, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace,
                      ttl=1)
    cache.family("packshots")
    assert 0 <= (cache.expires_in("packshots") or 0) <= 1
    wait_for(lambda: cache.cached("packshots") is None, timeout=5, what="TTL expiry")
    cache.family("packshots")
    assert family_gets(sandbox, "packshots") == 2
    assert cache.stats()["fetches"] == 2


def test_invalidate_refetches_and_sees_changes(pim, namespace, redis_client):
    sandbox, server = pim
    client = make_client(server, namespace, redis_client)
    cache = cache_for(client, redis_client, namespace)
    other = cache_for(client, redis_client, namespace)
    assert cache.family("packshots").attribute("new_one") is None
    sandbox.store.upsert_attribute("packshots", "new_one", {"code": "new_one", "type": "text"})
    assert other.family("packshots").attribute("new_one") is None  # still cached
    cache.invalidate("packshots")
    assert other.family("packshots").attribute("new_one") is not None
    assert family_gets(sandbox, "packshots") == 2

    cache.family("videos")
    cache.invalidate()  # everything
    assert cache.cached_codes() == []
    cache.families(["packshots", "videos"])
    assert family_gets(sandbox, "packshots") == 3
    assert family_gets(sandbox, "videos") == 2


def test_refresh_refetches_now(pim, namespace, redis_client):
    sandbox, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    cache.family("videos")
    result = cache.refresh(["videos"])
    assert set(result) == {"videos"}
    assert family_gets(sandbox, "videos") == 2
    assert cache.cached_codes() == ["videos"]


def test_concurrent_first_reads_fetch_once_per_family(pim, namespace, redis_client):
    sandbox, server = pim
    sandbox.update_settings(latency=0.05)  # widen the race window
    client = make_client(server, namespace, redis_client)
    caches = [cache_for(client, redis_client, namespace) for _ in range(8)]
    barrier = threading.Barrier(len(caches))
    results: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def worker(cache: StructureCache) -> None:
        try:
            barrier.wait(timeout=10)
            for code in ("packshots", "videos"):
                results.append((code, len(cache.family(code).attributes)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 16
    assert family_gets(sandbox, "packshots") == 1
    assert family_gets(sandbox, "videos") == 1
    stats = caches[0].stats()
    assert stats["fetches"] == 2
    assert stats["hits"] + stats["misses"] == 16


def test_unknown_family_is_a_clear_key_error_and_is_remembered(pim, namespace, redis_client):
    sandbox, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    with pytest.raises(UnknownFamilyError) as info:
        cache.family("nope")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "asset family 'nope' does not exist in the PIM"
    with pytest.raises(UnknownFamilyError):
        cache.family("nope")
    assert family_gets(sandbox, "nope") == 1  # the negative answer is cached too
    sandbox.seed_family("nope", {})
    cache.invalidate("nope")  # e.g. after `structure apply` created it
    assert cache.family("nope").code == "nope"


def test_note_option_updates_the_cached_options(pim, namespace, redis_client):
    sandbox, server = pim
    client = make_client(server, namespace, redis_client)
    cache = cache_for(client, redis_client, namespace, memo_ttl=60)
    other = cache_for(client, redis_client, namespace)
    cache.family("packshots")
    ttl_before = cache.expires_in("packshots")
    assert ttl_before is not None
    cache.note_option("packshots", "main_colors", "green")
    cache.note_option("packshots", "main_colors", "GREEN")  # codes are case-insensitive
    assert cache.family("packshots").attributes["main_colors"].options == ("red", "blue", "green")
    assert other.family("packshots").attributes["main_colors"].options == ("red", "blue", "green")
    assert (cache.expires_in("packshots") or 0) <= ttl_before  # the TTL is kept, not renewed
    cache.note_option("videos", "title", "x")  # not cached: nothing to do, nothing created
    assert cache.cached("videos") is None
    assert family_gets(sandbox, "packshots") == 1


def test_concurrent_note_option_loses_nothing(pim, namespace, redis_client):
    _, server = pim
    client = make_client(server, namespace, redis_client)
    cache = cache_for(client, redis_client, namespace)
    cache.family("packshots")
    codes = [f"c{i}" for i in range(12)]
    threads = [
        threading.Thread(target=cache_for(client, redis_client, namespace).note_option,
                         args=("packshots", "main_colors", code))
        for code in codes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    options = cache.family("packshots").attributes["main_colors"].options
    assert set(options) == {"red", "blue", *codes}


def test_a_dead_lock_holder_does_not_block_forever(pim, namespace, redis_client):
    sandbox, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace)
    # another process took the lock and died: the lock expires, then someone fetches
    redis_client.set(Keys(namespace).of("structure", "lock", "videos"), "dead", px=300)
    assert cache.family("videos").code == "videos"
    assert family_gets(sandbox, "videos") == 1


def test_waiting_for_a_slow_fetch_has_a_deadline(pim, namespace, redis_client):
    _, server = pim
    cache = cache_for(make_client(server, namespace, redis_client), redis_client, namespace,
                      wait_timeout=0.2)
    redis_client.set(Keys(namespace).of("structure", "lock", "videos"), "busy", px=10_000)
    with pytest.raises(StructureUnavailableError, match="videos"):
        cache.family("videos")
