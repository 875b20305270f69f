"""Hostile DAM data through real runs (sandbox DAM → real transform → sandbox PIM, steps run
in-process): fuzzed records next to good ones, and media URLs that point outside the
DAM's allow-list (another loopback address, the cloud metadata endpoint, an internal name,
a redirect from the DAM itself).

What must hold: no run crashes, every record ends in a state with a reason (quarantine
entries and dead letters say why), good records next to bad ones land with exactly their
expected values, and no download ever reaches a host outside the allow-list.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.transform.codes import asset_code
from sandbox.server import BackgroundServer
from tests.e2e.expected import expected_values, family_of, normalise
from tests.e2e.world import SOURCE, World
from tests.faults.support import SIZE, sized
from tests.security.inline import InlineRunner

ASSETS = sized(1000, 150)
FINAL_STATES = {"created", "updated", "unchanged", "skipped", "quarantined", "failed"}

pytestmark = [pytest.mark.timeout(sized(1800, 180))]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    w = World(Path(tmp_path_factory.mktemp("hostile")), redis_url, ASSETS)
    try:
        w.start()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def runner(world: World) -> Iterator[InlineRunner]:
    r = InlineRunner(world)
    first = r.run()
    assert first["state"] == "succeeded", first
    try:
        yield r
    finally:
        r.close()


def _pim_values(world: World, family: str, code: str) -> dict[str, Any] | None:
    assert world.pim is not None
    for asset in world.pim.dump_assets(family):
        if asset["code"] == code:
            return normalise(asset.get("values") or {})
    return None


def _assert_landed(world: World, dam_id: str) -> None:
    assert world.dam is not None and world.dam_server is not None
    rec = world.dam.record(dam_id)
    assert rec is not None
    family = family_of(rec)
    assert family is not None
    got = _pim_values(world, family, asset_code(dam_id))
    assert got is not None, f"good record {dam_id} did not land"
    got.pop("file", None)
    assert got == expected_values(rec, world.dam_server.url), dam_id


def _catalog_ids(world: World, family: str) -> list[str]:
    """Valid records of `family` from the sandbox's own catalogue (not fuzzed additions)."""
    assert world.dam is not None
    bad = {b["id"] for b in world.dam.bad_records()}
    found = []
    for dam_id in world.dam.ids():
        rec = world.dam.record(dam_id) or {}
        if dam_id in bad or not isinstance(rec.get("tags"), list):
            continue
        if not all(isinstance(rec.get(k), str) for k in ("folder", "filename", "description")):
            continue
        if family_of(rec) == family and not rec["description"].startswith("still fine"):
            found.append(dam_id)
    return found


def _good_packshot(n: int) -> dict[str, Any]:
    sku = f"good-sku-{n}"
    return {
        "name": f"{sku}_1_front", "filename": f"{sku}_1_front.png", "extension": "png",
        "type": "image", "folder": "products/packshots", "tags": ["product", "summer"],
        "description": f"A good packshot #{n}", "property_colors": "red, Gray",
        "property_sku": sku, "property_disclaimer": "Photo non contractuelle",
        "width": 800, "height": 600, "property_product_asset": True,
    }


# ---------------------------------------------------------------- fuzzed records

_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "xx_XX", "en_US", "fr_FR", "12.5", "-1", "1e309", "NaN",
                       "red,,blue", "gray", "\u0000", "\u202e", "a" * 5000, "../../etc"])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=6,
)
_hostile = st.fixed_dictionaries(
    {
        "folder": st.sampled_from(["products/packshots", "products/user-guides",
                                   "products/videos", "marketing/banners"]) | _json,
        "tags": st.just(["product"]) | _json,
    },
    optional={
        "name": _json,
        "filename": st.sampled_from(["x_user_guide_fr_FR.pdf", "x_user_guide_xx_XX.pdf",
                                     "v.mp4", "p_1_front.png", "", "no-extension"])
        | st.text(alphabet=string.ascii_letters + "._-", max_size=30),
        "type": st.sampled_from(["image", "document", "video"]) | _json,
        "description": _json, "width": _json, "height": _json, "duration": _json,
        "language": _json, "property_colors": _json, "property_sku": _json,
        "property_disclaimer": _json, "property_product_asset": _json,
        "fileSize": _json, "dateCreated": _json,
    },
)


