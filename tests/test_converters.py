"""Every converter, table-driven: good values give Akeneo `data`, bad ones a ConversionError."""

from __future__ import annotations

from typing import Any

import pytest

from connector.config.model import AttributeMapping, ValueSource
from connector.pim.structure import Attribute
from connector.transform.converters import (
    CONVERTERS,
    ConversionContext,
    ConversionError,
    PendingOption,
    convert,
    normalise_option_code,
    php_regex,
)


def ctx(
    attribute: Attribute,
    *,
    option_map: dict[str, str] | None = None,
    separator: str = ",",
    auto_create: bool = False,
) -> ConversionContext:
    mapping = AttributeMapping(
        attribute=attribute.code,
        source=ValueSource(property="x"),
        separator=separator,
        option_map=option_map or {},
    )
    return ConversionContext(
        family="fam", attribute=attribute, mapping=mapping, auto_create_options=auto_create
    )


TEXT = Attribute("t", "text")
TEXT_10 = Attribute("t", "text", max_characters=10)
EMAIL = Attribute("t", "text", validation_rule="email")
URL = Attribute("t", "text", validation_rule="url")
REGEXP = Attribute(
    "t", "text", validation_rule="regular_expression", validation_regexp="/^[A-Z]{3}\\d+$/"
)
REGEXP_I = Attribute(
    "t", "text", validation_rule="regular_expression", validation_regexp="/^abc$/i"
)
NUMBER = Attribute("n", "number", decimals_allowed=True)
INTEGER = Attribute("n", "number", decimals_allowed=False, min_value="0", max_value="100")
BOOL = Attribute("b", "boolean")
DATE = Attribute("d", "date")
SINGLE = Attribute("s", "single_option", options=("red", "light_blue"))
MULTI = Attribute("m", "multiple_options", options=("red", "blue", "Green"))
LINK = Attribute("l", "media_link", prefix="https://cdn.example.com/", suffix=".png")
LINK_PLAIN = Attribute("l", "media_link")
RECORD = Attribute("r", "record", reference_entity_code="brand")

GOOD: list[tuple[Attribute, Any, Any]] = [
    (TEXT, "hello", "hello"),
    (TEXT, "", ""),
    (TEXT, 12, "12"),
    (TEXT, 1.5, "1.5"),
    (TEXT_10, "0123456789", "0123456789"),
    (EMAIL, "a.b@example.com", "a.b@example.com"),
    (URL, "https://example.com/x?y=1", "https://example.com/x?y=1"),
    (REGEXP, "ABC123", "ABC123"),
    (REGEXP_I, "ABC", "ABC"),
    (NUMBER, 12, "12"),
    (NUMBER, 12.5, "12.5"),
    (NUMBER, "12.50", "12.5"),
    (NUMBER, " -3 ", "-3"),
    (NUMBER, 0.1, "0.1"),
    (NUMBER, 1e20, "100000000000000000000"),
    (INTEGER, "42", "42"),
    (INTEGER, 42.0, "42"),
    (INTEGER, "0", "0"),
    (INTEGER, 100, "100"),
    (BOOL, True, True),
    (BOOL, False, False),
    (BOOL, "true", True),
    (BOOL, "FALSE", False),
    (BOOL, "yes", True),
    (BOOL, "No", False),
    (BOOL, 1, True),
    (BOOL, 0, False),
    (BOOL, "1", True),
    (BOOL, "0", False),
    (DATE, "2019-09-04", "2019-09-04T00:00:00+00:00"),
    (DATE, "2019-09-04 00:13:57", "2019-09-04T00:13:57+00:00"),
    (DATE, "2026-11-01T10:00:00Z", "2026-11-01T10:00:00+00:00"),
    (DATE, "2026-11-01T10:00:00.123+02:00", "2026-11-01T10:00:00+02:00"),
    (DATE, 0, "1970-01-01T00:00:00+00:00"),
    (DATE, 1567556037, "2019-09-04T00:13:57+00:00"),
    (DATE, 1567556037000, "2019-09-04T00:13:57+00:00"),
    (SINGLE, "red", "red"),
    (SINGLE, "Red", "red"),
    (SINGLE, "Light Blue", "light_blue"),
    (SINGLE, ["red"], "red"),
    (MULTI, "red,blue", ["red", "blue"]),
    (MULTI, "red, blue ,, red", ["red", "blue"]),
    (MULTI, ["Blue", "green"], ["blue", "Green"]),
    (MULTI, [], []),
    (MULTI, "", []),
    (LINK, "https://cdn.example.com/a/b.png", "a/b"),
    (LINK_PLAIN, "https://cdn.example.com/a/b.png", "https://cdn.example.com/a/b.png"),
    (RECORD, "nike", "nike"),
    (RECORD, 42, "42"),
]


