"""Property-based: random DAM records either become assets the sandbox PIM accepts (bulk
PATCH over real HTTP, 201/204 per line) or are quarantined with a reason — never an
exception, never an "internal error"."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector.config.model import (
    AttributeMapping,
    Config,
    FamilyConfig,
    LocaleRule,
    PimConfig,
    ProductLinkConfig,
    Selector,
    SourceConfig,
    ValueSource,
)
from connector.dam.base import DamAsset
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.transform.result import Quarantined, Skipped, TransformedAsset
from connector.transform.transformer import Transformer

sandbox_pim = pytest.importorskip("sandbox.pim")
from connector.pim.cache import fetch_structure  # noqa: E402
from connector.pim.client import AkeneoClient  # noqa: E402


def attr(code: str, type_: str, **kw: Any) -> dict[str, Any]:
    return {
        "code": code,
        "type": type_,
        "value_per_locale": kw.pop("value_per_locale", False),
        "value_per_channel": kw.pop("value_per_channel", False),
        **kw,
    }


PACKSHOT_ATTRIBUTES = [
    attr("label", "text", value_per_locale=True, max_characters=30),
    attr("contact", "text", validation_rule="email"),
    attr("site", "text", validation_rule="url"),
    attr("ref", "text", validation_rule="regular_expression", validation_regexp="/^[A-Z]{3}\\d+$/"),
    attr("width", "number", decimals_allowed=False, min_value="0", max_value="100000"),
    attr("ratio", "number", decimals_allowed=True),
    attr("published", "boolean"),
    attr("shot_on", "date"),
    attr("kind", "single_option"),
    attr("main_colors", "multiple_options"),
    attr("media", "media_link", media_type="image", prefix="http://cdn/"),
    attr("brand", "record", reference_entity="brand"),
    attr("shop_title", "text", value_per_channel=True),
]
GUIDE_ATTRIBUTES = [
    attr("title", "text", value_per_locale=True),
    attr("product_ref", "text"),
]
OPTIONS = {"kind": ["photo", "drawing"], "main_colors": ["red", "blue"]}

PACKSHOTS = FamilyConfig(
    name="packshots",
    match=Selector(folder="products/packshots"),
    mapping=tuple(
        AttributeMapping(a["code"], ValueSource(property=f"p_{a['code']}"))
        for a in PACKSHOT_ATTRIBUTES
    ),
    locale=LocaleRule(property="language", default="en_US"),
    channel="ecommerce",
    auto_create_options=True,
)
GUIDES = FamilyConfig(
    name="guides",
    match=Selector(folder="products/guides"),
    mapping=(
        AttributeMapping("title", ValueSource(property="p_label")),
        AttributeMapping("product_ref", ValueSource(regex=r"^(?P<sku>[^_]+)_", group="sku")),
    ),
    locale=LocaleRule(property="language", map={"fr": "fr_FR"}),
    product_link=ProductLinkConfig(mode="rules", identifier_regex=r"^(?P<identifier>[^_]+)_"),
)
SOURCE = SourceConfig(name="dam", type="rest")
CONFIG = Config(
    families=(PACKSHOTS, GUIDES),
    sources=(SOURCE,),
    product_asset=Selector(tag="product"),
    pim=PimConfig(
        locales=("en_US", "fr_FR", "de_DE"),
        channels=("ecommerce",),
        option_writes_per_second=10_000.0,
        requests_per_second=10_000.0,
    ),
)

INTERESTING = [
    "red",
    "Light Blue",
    "photo",
    "DRAWING",
    "true",
    "no",
    "12",
    "12.5",
    "-3",
    "1e3",
    "2024-01-02",
    "2024-01-02T10:00:00Z",
    "02/01/2024",
    "http://cdn/a/b.png",
    "https://x/y",
    "a@b.co",
    "not mail",
    "ABC123",
    "abc",
    "nike",
    "bad code",
    "",
    " ",
    "x" * 31,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**13),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(INTERESTING),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=4), scalars, max_size=2),
)
text_values = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=35)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "label": text_values,
    "contact": st.one_of(st.emails(), st.sampled_from(["a@b.co", "x.y@example.com"])),
    "site": st.sampled_from(["https://example.com", "http://x.org/a?b=1", "https://x/y"]),
    "ref": st.from_regex(r"^[A-Z]{3}[0-9]{1,5}$", fullmatch=True),
    "width": st.one_of(st.integers(0, 100_000), st.integers(0, 100_000).map(str)),
    "ratio": st.one_of(
        st.floats(-1e9, 1e9, allow_nan=False), st.decimals(-1000, 1000, places=3).map(str)
    ),
    "published": st.one_of(st.booleans(), st.sampled_from(["yes", "No", "1", "false"])),
    "shot_on": st.one_of(
        st.dates().map(str),
        st.datetimes().map(lambda d: d.isoformat(sep=" ")),
        st.integers(0, 4_000_000_000),
    ),
    "kind": st.sampled_from(["photo", "Drawing", "new kind", "Crème"]),
    "main_colors": st.one_of(
        st.lists(st.sampled_from(["red", "Blue", "Light Blue", "vert foncé"]), max_size=3),
        st.sampled_from(["red,blue", "red, Light Blue", ""]),
    ),
    "media": st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20).map(
        lambda t: "http://cdn/" + t
    ),
    "brand": st.from_regex(r"^[a-z0-9_]{1,20}$", fullmatch=True),
    "shop_title": text_values,
}


@st.composite
def dam_records(draw: st.DrawFn) -> list[DamAsset]:
    ids = draw(
        st.lists(
            st.one_of(st.text(max_size=30), st.uuids().map(str)),
            min_size=1,
            max_size=12,
            unique=True,
        )
    )
    records = []
    for dam_id in ids:
        props: dict[str, Any] = {}
        for code, valid in VALID.items():
            presence = draw(st.integers(0, 39))
            if presence < 30:
                props[f"p_{code}"] = draw(valid)
            elif presence == 30:
                props[f"p_{code}"] = draw(values)
        props["language"] = draw(
            st.sampled_from(["en_US"] * 4 + ["fr_FR", "fr", None, None, "xx_XX", "", 3])
        )
        records.append(
            DamAsset(
                id=dam_id,
                source="dam",
                properties=props,
                filename=draw(
                    st.one_of(
                        st.none(),
                        st.sampled_from(["allie-jean_user_guide_fr.pdf", "nosku.pdf", "a_b.png"]),
                        st.text(max_size=20),
                    )
                ),
                folder=draw(
                    st.sampled_from(
                        ["products/packshots"] * 4
                        + ["products/guides"] * 2
                        + ["marketing/x", "products", None]
                    )
                ),
                tags=tuple(draw(st.sampled_from([["product"]] * 5 + [["summer"], []]))),
            )
        )
    return records


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[Any, str]]:
    pim = sandbox_pim.PimSandbox(sandbox_pim.PimSandboxSettings(default_attributes=False))
    server = pim.serve("127.0.0.1", 0)
    try:
        yield pim, server.url
    finally:
        server.stop()


def seed(pim: Any) -> None:
    pim.reset()
    pim.seed_family("packshots", {}, PACKSHOT_ATTRIBUTES, OPTIONS)
    pim.seed_family("guides", {}, GUIDE_ATTRIBUTES)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=dam_records())
def test_random_records_are_accepted_or_quarantined(
    namespace: str, redis_client: redis.Redis, sandbox: tuple[Any, str], records: list[DamAsset]
) -> None:
    pim, url = sandbox
    seed(pim)
    client = AkeneoClient(
        PimCredentials(
            url, "sandbox-client", Secret("sandbox-secret"), "sandbox", Secret("sandbox-password")
        ),
        CONFIG.pim,
        redis_client,
        Keys(),
    )
    try:

        def write_option(family: str, attribute: str, code: str, label: str) -> None:
            client.upsert_option(family, attribute, code, {"code": code})

        structures = {code: fetch_structure(client, code) for code in ("packshots", "guides")}
        transformer = Transformer(CONFIG, SOURCE, structures.__getitem__, options=write_option)
        outcome = transformer.transform_many(records)

        assert len(outcome.assets) + len(outcome.quarantined) + len(outcome.skipped) == len(records)
        event(f"accepted assets: {min(len(outcome.assets), 3)}+")
        for q in outcome.quarantined:
            event(f"quarantined: {q.reason[:25]}")
            assert isinstance(q, Quarantined) and q.reason
            assert not q.reason.startswith("internal error"), q
        for s in outcome.skipped:
            assert isinstance(s, Skipped)
        for family, assets in outcome.by_family().items():
            results = client.upsert_assets(family, [a.payload() for a in assets])
            assert len(results) == len(assets)
            for asset, result in zip(assets, results, strict=True):
                assert isinstance(asset, TransformedAsset)
                assert result.status_code in (201, 204), (asset.payload(), result.to_dict())
    finally:
        client.close()
