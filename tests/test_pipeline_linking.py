"""Direct product linking (connector.pipeline.linking) against the sandbox PIM over HTTP
and a real Redis: serialised per product, pending links kept and retried, previous
products unlinked, product locks safe."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from connector.config import ConfigError, parse_config
from connector.config.model import Config, PimConfig
from connector.pim.client import AkeneoClient
from connector.pipeline.linking import (
    LinkState,
    SourceOnly,
    link_assets,
    pending_links,
    retry_after_run,
    retry_pending,
)
from connector.pipeline.reconcile import reconcile
from connector.pipeline.services import Services
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.transform.result import TransformedAsset
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer
from tests.pipeline_fakes import FakeDam, make_config

pytestmark = pytest.mark.timeout(60)

OWNER = SourceOnly("dam")


@pytest.fixture
def sandbox() -> Iterator[tuple[PimSandbox, BackgroundServer]]:
    pim = PimSandbox(PimSandboxSettings(seed=5, max_concurrency=0))
    server = pim.serve("127.0.0.1", 0)
    yield pim, server
    server.stop()


def _client(url: str, redis_url: str, namespace: str) -> AkeneoClient:
    creds = PimCredentials(url=url, client_id="sandbox-client",
                           client_secret=Secret("sandbox-secret"), username="sandbox",
                           password=Secret("sandbox-password"))
    return AkeneoClient(creds, PimConfig(timeout=10, requests_per_second=1000),
                        redis.Redis.from_url(redis_url), Keys(namespace))


Build = Callable[..., Services]


@pytest.fixture
def build(
    sandbox: tuple[PimSandbox, BackgroundServer], redis_url: str, namespace: str
) -> Iterator[Build]:
    """Services over the sandbox PIM and this test's Redis namespace (config and client
    replaceable), closed after the test."""
    made: list[Services] = []

    def build(config: Config | None = None, client: Any = None, **kw: Any) -> Services:
        s = Services(config or make_config(link_direct=True), redis.Redis.from_url(redis_url),
                     Keys(namespace),
                     client=client or _client(sandbox[1].url, redis_url, namespace), **kw)
        made.append(s)
        return s

    yield build
    for one in made:
        one.close()


@pytest.fixture
def services(build: Build) -> Services:
    return build()


def _asset(i: int, *products: str) -> TransformedAsset:
    return TransformedAsset(dam_id=f"D{i}", source="dam", family="packshots", code=f"asset_{i}",
                            values={}, content_hash=f"h{i}", product_identifiers=products)


def _create(s: Services, identifier: str, codes: list[str]) -> None:
    line = {"identifier": identifier,
            "values": {"assets": [{"locale": None, "scope": None, "data": codes}]}}
    assert s.client.patch_products([line])[0]["status_code"] in (201, 204)


def _linked(s: Services, identifier: str) -> list[str] | None:
    product = s.client.get_product(identifier)
    if product is None:
        return None
    for value in (product.get("values") or {}).get("assets") or []:
        if value.get("locale") is None and value.get("scope") is None:
            return list(value.get("data") or [])
    return []


class RefusingClient:
    """The real client, except that the PIM answers 422 to product lines of `refused`."""

    def __init__(self, inner: AkeneoClient) -> None:
        self.inner = inner
        self.refused: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def patch_products(self, products: Any) -> list[dict[str, Any]]:
        lines = list(products)
        allowed = [p for p in lines if p["identifier"] not in self.refused]
        answers = {r["identifier"]: r for r in self.inner.patch_products(allowed)}
        return [
            answers.get(p["identifier"]) or {
                "line": n, "identifier": p["identifier"], "status_code": 422,
                "message": "Validation failed.",
            }
            for n, p in enumerate(lines, 1)
        ]


def test_four_threads_linking_one_product_lose_no_link(
    services: Services, sandbox: tuple[PimSandbox, BackgroundServer]
) -> None:
    _create(services, "cap", ["kept"])
    sandbox[0].update_settings(latency=0.05)  # every read and write overlaps the others
    batches = [[_asset(t * 3 + i, "cap") for i in range(3)] for t in range(4)]
    errors: list[BaseException] = []

    def work(batch: list[TransformedAsset]) -> None:
        try:
            link_assets(services, OWNER, "packshots", batch)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    linked = _linked(services, "cap")
    assert linked is not None and linked[0] == "kept"
    assert sorted(linked[1:]) == sorted(f"asset_{i}" for i in range(12))
    assert pending_links("dam", services=services) == []


def test_refused_write_stays_pending_and_the_retry_makes_it(
    build: Build, sandbox: tuple[PimSandbox, BackgroundServer],
    redis_url: str, namespace: str,
) -> None:
    refusing = RefusingClient(_client(sandbox[1].url, redis_url, namespace))
    s = build(client=refusing)
    for identifier in ("ok-product", "refused-product"):
        _create(s, identifier, [])
    refusing.refused = {"refused-product"}

    link_assets(s, OWNER, "packshots", [_asset(1, "ok-product", "refused-product")])
    assert _linked(s, "ok-product") == ["asset_1"]
    assert _linked(s, "refused-product") == []
    [entry] = pending_links("dam", services=s)
    assert (entry["identifier"], entry["code"], entry["action"]) == (
        "refused-product", "asset_1", "link")
    assert "422" in entry["reason"] and entry["attempts"] == 1

    assert retry_pending(s, OWNER)["pending"] == 1  # still refused: counted, kept
    assert pending_links("dam", services=s)[0]["attempts"] == 2

    refusing.refused = set()
    counts = retry_pending(s, OWNER)
    assert (counts["done"], counts["pending"]) == (1, 0)
    assert _linked(s, "refused-product") == ["asset_1"]
    assert pending_links("dam", services=s) == []


def test_missing_product_is_never_created_and_is_linked_once_it_exists(
    services: Services,
) -> None:
    link_assets(services, OWNER, "packshots", [_asset(1, "later"), _asset(2, "later")])
    assert _linked(services, "later") is None  # no PATCH for it: that would create it
    pending = pending_links("dam", services=services)
    assert {(p["identifier"], p["code"]) for p in pending} == {
        ("later", "asset_1"), ("later", "asset_2")}
    assert all("not found" in p["reason"] for p in pending)

    _create(services, "later", ["kept"])
    assert retry_pending(services, OWNER)["done"] == 2
    assert _linked(services, "later") == ["kept", "asset_1", "asset_2"]
    assert pending_links("dam", services=services) == []


@dataclasses.dataclass(frozen=True)
class DryRun:
    source: str = "dam"
    run_id: str | None = None
    dry_run: bool = True


def test_reconcile_retries_pending_links_and_a_dry_run_does_not(
    build: Build, sandbox: tuple[PimSandbox, BackgroundServer],
    redis_url: str, namespace: str,
) -> None:
    class NoAssets(RefusingClient):
        def list_assets(self, family: str, updated_after: Any = None) -> list[Any]:
            return []  # the PIM side of the reconcile: nothing to compare

    s = build(client=NoAssets(_client(sandbox[1].url, redis_url, namespace)),
              sources={"dam": FakeDam([])})
    link_assets(s, OWNER, "packshots", [_asset(1, "late")])
    _create(s, "late", [])

    retry_after_run(s, DryRun())
    assert reconcile("dam", services=s)["pending_links"] == 1  # counted, not retried
    assert _linked(s, "late") == []

    applied = reconcile("dam", apply=True, services=s)
    assert applied["links_retried"]["done"] == 1 and applied["pending_links"] == 0
    assert _linked(s, "late") == ["asset_1"]


def test_changed_reference_unlinks_the_previous_product(services: Services) -> None:
    _create(services, "old", ["kept"])
    _create(services, "new", [])
    link_assets(services, OWNER, "packshots", [_asset(1, "old"), _asset(2, "old")])
    link_assets(services, OWNER, "packshots", [_asset(1, "new")])
    assert _linked(services, "old") == ["kept", "asset_2"]
    assert _linked(services, "new") == ["asset_1"]
    link_assets(services, OWNER, "packshots", [_asset(2)])  # reference removed
    assert _linked(services, "old") == ["kept"]


def test_unlink_previous_false_keeps_the_old_link_and_drops_its_pending_one(
    build: Build,
) -> None:
    config = make_config(link_direct=True)
    families = tuple(
        dataclasses.replace(
            f, product_link=dataclasses.replace(f.product_link, unlink_previous=False))
        for f in config.families
    )
    s = build(dataclasses.replace(config, families=families))
    _create(s, "old", [])
    _create(s, "new", [])
    link_assets(s, OWNER, "packshots", [_asset(1, "old", "gone-product")])
    assert [p["identifier"] for p in pending_links("dam", services=s)] == ["gone-product"]
    link_assets(s, OWNER, "packshots", [_asset(1, "new")])
    assert _linked(s, "old") == ["asset_1"]
    assert _linked(s, "new") == ["asset_1"]
    assert pending_links("dam", services=s) == []  # nobody wants that link any more


def test_product_lock_of_a_crashed_holder_frees_itself_and_is_only_released_by_its_owner(
    services: Services,
) -> None:
    _create(services, "busy", [])
    state = LinkState(services.redis, services.keys)
    [key] = state.lock_keys(["busy"])
    services.redis.set(key, "crashed-holder", px=500)
    state.release([key], "someone-else")
    assert services.redis.get(key) == b"crashed-holder"  # not ours: left alone

    started = time.monotonic()
    link_assets(services, OWNER, "packshots", [_asset(1, "busy")])
    assert time.monotonic() - started >= 0.3  # it waited for the lock...
    assert _linked(services, "busy") == ["asset_1"]  # ...then linked
    assert services.redis.get(key) is None  # and released its own lock


def test_unlink_previous_is_a_direct_mode_key() -> None:
    base: dict[str, Any] = {
        "families": {"f": {"match": {"folder": "x"}, "mapping": {"label": "name"},
                           "product_link": {"mode": "rules", "unlink_previous": False}}},
        "sources": {"s": {"type": "rest", "rest": {
            "base_url": "http://127.0.0.1:8081", "auth": {"type": "none"},
            "list": {"path": "/items/"}, "pagination": {"type": "page_number"}}}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(base, {})
    assert info.value.errors == [
        'families.f.product_link.unlink_previous: not used by product link mode "rules"']
    base["families"]["f"]["product_link"] = {
        "mode": "direct", "identifier_property": "sku", "product_attribute": "assets",
        "unlink_previous": False}
    assert parse_config(base, {}).family("f").product_link.unlink_previous is False
    del base["families"]["f"]["product_link"]["unlink_previous"]
    assert parse_config(base, {}).family("f").product_link.unlink_previous is True