@pytest.mark.parametrize(("attribute", "value", "expected"), GOOD)
def test_good_values(attribute: Attribute, value: Any, expected: Any) -> None:
    assert convert(value, ctx(attribute)) == expected


BAD: list[tuple[Attribute, Any, str]] = [
    (TEXT, ["a"], "expected text"),
    (TEXT, {"a": 1}, "expected text"),
    (TEXT, True, "expected text"),
    (TEXT, "a\x00b", "NUL"),
    (TEXT_10, "01234567890", "too long (11 characters, at most 10"),
    (EMAIL, "not-an-email", "not an e-mail"),
    (URL, "ftp://example.com", "not an http(s) URL"),
    (URL, "example.com", "not an http(s) URL"),
    (REGEXP, "abc123", "does not match"),
    (NUMBER, "12,5", "is not a number"),
    (NUMBER, "1e5", "is not a number"),
    (NUMBER, "abc", "is not a number"),
    (NUMBER, True, "boolean"),
    (NUMBER, float("nan"), "finite"),
    (NUMBER, [1], "expected a number"),
    (INTEGER, "1.5", "has decimals"),
    (INTEGER, -1, "below the minimum 0"),
    (INTEGER, 101, "above the maximum 100"),
    (BOOL, "maybe", "not a boolean"),
    (BOOL, 2, "not a boolean"),
    (BOOL, None, "not a boolean"),
    (DATE, "04/09/2019", "not an ISO date"),
    (DATE, "2019-13-01", "not an ISO date"),
    (DATE, True, "boolean"),
    (DATE, [2019], "expected a date"),
    (DATE, 10**20, "not a valid epoch"),
    (SINGLE, "purple", "unknown option(s) purple"),
    (SINGLE, ["red", "light_blue"], "expected one option"),
    (SINGLE, "!!!", "cannot be turned into an option code"),
    (SINGLE, 1.5, "expected an option label"),
    (MULTI, "red,purple,pink", "unknown option(s) purple, pink"),
    (MULTI, 12, "expected a list of options"),
    (MULTI, [{"x": 1}], "expected an option label"),
    (LINK, "https://other.example.com/a/b.png", "does not start with the prefix"),
    (LINK, "https://cdn.example.com/a/b.jpg", "does not end with the suffix"),
    (LINK, "https://cdn.example.com/.png", "empty once prefix and suffix"),
    (LINK, 12, "expected a URL"),
    (RECORD, "not a code", "not a valid record code"),
    (RECORD, None, "expected a record code"),
    (Attribute("m", "media_file"), "x", "need a media handler"),
    (Attribute("a", "asset_collection"), ["x"], "not supported"),
]


@pytest.mark.parametrize(("attribute", "value", "reason"), BAD)
def test_bad_values(attribute: Attribute, value: Any, reason: str) -> None:
    with pytest.raises(ConversionError) as info:
        convert(value, ctx(attribute))
    assert info.value.field == attribute.code
    assert reason in info.value.reason


def test_every_pim_type_but_asset_collection_has_a_converter() -> None:
    from connector.pim.structure import ATTRIBUTE_TYPES

    assert ATTRIBUTE_TYPES - set(CONVERTERS) == {"asset_collection"}


