"""Direct product linking is safe under concurrency and repairs itself.

Against the sandbox PIM over HTTP, real Redis and real Celery push worker processes:
- many push processes linking assets to the same product never lose a link (Akeneo's
  product PATCH replaces the whole asset collection, so an unserialised read-merge-write
  loses the other workers' codes);
- a link whose product does not exist yet stays pending (listed by `connector links
  pending`) and is made by the next run once the product exists;
- an asset whose product reference changes moves: off the old product, onto the new one.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.transform.codes import asset_code
from tests.e2e.world import ROOT, SOURCE, World

pytestmark = pytest.mark.timeout(180)

DIRECT = {"mode": "direct", "identifier_property": "property_sku", "product_attribute": "assets"}


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    """The e2e world with the `videos` family linking directly, batches of 3 and one
    worker of 4 processes: 12 assets make 4 push batches handled at the same time."""
    w = World(tmp_path, redis_url, 120)
    try:
        w.start(push_batch_size=3)
        assert w.config_path is not None and w.app is not None and w.services is not None
        w.edit_config(lambda data: data["families"]["videos"].update(product_link=dict(DIRECT)))
        w.start_worker(concurrency=4)
        yield w
    finally:
        w.stop()


def _videos(world: World, n: int) -> list[str]:
    dam = world.dam
    assert dam is not None
    bad = {b["id"] for b in dam.bad_records()}
    ids = [i for i in dam.ids() if i not in bad and (dam.record(i) or {}).get("type") == "video"]
    assert len(ids) >= n
    return ids[:n]


def _linked(world: World, identifier: str) -> list[str]:
    product = world.client().get_product(identifier) or {}
    for value in (product.get("values") or {}).get("assets") or []:
        if value.get("locale") is None and value.get("scope") is None:
            return list(value.get("data") or [])
    return []


def _create_product(world: World, identifier: str, codes: list[str]) -> None:
    line = {"identifier": identifier,
            "values": {"assets": [{"locale": None, "scope": None, "data": codes}]}}
    results = world.client().patch_products([line])
    assert results[0]["status_code"] in (201, 204), results


def _set_sku(world: World, ids: list[str], sku: str) -> None:
    assert world.dam is not None
    for dam_id in ids:
        assert world.dam.edit(dam_id, {"property_sku": sku}) is not None


def _sync_ids(world: World, ids: list[str]) -> dict[str, Any]:
    report = world.sync(asset_ids=ids)
    assert report["state"] == "succeeded", report
    return report


def _pending_cli(world: World) -> dict[str, Any]:
    out = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "connector"), "links", "pending", SOURCE, "--json"],
        env=world.env(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def test_concurrent_push_processes_never_lose_a_link(world: World) -> None:
    ids = _videos(world, 12)
    _set_sku(world, ids, "race-product")
    _create_product(world, "race-product", ["kept_asset"])
    assert world.pim is not None
    world.pim.update_settings(latency=0.1)  # reads and writes of the 4 batches overlap
    pim = world.pim

    def product_calls(method: str) -> int:
        return sum(1 for r in pim.log() if r["method"] == method and "/products" in r["path"])

    reads, writes = product_calls("GET"), product_calls("PATCH")
    report = _sync_ids(world, ids)
    assert report["counts"]["created"] == 12, report
    # still batched: one product read and one product write per push batch, no more
    assert (product_calls("GET") - reads, product_calls("PATCH") - writes) == (4, 4)

    linked = _linked(world, "race-product")
    missing = [asset_code(i) for i in ids if asset_code(i) not in linked]
    assert not missing, f"{len(missing)} of 12 links lost: {linked}"
    assert linked[0] == "kept_asset" and len(linked) == 13


def test_link_to_a_missing_product_stays_pending_until_the_product_exists(
    world: World,
) -> None:
    ids = _videos(world, 2)
    _set_sku(world, ids, "late-product")
    _sync_ids(world, ids)
    assert _linked(world, "late-product") == []

    pending = _pending_cli(world)[SOURCE]
    assert {(p["identifier"], p["code"]) for p in pending} == {
        ("late-product", asset_code(i)) for i in ids
    }, pending
    assert all("not found" in p["reason"] for p in pending), pending

    _create_product(world, "late-product", [])
    dam = world.dam
    assert dam is not None
    other = next(i for i in dam.ids() if (dam.record(i) or {}).get("type") == "image")
    _sync_ids(world, [other])  # the next run: the two assets themselves are unchanged
    assert sorted(_linked(world, "late-product")) == sorted(asset_code(i) for i in ids)
    assert _pending_cli(world)[SOURCE] == []


def test_changed_product_reference_moves_the_asset(world: World) -> None:
    ids = _videos(world, 2)
    moved, stays = ids
    _set_sku(world, ids, "old-product")
    _create_product(world, "old-product", ["kept_asset"])
    _create_product(world, "new-product", [])
    _sync_ids(world, ids)
    before = _linked(world, "old-product")
    assert before[0] == "kept_asset"
    assert sorted(before[1:]) == sorted([asset_code(moved), asset_code(stays)])

    _set_sku(world, [moved], "new-product")
    _sync_ids(world, [moved])
    assert _linked(world, "old-product") == ["kept_asset", asset_code(stays)]
    assert _linked(world, "new-product") == [asset_code(moved)]
