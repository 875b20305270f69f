"""examples/bynder.yaml and examples/cloudinary.yaml, loaded as a user would, streaming
from the sandbox DAM in those API shapes."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.config import load_config
from connector.dam.factory import build_source
from connector.dam.paths import get_path
from connector.dam.rest import RestSource
from connector.transform.selectors import asset_view, matches
from sandbox.dam import DamSandbox

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def bynder() -> Iterator[tuple[DamSandbox, dict[str, str]]]:
    sb = DamSandbox(assets=120, shape="bynder", seed=11)
    server = sb.serve()
    env = {"BYNDER_SCHEME": "http", "BYNDER_DOMAIN": f"127.0.0.1:{server.port}",
           "BYNDER_TOKEN": "sandbox-dam-token", "BYNDER_WEBHOOK_SECRET": "w"}
    yield sb, env
    server.stop()


@pytest.fixture
def cloudinary() -> Iterator[tuple[DamSandbox, dict[str, str]]]:
    sb = DamSandbox(assets=120, shape="cloudinary", seed=12)
    server = sb.serve()
    env = {"CLOUDINARY_API_URL": server.url, "CLOUDINARY_CLOUD_NAME": "demo",
           "CLOUDINARY_API_KEY": "sandbox", "CLOUDINARY_API_SECRET": "sandbox-dam-password"}
    yield sb, env
    server.stop()


def stream(source):
    assets, bad = [], []
    for page in source.changed_since(None):
        assets.extend(page.assets)
        bad.extend(page.bad)
    return assets, bad


def check_families(config, source_config, assets, every_product_asset=True):
    """Product assets match one family at most (exactly one when `every_product_asset`)
    and every mapped property resolves."""
    families = config.families_of(source_config)
    per_family: dict[str, list] = collections.defaultdict(list)
    non_product = 0
    for asset in assets:
        view = asset_view(asset)
        if not matches(config.product_asset, view):
            non_product += 1
            assert asset.folder.startswith("marketing/"), asset.id
            continue
        hits = [f.name for f in families if matches(f.match, view)]
        assert len(hits) == (1 if every_product_asset else len(hits[:1])), (asset.id, hits)
        if hits:
            per_family[hits[0]].append(view)
    assert non_product >= 1
    for family in families:
        views = per_family[family.name]
        assert views, family.name
        for mapping in family.mapping:
            prop = mapping.source.property
            if prop is not None:
                assert any(get_path(v, prop) not in (None, "") for v in views), (
                    family.name, mapping.attribute, prop)
    return per_family


def test_bynder_example_streams_from_the_bynder_shape(bynder):
    sb, env = bynder
    config = load_config(EXAMPLES / "bynder.yaml", env=env)
    source_config = config.source("bynder")
    source = build_source(source_config)
    assert isinstance(source, RestSource)
    assets, bad = stream(source)
    assert len(assets) + len(bad) == 120 and {b.field for b in bad} == {"id", "dateModified"}
    assert sb.counters()["by_path"]["/api/v4/media/"] == 1      # page_size 250: one page
    per_family = check_families(config, source_config, assets)
    assert set(per_family) == {"packshots", "user_guides", "videos"}
    # the changed-since filter in the example's own date format
    watermark = datetime.now(UTC)
    target = per_family["packshots"][0]["id"]
    sb.edit(target, {"property_colors": "red,green"})
    changed = [a for page in source.changed_since(watermark) for a in page.assets]
    assert [a.id for a in changed] == [target]
    # binaries come from the portal's own host even though the allow-list names CDNs only
    with source.open_binary(changed[0]) as stream_:
        assert stream_.read(4) == b"\x89PNG"
    assert source.get(target).properties["property_colors"] == "red,green"


def test_cloudinary_example_streams_from_the_cloudinary_shape(cloudinary):
    sb, env = cloudinary
    config = load_config(EXAMPLES / "cloudinary.yaml", env=env)
    source_config = config.source("cloudinary")
    source = build_source(source_config)
    assets, bad = stream(source)
    # the search asks for resource_type:image: every asset but the videos (PDFs are images)
    images = [i for i in sb.ids() if (sb.record(i) or {}).get("type") != "video"]
    assert len(assets) + len(bad) == len(images)
    assert {b.field for b in bad} == {"asset_id", "last_updated.updated_at"}
    ids = [a.id for a in assets]
    assert len(set(ids)) == len(ids) and set(ids) <= set(images)
    # the example has no video family (Cloudinary lists videos under /resources/video)
    per_family = check_families(config, source_config, assets, every_product_asset=False)
    assert set(per_family) == {"packshots", "user_guides"}
    first = per_family["packshots"][0]
    asset = source.get(first["id"])
    assert asset is not None and asset.properties["context"]["custom"]["sku"]
    assert asset.properties["context"]["custom"]["colors"]  # "red|blue", the example's separator
    with source.open_binary(asset) as stream_:
        assert len(stream_.read()) == asset.properties["bytes"]


def test_cloudinary_example_polls_edits_through_the_search_api(cloudinary):
    """An edit of an existing asset bumps its last-update date, not created_at: the
    example's incremental listing (the Search API, `last_updated>=` the watermark) finds
    it, and only it; the Admin API listing by created_at would not."""
    sb, env = cloudinary
    config = load_config(EXAMPLES / "cloudinary.yaml", env=env)
    source = build_source(config.source("cloudinary"))
    assets, _bad = stream(source)
    target = next(a for a in assets if a.properties["format"] == "png")
    created = target.properties["created_at"]
    watermark = datetime.now(UTC)
    assert [a.id for page in source.changed_since(watermark) for a in page.assets] == []
    sb.edit(target.id, {"tags": ["product", "sale"], "property_sku": "new-sku"})
    changed = [a for page in source.changed_since(watermark) for a in page.assets]
    assert [a.id for a in changed] == [target.id]
    edited = changed[0].properties
    assert edited["created_at"] == created and edited["tags"] == ["product", "sale"]
    assert edited["context"]["custom"]["sku"] == "new-sku"
    assert edited["metadata"]["sku"] == "new-sku"
    assert changed[0].updated is not None and changed[0].updated >= watermark.replace(
        microsecond=0)
    query = sb.request_log()[-1]["query"]
    assert "resources" not in query and "last_updated%3E%3D" in query, query


def test_cloudinary_example_rides_out_a_420_rate_limit(cloudinary):
    """Cloudinary answers an exhausted Admin API budget with 420 (Enhance Your Calm) and
    X-FeatureRateLimit-* headers (https://cloudinary.com/documentation/admin_api#usage_limits):
    a transient answer, retried with backoff like a 429, not a failed sync."""
    sb, env = cloudinary
    config = load_config(EXAMPLES / "cloudinary.yaml", env=env)
    source = build_source(config.source("cloudinary"))
    sb.configure(inject_429=1, cld_rate_limit_status=420, retry_after=0.001)
    assets, bad = stream(source)
    images = [i for i in sb.ids() if (sb.record(i) or {}).get("type") != "video"]
    assert len(assets) + len(bad) == len(images)
    assert sb.counters()["by_status"]["420"] == 1


def test_bynder_example_over_https_with_the_sandbox_ca(monkeypatch):
    """The example as shipped (https, the default scheme) against the sandbox over TLS,
    trusted through REQUESTS_CA_BUNDLE, as its header tells."""
    sb = DamSandbox(assets=60, shape="bynder", seed=13)
    server = sb.serve(tls=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
    try:
        env = {"BYNDER_DOMAIN": f"127.0.0.1:{server.port}", "BYNDER_TOKEN": "sandbox-dam-token"}
        source = build_source(load_config(EXAMPLES / "bynder.yaml", env=env).source("bynder"))
        assets, bad = stream(source)
        assert len(assets) + len(bad) == 60 and sb.counters()["tls_handshakes"] >= 1
        with source.open_binary(assets[0]) as binary:
            assert len(binary.read()) == assets[0].properties["fileSize"]
    finally:
        server.stop()
