"""Per-source `code_prefix`: two sources feeding one family can never write each other's
assets, existing (unprefixed) codes never change, and a config that would let two sources
collide is refused at load time and by `connector check`."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import pipeline as steps
from connector.config import ConfigError, parse_config
from connector.config.model import (
    Config,
    FamilyConfig,
    Selector,
    SourceConfig,
)
from connector.dam.base import DamAsset
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.pipeline import reconcile
from connector.pipeline.deletions import _targets
from connector.rules import MAX_CODE_LENGTH
from connector.structure import run_check
from connector.transform.codes import asset_code
from connector.transform.result import TransformedAsset
from connector.transform.transformer import Transformer
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services

VALID = re.compile(r"^[a-zA-Z0-9_]+$")


# ---------------------------------------------------------------- the code rule


@pytest.mark.parametrize(
    ("dam_id", "code"),
    [  # pinned: codes already in customers' PIMs must never change
        ("A00000-X", "A00000_X__cu"),
        ("0a3c2a6e-4c32-4e1b", "0a3c2a6e_4c32_4e1b"),
        ("products/allie.png", "products__x2fallie__x2epng"),
        ("my_id", "my___id"),
        ("Ab", "Ab__c1"),
    ],
)
def test_without_a_prefix_codes_are_unchanged(dam_id: str, code: str) -> None:
    assert asset_code(dam_id) == code
    assert asset_code(dam_id, None) == code
    assert asset_code(dam_id, "") == code


def test_a_prefix_is_followed_by_a_separator_no_unprefixed_code_contains() -> None:
    assert asset_code("A00000-X", "hot") == "hot__sA00000_X__cu"
    assert asset_code("12345", "dam2") == "dam2__s12345"
    # "hot-12345" unprefixed reads "hot_12345": the separator keeps them apart
    assert asset_code("12345", "hot") != asset_code("hot-12345")


@pytest.mark.parametrize("bad", ["hot_", "a-b", "é", "x" * 41, " hot"])
def test_a_prefix_outside_the_rule_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="code prefix"):
        asset_code("1", bad)


ids = st.text(min_size=1, max_size=300)
prefixes = st.one_of(
    st.none(), st.from_regex(r"[A-Za-z0-9]{1,40}", fullmatch=True)
)


@settings(max_examples=400, deadline=None)
@given(id_a=ids, id_b=ids, prefix_a=prefixes, prefix_b=prefixes)
def test_prefixed_codes_never_meet_ignoring_case(
    id_a: str, id_b: str, prefix_a: str | None, prefix_b: str | None
) -> None:
    code_a, code_b = asset_code(id_a, prefix_a), asset_code(id_b, prefix_b)
    for code in (code_a, code_b):
        assert VALID.fullmatch(code) and len(code) <= MAX_CODE_LENGTH
    if id_a == id_b and (prefix_a or "").lower() == (prefix_b or "").lower():
        return  # one asset, or prefixes equal ignoring case (the config refuses those)
    assert code_a.lower() != code_b.lower(), (id_a, prefix_a, id_b, prefix_b)


@settings(max_examples=200, deadline=None)
@given(
    id_a=st.text(alphabet="aA-_./", min_size=1, max_size=12),
    id_b=st.text(alphabet="aA-_./", min_size=1, max_size=12),
    prefix=st.sampled_from(["a", "A", "aa", "s", "a2"]),
)
def test_prefixed_and_unprefixed_codes_never_meet(id_a: str, id_b: str, prefix: str) -> None:
    """The adversarial corner: ids built from the prefix's letters, dashes and underscores."""
    assert asset_code(id_a, prefix).lower() != asset_code(id_b).lower()


def test_long_prefixed_ids_are_hashed_and_keep_the_prefix() -> None:
    code = asset_code("y" * 300, "hot")
    assert len(code) == MAX_CODE_LENGTH and code.startswith("hot__s")
    assert code != asset_code("y" * 300)
    assert code != asset_code("y" * 300, "hot2")


# ---------------------------------------------------------------- config


def two_sources(**prefixes: Any) -> dict[str, Any]:
    """Two DAMs (two hosts) feeding one family; `prefixes` sets code_prefix per source."""
    data: dict[str, Any] = {
        "families": {"packshots": {"match": {"always": True}, "mapping": {"label": "name"}}},
        "sources": {
            name: {
                "type": "rest",
                "rest": {"base_url": f"http://{name}.example", "list": {"path": "/assets"}},
            }
            for name in ("dam_a", "dam_b")
        },
    }
    for name, prefix in prefixes.items():
        data["sources"][name]["code_prefix"] = prefix
    return data


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {})
    return info.value.errors


def test_two_unprefixed_sources_feeding_one_family_are_refused() -> None:
    errors = errors_of(two_sources())
    assert len(errors) == 1, errors
    assert errors[0].startswith("sources.dam_b.code_prefix: ")
    assert "packshots" in errors[0] and "dam_a" in errors[0]


