"""Product linking against the sandbox PIM, both ways the config offers.

`rules`: the family's product link rules (applied by `connector structure apply`) make the
PIM itself add each new packshot to its product's `assets`. `direct`: the connector reads
the products, merges the new asset codes into their asset collection and writes them back
in bulk — keeping the codes that were already there, since PATCH replaces arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import load_config
from connector.dam.factory import build_source
from connector.pipeline import sync_assets_by_id
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.transform.codes import asset_code
from tests.e2e.world import SOURCE, World

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    w = World(tmp_path, redis_url, 120)
    try:
        yield w.start()
    finally:
        w.stop()


def _product_assets(world: World, identifier: str) -> list[str]:
    product = world.client().get_product(identifier) or {}
    for value in (product.get("values") or {}).get("assets") or []:
        if value.get("locale") is None and value.get("scope") is None:
            return list(value.get("data") or [])
    return []


def _good_ids(world: World, folder: str) -> list[str]:
    dam = world.dam
    assert dam is not None
    bad = {b["id"] for b in dam.bad_records()}
    return [i for i in dam.ids() if i not in bad and (dam.record(i) or {}).get("folder") == folder]


def _create_products(world: World, skus: set[str], existing: str) -> None:
    lines = [
        {
            "identifier": sku,
            "values": {"assets": [{"locale": None, "scope": None, "data": [existing]}]},
        }
        for sku in sorted(skus)
    ]
    results = world.client().patch_products(lines)
    assert all(r["status_code"] in (201, 204) for r in results), results


def test_rules_mode_lets_the_pim_link_packshots(world: World) -> None:
    ids = _good_ids(world, "products/packshots")[:10]
    dam = world.dam
    assert dam is not None and ids
    skus = {str(dam.record(i)["property_sku"]) for i in ids}  # type: ignore[index]
    _create_products(world, skus, "kept_asset")

    counts = sync_assets_by_id(SOURCE, ids, services=world.services)
    assert counts["created"] == len(ids), counts

    for dam_id in ids:
        sku = str(dam.record(dam_id)["property_sku"])  # type: ignore[index]
        linked = _product_assets(world, sku)
        assert asset_code(dam_id) in linked
        assert "kept_asset" in linked  # rule mode "add" keeps what was there


def test_direct_mode_merges_codes_into_the_products(world: World, tmp_path: Path) -> None:
    assert world.config_path is not None and world.dam is not None
    data: dict[str, Any] = yaml.safe_load(world.config_path.read_text())
    data["families"]["videos"]["product_link"] = {
        "mode": "direct",
        "identifier_property": "property_sku",
        "product_attribute": "assets",
    }
    path = tmp_path / "direct.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(path, env=world.env())
    services = Services(
        config,
        get_redis(),
        Keys(world.namespace),
        client=world.client(),
        sources={SOURCE: build_source(config.source(SOURCE))},
        enqueuer=None,  # type: ignore[arg-type]
    )
    try:
        ids = _good_ids(world, "products/videos")[:8]
        assert ids
        skus = {str(world.dam.record(i)["property_sku"]) for i in ids}  # type: ignore[index]
        _create_products(world, skus, "kept_asset")
        pim = world.pim
        assert pim is not None

        def product_reads() -> int:
            return sum(1 for r in pim.log() if r["method"] == "GET" and "/products" in r["path"])

        before = product_reads()
        counts = sync_assets_by_id(SOURCE, ids, services=services)
        assert counts["created"] == len(ids), counts
        assert product_reads() - before == 1  # one batched read for all the products

        for dam_id in ids:
            sku = str(world.dam.record(dam_id)["property_sku"])  # type: ignore[index]
            linked = _product_assets(world, sku)
            assert asset_code(dam_id) in linked, (sku, linked)
            assert linked[0] == "kept_asset"  # read-merge-write kept the existing code

        # pushing the same assets again links nothing twice
        sync_assets_by_id(SOURCE, ids, force=True, services=services)
        for dam_id in ids:
            sku = str(world.dam.record(dam_id)["property_sku"])  # type: ignore[index]
            linked = _product_assets(world, sku)
            assert linked.count(asset_code(dam_id)) == 1
    finally:
        services.close()
