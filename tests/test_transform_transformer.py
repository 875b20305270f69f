"""Transformer: selection, family choice, locales, channels, options, quarantine, hashing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

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
from connector.dam.base import BadRecord, DamAsset, Page
from connector.pim.cache import UnknownFamilyError
from connector.pim.errors import PermanentPimError, TransientPimError
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.transform.plan import content_hash
from connector.transform.result import Quarantined, Skipped, TransformedAsset
from connector.transform.transformer import Transformer

SOURCE = SourceConfig(name="dam", type="rest")


def m(attribute: str, prop: str | None = None, **kw: Any) -> AttributeMapping:
    source_kw = {k: kw.pop(k) for k in ("regex", "group", "constant") if k in kw}
    return AttributeMapping(
        attribute=attribute, source=ValueSource(property=prop, **source_kw), **kw
    )


PACKSHOTS = FamilyConfig(
    name="packshots",
    match=Selector(folder="products/packshots"),
    mapping=(
        m("label", "description"),
        m("main_colors", "property_colors"),
        m("disclaimer", "property_disclaimer"),
        m("product_ref", "property_sku"),
        m("width", "width"),
        m("media", "original"),
        m("shop_title", "description"),
    ),
    locale=LocaleRule(default="en_US"),
    channel="ecommerce",
    product_link=ProductLinkConfig(mode="rules", identifier_property="property_sku"),
)
GUIDES = FamilyConfig(
    name="user_guides",
    match=Selector(filename_regex=r"_user_guide_"),
    mapping=(
        m("title", "description"),
        m("product_ref", regex=r"^(?P<sku>.+?)_user_guide", group="sku"),
    ),
    locale=LocaleRule(property="language"),
)
CATCH_ALL = FamilyConfig(
    name="videos", match=Selector(tag="product"), mapping=(m("title", "name"),)
)

STRUCTURES = {
    "packshots": AssetFamilyStructure(
        "packshots",
        {
            "label": Attribute("label", "text", value_per_locale=True),
            "main_colors": Attribute("main_colors", "multiple_options", options=("red", "blue")),
            "disclaimer": Attribute("disclaimer", "text", value_per_locale=True, max_characters=30),
            "product_ref": Attribute("product_ref", "text"),
            "width": Attribute("width", "number"),
            "media": Attribute("media", "media_link", prefix="http://dam/media/"),
            "shop_title": Attribute("shop_title", "text", value_per_channel=True),
        },
    ),
    "user_guides": AssetFamilyStructure(
        "user_guides",
        {
            "title": Attribute("title", "text", value_per_locale=True),
            "product_ref": Attribute("product_ref", "text"),
        },
    ),
    "videos": AssetFamilyStructure("videos", {"title": Attribute("title", "text")}),
}


def lookup(code: str) -> AssetFamilyStructure:
    if code not in STRUCTURES:
        raise UnknownFamilyError(code)
    return STRUCTURES[code]


def make_config(*families: FamilyConfig, **kw: Any) -> Config:
    kw.setdefault("pim", PimConfig(locales=("en_US", "fr_FR", "de_DE"), channels=("ecommerce",)))
    return Config(families=families or (PACKSHOTS, GUIDES, CATCH_ALL), sources=(SOURCE,), **kw)


def packshot(**props: Any) -> DamAsset:
    base: dict[str, Any] = {
        "description": "Allie jean, model picture",
        "property_colors": "red,blue",
        "property_disclaimer": "Photo non contractuelle",
        "property_sku": "allie-jean",
        "width": 1200,
        "original": "http://dam/media/0A3C/allie-jean_1_model-picture.png",
    }
    base.update(props)
    base = {k: v for k, v in base.items() if v is not None}
    return DamAsset(
        id="0A3C2A6E-4C32-4E1B-9F3E-5D2A1B3C4D5E",
        source="dam",
        properties=base,
        filename="allie-jean_1_model-picture.png",
        folder="products/packshots",
        tags=("product",),
    )


def transformer(config: Config | None = None, **kw: Any) -> Transformer:
    return Transformer(config or make_config(), SOURCE, lookup, **kw)


def test_packshot_becomes_a_full_asset() -> None:
    result = transformer().transform(packshot())
    assert isinstance(result, TransformedAsset)
    assert result.family == "packshots"
    assert result.code == "0A3C2A6E_4C32_4E1B_9F3E_5D2A1B3C4D5E__cu"
    assert result.values == {
        "label": [{"locale": "en_US", "channel": None, "data": "Allie jean, model picture"}],
        "main_colors": [{"locale": None, "channel": None, "data": ["red", "blue"]}],
        "disclaimer": [{"locale": "en_US", "channel": None, "data": "Photo non contractuelle"}],
        "product_ref": [{"locale": None, "channel": None, "data": "allie-jean"}],
        "width": [{"locale": None, "channel": None, "data": "1200"}],
        "media": [{"locale": None, "channel": None, "data": "0A3C/allie-jean_1_model-picture.png"}],
        "shop_title": [
            {"locale": None, "channel": "ecommerce", "data": "Allie jean, model picture"}
        ],
    }
    assert result.product_identifiers == ("allie-jean",)
    assert result.content_hash == content_hash(
        "packshots", result.code, result.values, result.product_identifiers
    )
    assert result.payload() == {"code": result.code, "values": result.values}


def test_absent_property_is_omitted_not_erased() -> None:
    result = transformer().transform(packshot(width=None, property_disclaimer=None))
    assert isinstance(result, TransformedAsset)
    assert "width" not in result.values and "disclaimer" not in result.values


def test_localized_asset_gets_its_own_locale() -> None:
    guide = DamAsset(
        id="G1",
        source="dam",
        filename="allie-jean_user_guide_fr_FR.pdf",
        properties={"description": "Guide", "language": "fr_FR"},
    )
    result = transformer().transform(guide)
    assert isinstance(result, TransformedAsset)
    assert result.family == "user_guides"
    assert result.values["title"] == [{"locale": "fr_FR", "channel": None, "data": "Guide"}]
    assert result.values["product_ref"] == [{"locale": None, "channel": None, "data": "allie-jean"}]


@pytest.mark.parametrize(
    ("asset", "reason", "field", "family"),
    [
        (
            DamAsset(
                id="G2",
                source="dam",
                filename="x_user_guide_.pdf",
                properties={"description": "Guide"},
            ),
            "attribute title is localizable but no locale found",
            "title",
            "user_guides",
        ),
        (
            DamAsset(
                id="G3",
                source="dam",
                filename="x_user_guide_xx.pdf",
                properties={"description": "Guide", "language": "xx_XX"},
            ),
            "unknown locale 'xx_XX' (activated: en_US, fr_FR, de_DE)",
            "locale",
            "user_guides",
        ),
        (
            DamAsset(
                id="G4",
                source="dam",
                filename="x_user_guide_xx.pdf",
                properties={"description": "Guide", "language": 12},
            ),
            "locale must be text, got int 12",
            "locale",
            "user_guides",
        ),
        (packshot(width="wide"), "'wide' is not a number", "width", "packshots"),
        (
            packshot(property_disclaimer="x" * 31),
            "text is too long (31 characters, at most 30 allowed)",
            "disclaimer",
            "packshots",
        ),
        (
            packshot(property_colors="red,purple"),
            "unknown option(s) purple (not in the PIM; enable auto_create_options for this family "
            "or map them with option_map)",
            "main_colors",
            "packshots",
        ),
        (
            packshot(original="http://elsewhere/x.png"),
            "'http://elsewhere/x.png' does not start with the prefix 'http://dam/media/'",
            "media",
            "packshots",
        ),
        (DamAsset(id="", source="dam", properties={}), "missing id", "id", None),
        (
            DamAsset(id="N1", source="dam", properties={}, folder="misc"),
            "no family matches",
            "family",
            None,
        ),
    ],
)
def test_bad_records_are_quarantined(
    asset: DamAsset, reason: str, field: str, family: str | None
) -> None:
    result = transformer().transform(asset)
    assert isinstance(result, Quarantined)
    assert (result.reason, result.field, result.family) == (reason, field, family)
    assert result.dam_id == (asset.id or None)


def test_not_product_assets_are_skipped() -> None:
    config = make_config(product_asset=Selector(tag="product"))
    marketing = DamAsset(id="M1", source="dam", properties={}, folder="marketing/x")
    assert transformer(config).transform(marketing) == Skipped("M1", "dam", "not a product asset")


def test_no_family_but_no_family_calls_it_a_product_asset_is_skipped() -> None:
    fam = FamilyConfig(
        name="videos",
        match=Selector(folder="products/videos"),
        mapping=(),
        product_asset=Selector(property="property_product_asset"),
    )
    config = make_config(fam)
    other = DamAsset(id="M2", source="dam", properties={"property_product_asset": False})
    assert isinstance(transformer(config).transform(other), Skipped)
    product = DamAsset(id="M3", source="dam", properties={"property_product_asset": True})
    assert transformer(config).transform(product) == Quarantined(
        "M3", "dam", "no family matches", "family"
    )


def test_family_rule_can_skip() -> None:
    fam = FamilyConfig(
        name="videos",
        match=Selector(always=True),
        mapping=(),
        product_asset=Selector(tag="product"),
    )
    result = transformer(make_config(fam)).transform(DamAsset(id="V", source="dam", properties={}))
    assert result == Skipped("V", "dam", "not a product asset for family videos")


def test_first_matching_family_wins() -> None:
    # packshot is in products/packshots and tagged "product": PACKSHOTS comes first
    assert transformer().transform(packshot()).family == "packshots"  # type: ignore[union-attr]
    reordered = make_config(CATCH_ALL, PACKSHOTS)
    assert transformer(reordered).transform(packshot()).family == "videos"  # type: ignore[union-attr]


def test_source_families_limit_the_candidates() -> None:
    source = SourceConfig(name="dam", type="rest", families=("user_guides",))
    config = Config(families=(PACKSHOTS, GUIDES), sources=(source,))
    result = Transformer(config, source, lookup).transform(packshot())
    assert isinstance(result, Quarantined) and result.reason == "no family matches"


def test_unknown_pim_family_and_attribute() -> None:
    fam = FamilyConfig(name="ghosts", match=Selector(always=True), mapping=())
    result = transformer(make_config(fam)).transform(packshot())
    assert isinstance(result, Quarantined)
    assert result.reason == "asset family ghosts does not exist in the PIM"
    fam2 = FamilyConfig(name="videos", match=Selector(always=True), mapping=(m("nope", "name"),))
    result2 = transformer(make_config(fam2)).transform(packshot())
    assert isinstance(result2, Quarantined)
    assert (result2.reason, result2.field) == (
        "attribute nope does not exist in PIM family videos",
        "nope",
    )


def test_scopable_attribute_needs_a_channel() -> None:
    fam = FamilyConfig(
        name="packshots", match=Selector(always=True), mapping=(m("shop_title", "description"),)
    )
    result = transformer(make_config(fam)).transform(packshot())
    assert isinstance(result, Quarantined)
    assert result.field == "shop_title" and "scopable but no channel" in result.reason
    fam_forced = FamilyConfig(
        name="packshots",
        match=Selector(always=True),
        mapping=(m("shop_title", "description", channel="print"),),
    )
    result2 = transformer(make_config(fam_forced)).transform(packshot())
    assert isinstance(result2, Quarantined)
    assert result2.reason == "unknown channel 'print' (known: ecommerce)"


def test_forced_locales_give_one_value_per_locale() -> None:
    fam = FamilyConfig(
        name="packshots",
        match=Selector(always=True),
        mapping=(m("label", "title_en", locale="en_US"), m("label", "title_fr", locale="fr_FR")),
    )
    asset = DamAsset(id="L", source="dam", properties={"title_en": "Jean", "title_fr": "Jean FR"})
    result = transformer(make_config(fam)).transform(asset)
    assert isinstance(result, TransformedAsset)
    assert result.values["label"] == [
        {"locale": "en_US", "channel": None, "data": "Jean"},
        {"locale": "fr_FR", "channel": None, "data": "Jean FR"},
    ]


class Writer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str, str]] = []
        self.fail = fail

    def __call__(self, family: str, attribute: str, code: str, label: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((family, attribute, code, label))


def auto_config() -> Config:
    fam = FamilyConfig(
        name="packshots",
        match=Selector(always=True),
        auto_create_options=True,
        mapping=(m("main_colors", "property_colors"), m("width", "width")),
    )
    return make_config(fam)


def test_missing_options_are_created_once_then_used() -> None:
    writer = Writer()
    t = transformer(auto_config(), options=writer)
    first = t.transform(packshot(property_colors="red,Light Blue"))
    second = t.transform(packshot(property_colors="light blue"))
    assert isinstance(first, TransformedAsset) and isinstance(second, TransformedAsset)
    assert first.values["main_colors"][0]["data"] == ["red", "light_blue"]
    assert second.values["main_colors"][0]["data"] == ["light_blue"]
    assert writer.calls == [("packshots", "main_colors", "light_blue", "Light Blue")]


def test_a_mapping_can_override_the_family_auto_create_setting() -> None:
    fam = FamilyConfig(
        name="packshots",
        match=Selector(always=True),
        auto_create_options=True,
        mapping=(m("main_colors", "property_colors", auto_create_options=False),),
    )
    writer = Writer()
    result = transformer(make_config(fam), options=writer).transform(
        packshot(property_colors="red,Light Blue")
    )
    assert isinstance(result, Quarantined) and result.field == "main_colors"
    assert "unknown option(s) light_blue" in result.reason
    assert writer.calls == []


def test_options_are_not_created_for_a_record_that_fails_anyway() -> None:
    writer = Writer()
    result = transformer(auto_config(), options=writer).transform(
        packshot(property_colors="Light Blue", width="wide")
    )
    assert isinstance(result, Quarantined) and result.field == "width"
    assert writer.calls == []


def test_option_writer_errors() -> None:
    refused = transformer(auto_config(), options=Writer(PermanentPimError("bad code", status=422)))
    result = refused.transform(packshot(property_colors="Light Blue"))
    assert isinstance(result, Quarantined)
    assert result.reason == "the PIM refused to create option light_blue: 422 bad code"
    down = transformer(auto_config(), options=Writer(TransientPimError("busy", status=429)))
    with pytest.raises(TransientPimError):
        down.transform(packshot(property_colors="Light Blue"))
    nowriter = transformer(auto_config()).transform(packshot(property_colors="Light Blue"))
    assert isinstance(nowriter, Quarantined) and "no option writer" in nowriter.reason


def test_infrastructure_failures_propagate() -> None:
    def broken(code: str) -> AssetFamilyStructure:
        raise RuntimeError("structure cache unavailable")

    with pytest.raises(RuntimeError, match="structure cache unavailable"):
        Transformer(make_config(), SOURCE, broken).transform(packshot())


def test_a_bug_in_a_record_is_quarantined_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import connector.transform.transformer as module

    def boom(*args: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(module, "product_identifiers", boom)
    result = transformer().transform(packshot())
    assert isinstance(result, Quarantined)
    assert result.reason == "internal error: ZeroDivisionError: bug"


def test_transform_page_keeps_good_and_bad_apart() -> None:
    page = Page(
        assets=[
            packshot(),
            packshot(width="wide"),
            DamAsset(id="M", source="dam", properties={}, folder="misc"),
        ],
        bad=[BadRecord(source="dam", raw={"name": "no id here"}, reason="missing id", field="id")],
    )
    outcome = transformer(make_config(product_asset=Selector(tag="product"))).transform_page(page)
    assert [a.code for a in outcome.assets] == ["0A3C2A6E_4C32_4E1B_9F3E_5D2A1B3C4D5E__cu"]
    assert [q.reason for q in outcome.quarantined] == ["missing id", "'wide' is not a number"]
    assert outcome.quarantined[0].details == {"raw": '{"name": "no id here"}'}
    assert [s.dam_id for s in outcome.skipped] == ["M"]
    assert list(outcome.by_family()) == ["packshots"]


def test_content_hash_is_stable_across_processes() -> None:
    result = transformer().transform(packshot())
    assert isinstance(result, TransformedAsset)
    script = (
        "from connector.transform.plan import content_hash;"
        f"print(content_hash('packshots', {result.code!r}, {result.values!r}, "
        f"{result.product_identifiers!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.strip()
    assert out == result.content_hash
    changed = transformer().transform(packshot(width=1300))
    assert isinstance(changed, TransformedAsset) and changed.content_hash != result.content_hash


def test_outcome_round_trips_through_json() -> None:
    import json

    from connector.transform.result import TransformOutcome

    page = Page(
        assets=[
            packshot(),
            packshot(width="wide"),
            DamAsset(id="M", source="dam", properties={}, folder="misc"),
        ]
    )
    outcome = transformer(make_config(product_asset=Selector(tag="product"))).transform_page(page)
    again = TransformOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))
    assert again == outcome


def test_make_option_writer_patches_then_notes_the_cache() -> None:
    from connector.transform.options import make_option_writer

    calls: list[tuple[Any, ...]] = []

    class Client:
        def upsert_option(
            self, family: str, attribute: str, code: str, body: dict[str, Any]
        ) -> int:
            calls.append(("patch", family, attribute, code, body))
            return 201

    class Cache:
        def note_option(self, family: str, attribute: str, option_code: str) -> None:
            calls.append(("note", family, attribute, option_code))

    t = transformer(auto_config(), options=make_option_writer(Client(), Cache(), "fr_FR"))
    result = t.transform(packshot(property_colors="Light Blue,red"))
    assert isinstance(result, TransformedAsset)
    assert calls == [
        (
            "patch",
            "packshots",
            "main_colors",
            "light_blue",
            {"code": "light_blue", "labels": {"fr_FR": "Light Blue"}},
        ),
        ("note", "packshots", "main_colors", "light_blue"),
    ]


def test_content_hash_covers_product_links_but_keeps_unlinked_hashes() -> None:
    """A changed product reference alone must make the asset 'changed' (or it would never
    be moved to its new product); assets without links keep the hash they always had."""
    values: dict[str, Any] = {"label": [{"locale": None, "channel": None, "data": "x"}]}
    plain = content_hash("packshots", "a1", values)
    assert content_hash("packshots", "a1", values, ()) == plain
    linked_a = content_hash("packshots", "a1", values, ("SKU-A",))
    linked_b = content_hash("packshots", "a1", values, ("SKU-B",))
    assert len({plain, linked_a, linked_b}) == 3
    assert content_hash("packshots", "a1", values, ("SKU-B", "SKU-A")) == content_hash(
        "packshots", "a1", values, ("SKU-A", "SKU-B")
    )