def test_prefixes_equal_ignoring_case_are_refused() -> None:
    errors = errors_of(two_sources(dam_a="Hot", dam_b="hOT"))
    assert len(errors) == 1, errors
    assert errors[0].startswith("sources.dam_b.code_prefix: ")
    assert "packshots" in errors[0] and "ignoring case" in errors[0]


def test_distinct_prefixes_or_one_unprefixed_source_load() -> None:
    config = parse_config(two_sources(dam_a="hot", dam_b="dam2"), {})
    assert [s.code_prefix for s in config.sources] == ["hot", "dam2"]
    config = parse_config(two_sources(dam_b="dam2"), {})  # the first keeps today's codes
    assert [s.code_prefix for s in config.sources] == [None, "dam2"]


def test_sources_feeding_different_families_need_no_prefix() -> None:
    data = two_sources()
    data["families"]["videos"] = {"match": {"always": True}, "mapping": {"title": "name"}}
    data["sources"]["dam_a"]["families"] = ["packshots"]
    data["sources"]["dam_b"]["families"] = ["videos"]
    assert parse_config(data, {}).sources[1].code_prefix is None


def test_sources_reading_the_same_dam_share_their_codes() -> None:
    """A webhook source and a queue source over one DAM: same ids, same PIM assets."""
    data = two_sources()
    data["sources"]["dam_b"]["rest"] = copy.deepcopy(data["sources"]["dam_a"]["rest"])
    parse_config(data, {})
    data["sources"]["dam_b"]["code_prefix"] = "other"
    errors = errors_of(data)
    assert len(errors) == 1 and errors[0].startswith("sources.dam_b.code_prefix: "), errors
    assert "same DAM" in errors[0]


@pytest.mark.parametrize("bad", ["hot_", "a-b", "x" * 41, "", 3])
def test_an_invalid_prefix_gets_a_clear_error(bad: Any) -> None:
    errors = errors_of(two_sources(dam_a="ok", dam_b=bad))
    assert [e.split(": ", 1)[0] for e in errors] == ["sources.dam_b.code_prefix"], errors


# ---------------------------------------------------------------- check


class _NoFamilies:
    def list_asset_families(self) -> Iterable[dict[str, Any]]:
        return [{"code": "packshots"}]

    def get_asset_family(self, code: str) -> dict[str, Any]:
        raise AssertionError("not reached")


def _structure(code: str) -> AssetFamilyStructure:
    return AssetFamilyStructure(code, {"label": Attribute("label", "text")})


def _colliding_config() -> Config:
    good = parse_config(two_sources(dam_a="a", dam_b="b"), {})
    second = dataclasses.replace(good.sources[1], code_prefix="A")
    return dataclasses.replace(good, sources=(good.sources[0], second))


def test_check_refuses_colliding_prefixes_with_the_key_path() -> None:
    report = run_check(_colliding_config(), _NoFamilies(), _structure)  # type: ignore[arg-type]
    paths = [str(f) for f in report.errors]
    assert any(p.startswith("sources.dam_b.code_prefix: ") and "packshots" in p for p in paths)
    assert not report.ok


# ---------------------------------------------------------------- every code derivation


def _prefixed_source_config(prefix: str) -> tuple[Config, SourceConfig]:
    family = FamilyConfig(name="packshots", match=Selector(always=True), mapping=())
    source = SourceConfig(name="dam", type="rest", code_prefix=prefix)
    return Config(families=(family,), sources=(source,)), source


def test_the_transformer_uses_the_source_prefix() -> None:
    config, source = _prefixed_source_config("hot")
    asset = DamAsset(id="A00001-X", source="dam", properties={})
    result = Transformer(config, source, _structure).transform(asset)
    assert isinstance(result, TransformedAsset)
    assert result.code == asset_code("A00001-X", "hot") == "hot__sA00001_X__cu"


def test_deletion_targets_use_the_source_prefix(namespace: str) -> None:
    base = make_config()
    source = dataclasses.replace(base.sources[0], code_prefix="hot")
    config = dataclasses.replace(base, sources=(source,))
    services, _ = make_services(config, FakeDam([make_asset(1)]), FakePim())
    targets = _targets(services, "dam", ["A00001-X"])
    assert {code for _, code in targets["A00001-X"]} == {"hot__sA00001_X__cu"}


def test_reconcile_compares_prefixed_codes(namespace: str) -> None:
    """A prefixed source in sync with the PIM has no orphans and nothing missing."""
    base = make_config()
    source = dataclasses.replace(base.sources[0], code_prefix="hot")
    config = dataclasses.replace(base, sources=(source,))
    pim = FakePim()
    services, queue = make_services(config, FakeDam([make_asset(i) for i in range(5)]), pim)
    steps.start_run("dam", "test", services=services)
    queue.drain()
    assert set(pim.assets["packshots"]) == {asset_code(f"A{i:05d}-X", "hot") for i in range(5)}
    report = reconcile("dam", services=services)
    assert (report["orphans"], report["missing"]) == (0, 0), report
