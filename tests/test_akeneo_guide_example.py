"""The worked example of Akeneo's DAM connection guide ("Dive into the DAM-PIM
synchronization"), end to end: the guide's DAM record → the guide's PIM asset.

Differences from the guide, on purpose: the asset code is the DAM uid made valid by
`asset_code` (dashes are not allowed in Akeneo codes), and `dam_url` is a media_link whose
prefix ``https://cdn.my-dam.com/l/`` is stripped (the PIM rebuilds the URL from it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

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
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.transform.result import TransformedAsset
from connector.transform.transformer import Transformer

GUIDE_RECORD: dict[str, Any] = {
    "uid": "0A3C2A6E-4C32-4492-BC0DA02",
    "filename": "allie-jean_1_model-picture.png",
    "title": "Allie jean model picture 1",
    "url": "https://cdn.my-dam.com/l/579a05bbece1a1d/allie-jean_1_model-picture.png",
    "colors": "blue,lightblue",
    "tags": "jean,blue,pants",
    "warning_mention": "Not retouched photo",
    "pim_asset_family": "model_pictures",
    "asset_type": "Product photo",
    "type": "image",
    "photographer": "Eric Stiva",
    "updated": "2019-09-04 00:13:57",
}

EXPECTED_CODE = "0A3C2A6E_4C32_4492_BC0DA02__cu"  # upper-case id: case marker
EXPECTED_VALUES = {
    "label": [{"locale": None, "channel": None, "data": "Allie jean model picture 1"}],
    "dam_url": [
        {"locale": None, "channel": None, "data": "579a05bbece1a1d/allie-jean_1_model-picture.png"}
    ],
    "main_colors": [{"locale": None, "channel": None, "data": ["blue", "lightblue"]}],
    "tags": [{"locale": None, "channel": None, "data": ["jean", "blue", "pants"]}],
    "disclaimer": [{"locale": "en_US", "channel": None, "data": "Not retouched photo"}],
    "product_ref": [{"locale": None, "channel": None, "data": "allie-jean"}],
}

# The guide's mapping file, plus the product_ref extraction of its "Example 4".
FAMILY = FamilyConfig(
    name="model_pictures",
    match=Selector(property="pim_asset_family", equals="model_pictures"),
    mapping=(
        AttributeMapping("label", ValueSource(property="title")),
        AttributeMapping("dam_url", ValueSource(property="url")),
        AttributeMapping("main_colors", ValueSource(property="colors")),
        AttributeMapping("tags", ValueSource(property="tags")),
        AttributeMapping("disclaimer", ValueSource(property="warning_mention")),
        AttributeMapping(
            "product_ref", ValueSource(property="filename", regex=r"^(?P<sku>[^_]+)_", group="sku")
        ),
    ),
    # "every text property within the DAM is enriched in English"
    locale=LocaleRule(default="en_US"),
    auto_create_options=True,
    product_link=ProductLinkConfig(mode="rules", identifier_regex=r"^(?P<identifier>[^_]+)_"),
)
SOURCE = SourceConfig(name="my-dam", type="rest")
CONFIG = Config(families=(FAMILY,), sources=(SOURCE,), pim=PimConfig(locales=("en_US", "fr_FR")))

ATTRIBUTES: list[dict[str, Any]] = [
    {"code": "label", "type": "text", "value_per_locale": False, "value_per_channel": False},
    {
        "code": "dam_url",
        "type": "media_link",
        "media_type": "image",
        "prefix": "https://cdn.my-dam.com/l/",
        "value_per_locale": False,
        "value_per_channel": False,
    },
    {
        "code": "main_colors",
        "type": "multiple_options",
        "value_per_locale": False,
        "value_per_channel": False,
    },
    {
        "code": "tags",
        "type": "multiple_options",
        "value_per_locale": False,
        "value_per_channel": False,
    },
    {"code": "disclaimer", "type": "text", "value_per_locale": True, "value_per_channel": False},
    {"code": "product_ref", "type": "text", "value_per_locale": False, "value_per_channel": False},
]
STRUCTURE = AssetFamilyStructure(
    "model_pictures",
    {
        a["code"]: Attribute.from_api(a, ["blue"] if a["code"] == "main_colors" else [])
        for a in ATTRIBUTES
    },
)


def dam_asset() -> DamAsset:
    return DamAsset(
        id=GUIDE_RECORD["uid"],
        source="my-dam",
        properties=dict(GUIDE_RECORD),
        filename=GUIDE_RECORD["filename"],
    )


def test_guide_example_transforms_into_the_guide_asset() -> None:
    created: list[tuple[str, str, str, str]] = []
    transformer = Transformer(
        CONFIG, SOURCE, lambda code: STRUCTURE, options=lambda *a: created.append(a)
    )
    result = transformer.transform(dam_asset())
    assert isinstance(result, TransformedAsset)
    assert result.payload() == {"code": EXPECTED_CODE, "values": EXPECTED_VALUES}
    assert result.family == "model_pictures"
    assert result.product_identifiers == ("allie-jean",)
    # "lightblue" and the three tags did not exist: created before the asset is written
    assert created == [
        ("model_pictures", "main_colors", "lightblue", "lightblue"),
        ("model_pictures", "tags", "jean", "jean"),
        ("model_pictures", "tags", "blue", "blue"),
        ("model_pictures", "tags", "pants", "pants"),
    ]
    # "updated", "photographer", "asset_type"... are not mapped: dropped
    assert set(result.values) == set(EXPECTED_VALUES)


@pytest.fixture
def sandbox_pim() -> Iterator[tuple[Any, str]]:
    sandbox_module = pytest.importorskip("sandbox.pim")
    sandbox = sandbox_module.PimSandbox(sandbox_module.PimSandboxSettings(default_attributes=False))
    sandbox.seed_family(
        "model_pictures",
        {"labels": {"en_US": "Model pictures"}},
        ATTRIBUTES,
        {"main_colors": ["blue"]},
    )
    server = sandbox.serve("127.0.0.1", 0)
    try:
        yield sandbox, server.url
    finally:
        server.stop()


def test_guide_example_is_accepted_by_the_sandbox_pim(
    namespace: str, redis_client: redis.Redis, sandbox_pim: tuple[Any, str]
) -> None:
    from connector.pim.cache import fetch_structure
    from connector.pim.client import AkeneoClient
    from connector.redis_conn import Keys
    from connector.settings import PimCredentials, Secret

    _sandbox, url = sandbox_pim
    client = AkeneoClient(
        PimCredentials(
            url, "sandbox-client", Secret("sandbox-secret"), "sandbox", Secret("sandbox-password")
        ),
        PimConfig(option_writes_per_second=1000.0),
        redis_client,
        Keys(),
    )
    try:

        def write_option(family: str, attribute: str, code: str, label: str) -> None:
            client.upsert_option(
                family, attribute, code, {"code": code, "labels": {"en_US": label}}
            )

        transformer = Transformer(
            CONFIG, SOURCE, lambda code: fetch_structure(client, code), options=write_option
        )
        result = transformer.transform(dam_asset())
        assert isinstance(result, TransformedAsset)
        [outcome] = client.upsert_assets("model_pictures", [result.payload()])
        assert (outcome.code, outcome.status_code) == (EXPECTED_CODE, 201), outcome.to_dict()
        stored = client.get_asset("model_pictures", EXPECTED_CODE)
        assert stored is not None
        # the PIM rebuilds the full URL from the prefix: the guide's URL, unchanged
        [dam_url] = stored["values"]["dam_url"]
        assert dam_url["linked_data"]["full_url"] == GUIDE_RECORD["url"]
        read_only = {"linked_data"}
        assert {
            attribute: [{k: v for k, v in item.items() if k not in read_only} for item in items]
            for attribute, items in stored["values"].items()
        } == EXPECTED_VALUES
        assert sorted(o["code"] for o in client.get_options("model_pictures", "tags")) == [
            "blue",
            "jean",
            "pants",
        ]
    finally:
        client.close()