def test_option_map_wins_over_normalisation() -> None:
    context = ctx(MULTI, option_map={"Bleu ciel": "blue", "ROUGE": "red"})
    assert convert(
        "Bleu ciel;rouge",
        ctx(MULTI, option_map={"Bleu ciel": "blue", "ROUGE": "red"}, separator=";"),
    ) == ["blue", "red"]
    assert convert(["Bleu ciel"], context) == ["blue"]


def test_missing_options_are_collected_when_auto_create_is_on() -> None:
    context = ctx(MULTI, auto_create=True)
    assert convert("red,Light Blue,Écru", context) == ["red", "light_blue", "ecru"]
    assert context.pending_options == [
        PendingOption("fam", "m", "light_blue", "Light Blue"),
        PendingOption("fam", "m", "ecru", "Écru"),
    ]


def test_known_options_count_as_existing() -> None:
    context = ctx(SINGLE)
    context.known_options = frozenset({"purple"})
    assert convert("Purple", context) == "purple"
    assert context.pending_options == []


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Light Blue", "light_blue"),
        ("  red ", "red"),
        ("Crème brûlée", "creme_brulee"),
        ("a--b__c", "a_b_c"),
        ("日本", ""),
    ],
)
def test_normalise_option_code(label: str, code: str) -> None:
    assert normalise_option_code(label) == code


def test_php_regex_delimiters() -> None:
    assert php_regex("/^a$/i").match("A")
    assert php_regex("#^a/b$#").match("a/b")
    assert php_regex("^plain$").match("plain")


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        (LINK_PLAIN, "/files/a.png", "https://dam.example.com/files/a.png"),
        (LINK_PLAIN, "files/a.png", "https://dam.example.com/api/files/a.png"),
        (LINK_PLAIN, "https://cdn.example.com/a.png", "https://cdn.example.com/a.png"),
        (LINK_PLAIN, "://broken-url/a.png", "://broken-url/a.png"),  # not a relative URL
        # the prefix's own host: joined first, then the prefix is stripped
        (Attribute("l", "media_link", prefix="https://dam.example.com/files/"),
         "/files/a.png", "a.png"),
        # already relative to the prefix: left as it is
        (Attribute("l", "media_link", prefix="files/"), "files/a.png", "a.png"),
        (Attribute("l", "media_link", media_type="youtube"), "dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ],
)
def test_relative_media_links_are_joined_with_the_base_url(
    attribute: Attribute, value: str, expected: str
) -> None:
    context = ctx(attribute)
    context.base_url = "https://dam.example.com/api"
    assert convert(value, context) == expected


def test_without_a_base_url_a_relative_link_is_kept() -> None:
    assert convert("/files/a.png", ctx(LINK_PLAIN)) == "/files/a.png"


class _CountingCode(str):
    """An option code that counts how often it is folded."""

    folds = 0

    def casefold(self) -> str:
        _CountingCode.folds += 1
        return str.casefold(self)


def test_the_pims_options_are_folded_once_per_structure_not_per_value() -> None:
    # a real family's attribute can have thousands of options: scanning them for every
    # DAM label made the transform O(labels x options)
    options = (*(_CountingCode(f"opt_{i}") for i in range(5000)), "Light_Blue")
    attribute = Attribute("m", "multiple_options", options=options)
    context = ctx(attribute, auto_create=True)
    assert convert(["opt_7", "light blue", "new one"], context) == ["opt_7", "Light_Blue",
                                                                    "new_one"]
    folded_once = _CountingCode.folds
    assert 5000 <= folded_once < 5010  # the index, and the few codes found in it
    for i in range(200):
        assert convert([f"opt_{i}", "LIGHT_BLUE"], ctx(attribute)) == [f"opt_{i}", "Light_Blue"]
    # 200 more values: a fold or two of each code found, never another scan of the 5,000
    assert _CountingCode.folds - folded_once <= 2 * 200
    # options this process created win over the PIM's spelling, as before
    created = ConversionContext(family="fam", attribute=attribute, mapping=context.mapping,
                                known_options=frozenset({"LIGHT_blue"}))
    assert convert(["light blue"], created) == ["LIGHT_blue"]
    assert context.pending_options == [PendingOption("fam", "m", "new_one", "new one")]
