"""Selector evaluation, locale detection, value resolution and identifier extraction."""

from __future__ import annotations

from typing import Any

import pytest

from connector.config.model import LocaleRule, ProductLinkConfig, Selector, ValueSource
from connector.dam.base import DamAsset
from connector.transform import selectors
from connector.transform.mapping import detect_locale, product_identifiers, resolve_value
from connector.transform.selectors import SelectorError, asset_view, matches

ASSET = DamAsset(
    id="ID-1",
    source="dam",
    properties={
        "filename": "ignored-by-lifted.png",
        "property_product_asset": True,
        "flag_text": "false",
        "type": "image",
        "meta": {"sku": "allie-jean", "skus": ["a1", "b2", "a1"]},
        "language": "fr",
        "colors": ["red", "blue"],
    },
    filename="allie-jean_1_model-picture.png",
    folder="products/packshots",
    tags=("Product", "summer"),
)
VIEW = asset_view(ASSET)


def test_view_lays_lifted_fields_over_properties() -> None:
    assert VIEW["id"] == "ID-1"
    assert VIEW["filename"] == "allie-jean_1_model-picture.png"
    assert VIEW["tags"] == ["Product", "summer"]
    assert VIEW["meta"]["sku"] == "allie-jean"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (Selector(always=True), True),
        (Selector(), False),
        (Selector(property="property_product_asset"), True),
        (Selector(property="flag_text"), False),
        (Selector(property="missing"), False),
        (Selector(property="type", equals="IMAGE"), True),
        (Selector(property="type", equals="video"), False),
        (Selector(property="type", in_=("video", "image")), True),
        (Selector(property="colors", equals="blue"), True),
        (Selector(property="meta.sku", equals="allie-jean"), True),
        (Selector(property="property_product_asset", equals=1), False),
        (Selector(folder="products"), True),
        (Selector(folder="/products/packshots/"), True),
        (Selector(folder="products/pack"), False),
        (Selector(folder="marketing"), False),
        (Selector(tag="product"), True),
        (Selector(tag="winter"), False),
        (Selector(filename_regex=r"_model-picture\.png$"), True),
        (Selector(filename_regex=r"^user_guide"), False),
        (Selector(expression='tags contains "Product" and type == "image"'), True),
        (Selector(expression='folder startswith "marketing/"'), False),
    ],
)
def test_selectors(selector: Selector, expected: bool) -> None:
    assert matches(selector, VIEW) is expected


def test_invalid_regex_is_a_selector_error() -> None:
    with pytest.raises(SelectorError, match="invalid regular expression"):
        matches(Selector(filename_regex="("), VIEW)


def test_failing_expression_is_a_selector_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> Any:
        def predicate(view: Any) -> bool:
            raise RuntimeError("boom")

        return predicate

    monkeypatch.setattr(selectors, "compile_expression", broken)
    selectors.clear_expression_cache()
    try:
        with pytest.raises(SelectorError, match="failed on this record: boom"):
            matches(Selector(expression="anything"), VIEW)
    finally:
        selectors.clear_expression_cache()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (ValueSource(property="meta.sku"), "allie-jean"),
        (ValueSource(property="missing"), None),
        (ValueSource(property="missing", constant="fallback"), "fallback"),
        (ValueSource(constant=42), 42),
        (ValueSource(regex=r"^(?P<sku>[^_]+)_", group="sku"), "allie-jean"),
        (ValueSource(regex=r"_(\d+)_"), "1"),
        (ValueSource(regex=r"_(\d+)_", group="1"), "1"),
        (ValueSource(regex=r"model"), "model"),
        (ValueSource(regex=r"^nomatch"), None),
        (ValueSource(property="type", regex=r"^im(.*)$"), "age"),
    ],
)
def test_resolve_value(source: ValueSource, expected: Any) -> None:
    assert resolve_value(source, VIEW) == expected


def test_regex_group_that_does_not_exist() -> None:
    with pytest.raises(SelectorError, match="has no group"):
        resolve_value(ValueSource(regex=r"(a)", group="nope"), {"filename": "a"})


@pytest.mark.parametrize(
    ("rule", "view", "expected"),
    [
        (LocaleRule(property="language", map={"fr": "fr_FR"}), VIEW, "fr_FR"),
        (LocaleRule(property="language"), VIEW, "fr"),
        (LocaleRule(property="missing"), VIEW, None),
        (LocaleRule(property="missing", default="en_US"), VIEW, None),
        (
            LocaleRule(filename_regex=r"_(?P<locale>[a-z]{2}_[A-Z]{2})\.pdf$"),
            {"filename": "allie-jean_user_guide_de_DE.pdf"},
            "de_DE",
        ),
        (
            LocaleRule(filename_regex=r"_([a-z]{2})\.png$", map={"fr": "fr_FR"}),
            {"filename": "allie-jean_care-instructions_fr.png"},
            "fr_FR",
        ),
        (LocaleRule(property="language", filename_regex=r"_(\w\w)$"), {"language": ""}, None),
    ],
)
def test_detect_locale(rule: LocaleRule, view: dict[str, Any], expected: str | None) -> None:
    assert detect_locale(rule, view) == expected


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (ProductLinkConfig(identifier_property="meta.sku"), ("allie-jean",)),
        (ProductLinkConfig(identifier_property="meta.skus"), ("a1", "b2")),
        (ProductLinkConfig(identifier_regex=r"^(?P<identifier>[^_]+)_"), ("allie-jean",)),
        (ProductLinkConfig(identifier_regex=r"^([^_]+)_"), ("allie-jean",)),
        (
            ProductLinkConfig(identifier_property="meta.sku", identifier_regex=r"^(\w+)-"),
            ("allie",),
        ),
        (ProductLinkConfig(identifier_regex=r"^nomatch(.*)"), ()),
        (ProductLinkConfig(), ()),
    ],
)
def test_product_identifiers(link: ProductLinkConfig, expected: tuple[str, ...]) -> None:
    assert product_identifiers(link, VIEW) == expected