@settings(max_examples=sized(150, 12), deadline=None, derandomize=SIZE != "full",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=st.lists(_hostile, min_size=1, max_size=6))
def test_fuzzed_records_end_with_a_reason_and_good_ones_still_land(
    world: World, runner: InlineRunner, records: list[dict[str, Any]]
) -> None:
    dam = world.dam
    assert dam is not None
    hostile = [dam.add(rec)["id"] for rec in records]
    good = [dam.add(_good_packshot(n))["id"] for n in range(2)]
    report = runner.run()
    assert report["state"] == "succeeded", report
    run_id = report["run_id"]
    for dam_id in good:
        assert runner.asset_state(run_id, dam_id) in ("created", "updated"), dam_id
        _assert_landed(world, dam_id)
    for dam_id, rec in zip(hostile, records, strict=True):
        state = runner.asset_state(run_id, dam_id)
        assert state in FINAL_STATES, (dam_id, state, rec)
        if state == "quarantined":
            entry = runner.services.quarantine.get(SOURCE, dam_id)
            assert entry and str(entry.get("reason") or "").strip(), (entry, rec)
        elif state == "failed":
            letters = {d.dam_id: d for d in runner.services.dead_letters.list(SOURCE, 1000)}
            assert letters[dam_id].message.strip(), letters[dam_id]


# ---------------------------------------------------------------- media allow-list


def test_media_urls_outside_the_allow_list_are_refused_and_the_asset_quarantined(
    world: World, runner: InlineRunner
) -> None:
    dam, services = world.dam, runner.services
    assert dam is not None and world.dam_server is not None
    hits: list[str] = []

    def canary(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        hits.append(environ.get("PATH_INFO", ""))
        start_response("200 OK", [("Content-Type", "application/pdf")])
        return [b"%PDF-1.4 internal secret"]

    internal = BackgroundServer(canary, "127.0.0.2", 0).start()
    try:
        guides = _catalog_ids(world, "user_guides")
        forbidden = {
            f"{internal.url}/guide.pdf": "127.0.0.2",
            "http://169.254.169.254/latest/meta-data/iam/guide.pdf": "metadata",
            "http://metadata.google.internal/computeMetadata/v1/guide.pdf": "metadata",
            "http://redis.internal.corp:6379/guide.pdf": "redis.internal.corp",
            f"{world.dam_server.url}/_sandbox/redirect?to="
            + quote(f"{internal.url}/redirected.pdf", safe=""): "127.0.0.2",
        }
        targets = dict(zip(guides, forbidden.items(), strict=False))
        assert len(targets) == len(forbidden)
        for dam_id, (url, _) in targets.items():
            dam.edit(dam_id, {"original": url})
        neighbours = guides[len(forbidden) : len(forbidden) + 3]
        for dam_id in neighbours:
            dam.edit(dam_id, {"description": f"still fine {dam_id[:6]}"})
        report = runner.run()
    finally:
        internal.stop()
    assert report["state"] == "succeeded", report
    assert hits == [], f"a download reached a host outside the allow-list: {hits}"
    for dam_id, (url, host) in targets.items():
        assert runner.asset_state(report["run_id"], dam_id) == "quarantined", (dam_id, url)
        entry = services.quarantine.get(SOURCE, dam_id)
        assert entry is not None
        reason = str(entry["reason"])
        assert "refused" in reason and host in reason, (url, entry)
        assert entry.get("field") == "file", entry
    for dam_id in neighbours:
        assert runner.asset_state(report["run_id"], dam_id) == "updated", dam_id
        _assert_landed(world, dam_id)
