"""The DAM id → asset code rule: valid, deterministic, injective even when compared without
regard to case (as Akeneo compares asset codes), readable for UUIDs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.rules import MAX_CODE_LENGTH
from connector.transform.codes import (
    asset_code,
    decode_asset_code,
    is_hashed_code,
)

VALID = re.compile(r"^[a-zA-Z0-9_]+$")


@pytest.mark.parametrize(
    ("dam_id", "code"),
    [
        ("0a3c2a6e-4c32-4e1b-9f3e-5d2a1b3c4d5e", "0a3c2a6e_4c32_4e1b_9f3e_5d2a1b3c4d5e"),
        ("0A3C2A6E-4C32-4E1B-9F3E-5D2A1B3C4D5E", "0A3C2A6E_4C32_4E1B_9F3E_5D2A1B3C4D5E__cu"),
        ("0A3C2A6E-4C32-4492-BC0DA02", "0A3C2A6E_4C32_4492_BC0DA02__cu"),
        ("12345", "12345"),
        ("abcXYZ", "abcXYZ__c38"),
        ("Ab", "Ab__c1"),
        ("aB/c", "aB__x2fc__c2"),
        ("my_id", "my___id"),
        ("a-b_c", "a__x2db___c"),
        ("products/allie.png", "products__x2fallie__x2epng"),
        ("-a", "__x2da"),
        ("a-", "a__x2d"),
        ("a--b", "a__x2d__x2db"),
        ("é", "__xe9"),
        ("€", "__u20ac"),
        ("😀", "__w01f600"),
        ("_c", "___c"),
        ("A_c", "A___c__c1"),
        ("_", "___"),
        (" ", "__x20"),
    ],
)
def test_code_table(dam_id: str, code: str) -> None:
    assert asset_code(dam_id) == code
    assert decode_asset_code(code) == dam_id


def test_readable_and_escaped_forms_never_meet() -> None:
    # "a.b" escapes to a code with "__", the dash form of a similar id has none
    assert asset_code("a.b") != asset_code("a-x2eb")
    assert asset_code("a-x2eb") == "a_x2eb"
    assert asset_code("a__x2eb") != asset_code("a.b")


def test_empty_id_is_refused() -> None:
    with pytest.raises(ValueError):
        asset_code("")


def test_long_ids_are_truncated_with_a_hash() -> None:
    long_a = "x" * 300
    long_b = "x" * 299 + "y"
    code_a, code_b = asset_code(long_a), asset_code(long_b)
    assert len(code_a) == len(code_b) == MAX_CODE_LENGTH
    assert code_a != code_b
    assert code_a.startswith("x" * 189 + "_h")
    assert is_hashed_code(code_a)
    assert not is_hashed_code(asset_code("abc"))
    with pytest.raises(ValueError):
        decode_asset_code(code_a)
    # unhashed codes stop one short of the limit, so hashed ones (exactly 255) are apart
    assert asset_code("y" * 254) == "y" * 254
    assert is_hashed_code(asset_code("y" * 255))
    assert asset_code("y" * 255) != asset_code("y" * 189 + "-h" + "0" * 64)


@pytest.mark.parametrize(
    "bad", ["a-b", "_a", "a_", "a__zz", "a__x2", "a__x2G", "a__q", "a b", "ab__cu", "AB__c1"]
)
def test_decode_refuses_foreign_codes(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_asset_code(bad)


def test_stable_across_processes() -> None:
    ids = ["0A3C2A6E-4C32-4E1B", "é/x", "z" * 400]
    script = (
        "from connector.transform.codes import asset_code;"
        f"print('|'.join(asset_code(i) for i in {ids!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.split("|") == [asset_code(i) for i in ids]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300), min_size=2, max_size=6, unique=True))
def test_codes_are_valid_and_injective(ids: list[str]) -> None:
    codes = [asset_code(i) for i in ids]
    for dam_id, code in zip(ids, codes, strict=True):
        assert VALID.match(code), (dam_id, code)
        assert len(code) <= MAX_CODE_LENGTH
        assert asset_code(dam_id) == code  # deterministic
        if not is_hashed_code(code):
            assert decode_asset_code(code) == dam_id
    assert len({c.lower() for c in codes}) == len(codes)  # distinct even ignoring case


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab-_.", min_size=1, max_size=12),
    st.text(alphabet="ab-_.", min_size=1, max_size=12),
)
def test_injective_on_tricky_alphabet(a: str, b: str) -> None:
    # a small alphabet of separators makes collisions likely if the rule were not injective
    if a != b:
        assert asset_code(a).lower() != asset_code(b).lower()


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="aAbBcCuUwWx_-./1é😀", min_size=1, max_size=14),
    st.text(alphabet="aAbBcCuUwWx_-./1é😀", min_size=1, max_size=14),
)
def test_ids_differing_only_by_case_never_collide(a: str, b: str) -> None:
    # Akeneo compares asset codes case-insensitively: "abc" and "ABC" must not meet there
    if a != b:
        assert asset_code(a).lower() != asset_code(b).lower()
    assert asset_code(a.upper()).lower() != asset_code(a.lower()).lower() or (
        a.upper() == a.lower()
    )


@settings(max_examples=200, deadline=None)
@given(st.uuids())
def test_uuids_stay_readable(uuid_value: object) -> None:
    lower = str(uuid_value)
    assert asset_code(lower) == lower.replace("-", "_")
    upper = lower.upper()
    if upper != lower:
        assert asset_code(upper) == upper.replace("-", "_") + "__cu"
