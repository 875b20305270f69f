"""`structure apply` against the sandbox PIM: creation, idempotence, minimal updates."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from connector.config.model import PimConfig
from connector.pim.cache import StructureCache, UnknownFamilyError
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.structure import (
    StructureFileError,
    apply_structure,
    load_structure_file,
    parse_structure,
)
from sandbox.pim import PimSandbox
from sandbox.server import BackgroundServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "structure.yaml"


@pytest.fixture
def pim(pim_server) -> tuple[PimSandbox, BackgroundServer]:
    sandbox, _ = pim_server
    sandbox.reset()
    return pim_server


@pytest.fixture
def client(pim, namespace: str, redis_client: redis.Redis) -> AkeneoClient:
    _, server = pim
    credentials = PimCredentials(
        url=server.url, client_id="sandbox-client", client_secret=Secret("sandbox-secret"),
        username="sandbox", password=Secret("sandbox-password"),
    )
    config = PimConfig(timeout=10, max_in_flight=8, requests_per_second=10_000,
                       option_writes_per_second=10_000)
    return AkeneoClient(credentials, config, redis_client, Keys(namespace))


def writes_since(sandbox: PimSandbox, since: float) -> list[dict[str, Any]]:
    return [r for r in sandbox.log(since) if r["method"] != "GET" and "/oauth/" not in r["path"]]


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the file


def test_example_file_is_valid():
    spec = load_structure_file(EXAMPLE)
    assert [f.code for f in spec.families] == ["packshots", "user_guides", "videos"]
    packshots = spec.families[0]
    assert packshots.properties["attribute_as_main_media"] == "image_url"
    colors = packshots.attribute("main_colors")
    assert colors is not None and colors.options is not None
    assert [o.code for o in colors.options] == [
        "red", "blue", "green", "black", "white", "yellow", "grey", "pink"
    ]
    width = packshots.attribute("width")
    assert width is not None and width.properties["min_value"] == "0"  # Akeneo wants strings
    assert spec.locales == ("en_US", "fr_FR", "de_DE")


def test_invalid_file_reports_every_error_with_its_path():
    data = {
        "families": {
            "bad-code": {},
            "packshots": {
                "labels": {"english": "x"},
                "attribute_as_main_media": "title",
                "product_link_rules": [
                    {"product_selections": [{"field": "sku", "operator": "EQUALS",
                                             "value": "x"}],
                     "assign_assets_to": [{"attribute": "assets", "mode": "merge"}]}
                ],
                "attributes": {
                    "title": {"type": "text", "media_type": "image"},
                    "link": {"type": "media_link"},
                    "colors": {"type": "multiple_options", "options": ["red", "RED", "b-c"]},
                    "size": {"type": "number", "min_value": "ten"},
                    "typo": {"tpye": "text"},
                },
            },
        }
    }
    with pytest.raises(StructureFileError) as info:
        parse_structure(data)
    errors = info.value.errors
    expected = [
        "families.bad-code: (key) must be a code",
        "families.packshots.labels.english: (key) not a locale code",
        "families.packshots.product_link_rules[0].assign_assets_to[0].mode: Must be one of",
        "families.packshots.attributes.title.media_type: not a property of text attributes",
        "families.packshots.attributes.link.media_type: required for media_link attributes",
        "families.packshots.attributes.colors.options[1]: duplicate option 'RED'",
        "families.packshots.attributes.colors.options[2]: must be a code",
        "families.packshots.attributes.size.min_value: 'ten' is not a number",
        "families.packshots.attributes.typo.type: Missing data for required field.",
        "families.packshots.attributes.typo.tpye: Unknown field.",
    ]
    for prefix in expected:
        assert any(e.startswith(prefix) for e in errors), (prefix, errors)


def test_locale_codes_follow_the_one_rule_of_the_config() -> None:
    """connector/rules.py: a script subtag is a locale (zh_Hans_CN), a lower-case region
    is not (en_us), in the structure file as in the config file."""
    spec = parse_structure({"locales": ["en_US", "zh_Hans_CN", "es_419"], "families": {
        "packshots": {"labels": {"zh_Hans_CN": "产品图"}}}})
    assert spec.locales == ("en_US", "zh_Hans_CN", "es_419")
    with pytest.raises(StructureFileError) as info:
        parse_structure({"locales": ["en_us"], "families": {
            "packshots": {"labels": {"en_us": "Packshots"}}}})
    assert info.value.errors == [
        "locales[0]: not a locale",
        "families.packshots.labels.en_us: (key) not a locale code",
    ]


def test_main_media_must_be_a_media_attribute():
    data = {"families": {"f": {"attribute_as_main_media": "t",
                               "attributes": {"t": {"type": "text"}}}}}
    with pytest.raises(StructureFileError, match=r"families\.f\.attribute_as_main_media"):
        parse_structure(data)


def test_unreadable_yaml_says_where(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("families:\n  packshots: {labels: [\n", encoding="utf-8")
    with pytest.raises(StructureFileError, match=r"not valid YAML \(line \d+"):
        load_structure_file(path)


# ---------------------------------------------------------------- applying


def test_first_apply_creates_everything(pim, client):
    sandbox, _ = pim
    report = apply_structure(client, load_structure_file(EXAMPLE))
    assert report.ok, [i for i in report.items if i.action in ("conflict", "failed")]
    by_code = {i.code: i for i in report.items}
    assert by_code["packshots"].action == "created"
    assert by_code["packshots.image_url"].action == "created"
    assert by_code["packshots.main_colors.red"].action == "created"
    # Akeneo created `label` with the family; the file only adds its labels
    assert by_code["packshots.label"].action == "updated"
    assert by_code["packshots.label"].fields == ("labels",)
    # families, attributes (not label), options, the PIM's own (3 `media`, 2 `label`)
    assert report.count("created") == 3 + 15 + 8 + 5

    family = sandbox.store.get_family("packshots")
    assert family["attribute_as_main_media"] == "image_url"
    rule = family["product_link_rules"][0]
    assert rule["product_selections"][0]["value"] == "{{product_ref}}"
    assert rule["assign_assets_to"][0] == {"attribute": "assets", "mode": "add"}
    width = sandbox.store.get_attribute("packshots", "width")
    assert width["type"] == "number" and width["min_value"] == "0"
    options = {o["code"]: o for o in sandbox.store.list_options("packshots", "main_colors")}
    assert options["white"]["labels"]["de_DE"] == "Weiß"
    assert sandbox.store.get_attribute("user_guides", "file")["allowed_extensions"] == ["pdf"]


def test_second_apply_changes_nothing_and_sends_no_write(pim, client):
    sandbox, _ = pim
    spec = load_structure_file(EXAMPLE)
    apply_structure(client, spec)
    since = time.time()
    report = apply_structure(client, spec)
    assert report.ok
    assert {i.action for i in report.items} == {"unchanged"}
    assert len(report.items) == 3 + 16 + 8
    assert writes_since(sandbox, since) == []
    assert sandbox.counters()["option_writes"] == 8  # from the first apply only


def test_a_changed_label_updates_exactly_that_item(pim, client, tmp_path):
    sandbox, _ = pim
    apply_structure(client, load_structure_file(EXAMPLE))
    data = example_data()
    data["families"]["packshots"]["attributes"]["main_colors"]["options"]["grey"]["labels"][
        "en_US"
    ] = "Gray"
    data["families"]["videos"]["attributes"]["duration"]["labels"]["fr_FR"] = "Durée"
    since = time.time()
    report = apply_structure(client, parse_structure(data))
    changed = [(i.kind, i.code, i.action, i.fields) for i in report.items
               if i.action != "unchanged"]
    assert changed == [
        ("option", "packshots.main_colors.grey", "updated", ("labels",)),
        ("attribute", "videos.duration", "updated", ("labels",)),
    ]
    writes = writes_since(sandbox, since)
    assert [w["path"].rsplit("/", 1)[-1] for w in writes] == ["grey", "duration"]
    grey = {o["code"]: o for o in sandbox.store.list_options("packshots", "main_colors")}["grey"]
    assert grey["labels"] == {"en_US": "Gray", "fr_FR": "Gris", "de_DE": "Grau"}


def test_family_property_change_patches_only_that_field(pim, client):
    sandbox, _ = pim
    data = example_data()
    apply_structure(client, parse_structure(data))
    changed = copy.deepcopy(data)
    changed["families"]["videos"]["attribute_as_main_media"] = "image"
    changed["families"]["videos"]["attributes"]["image"] = {
        "type": "media_link", "media_type": "image"
    }
    report = apply_structure(client, parse_structure(changed))
    touched = {i.code: i for i in report.items if i.action != "unchanged"}
    assert set(touched) == {"videos", "videos.image"}
    assert touched["videos"].fields == ("attribute_as_main_media",)
    assert touched["videos.image"].action == "created"
    assert sandbox.store.get_family("videos")["attribute_as_main_media"] == "image"


def test_dry_run_reports_without_writing(pim, client):
    sandbox, _ = pim
    since = time.time()
    report = apply_structure(client, load_structure_file(EXAMPLE), dry_run=True)
    assert report.dry_run and report.ok
    # families, attributes (not packshots' `label`: the PIM creates it), options, and the
    # PIM's own attributes the file does not declare (3 `media`, 2 `label`)
    assert report.count("created") == 3 + 15 + 8 + 5
    assert writes_since(sandbox, since) == []
    assert sandbox.store.families == {}


def _items(report: Any) -> list[tuple[str, str, str, tuple[str, ...], str | None]]:
    return [(i.kind, i.code, i.action, i.fields, i.message) for i in report.items]


BY_PIM = "created by the PIM with the family (not by this file)"
DEFAULTS_SPEC: dict[str, Any] = {"families": {
    "packshots": {"attributes": {   # the PIM's own `label` and `media`, declared otherwise
        "media": {"type": "media_link", "media_type": "image"},
        "label": {"type": "text", "value_per_locale": True, "labels": {"en_US": "Label"}},
        "ok": {"type": "text"},
    }},
    "videos": {                      # main media: the PIM's `media`, never declared here
        "attribute_as_main_media": "media",
        "attributes": {"title": {"type": "text"}},
    },
}}


@pytest.mark.parametrize("data", [example_data(), DEFAULTS_SPEC], ids=["example", "defaults"])
def test_a_dry_run_reports_what_the_real_apply_does_with_the_pims_own_attributes(
    pim, client, data
):
    """Akeneo creates `label` and `media` with every new family: the dry run must report
    them as the real apply will (updated, conflict, created by the PIM), not as created
    by the file, and accept `media` as main media."""
    sandbox, _ = pim
    since = time.time()
    dry = apply_structure(client, parse_structure(data), dry_run=True)
    assert writes_since(sandbox, since) == []
    real = apply_structure(client, parse_structure(data))
    assert _items(dry) == _items(real)
    assert (dry.ok, dry.to_dict()["summary"]) == (real.ok, real.to_dict()["summary"])
    families = list(data["families"])
    media = ("attribute", f"{families[-1]}.media", "created", ("type", "media_type"), BY_PIM)
    assert media in _items(real)
    if data is DEFAULTS_SPEC:
        by_code = {i.code: i for i in real.items}
        assert by_code["packshots.media"].action == "conflict"
        assert (by_code["packshots.label"].action, by_code["packshots.label"].fields) == (
            "updated", ("labels",))
        assert by_code["videos"].action == "created"
        assert ("attribute", "videos.label", "created", ("type", "value_per_locale"),
                BY_PIM) in _items(real)


def test_structure_apply_dry_run_lines_match_the_real_apply(pim, namespace, monkeypatch,
                                                             tmp_path):
    from click.testing import CliRunner

    from connector.cli import main

    _, server = pim
    for key, value in {
        "AKENEO_URL": server.url, "AKENEO_CLIENT_ID": "sandbox-client",
        "AKENEO_CLIENT_SECRET": "sandbox-secret", "AKENEO_USERNAME": "sandbox",
        "AKENEO_PASSWORD": "sandbox-password",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONNECTOR_CONFIG", raising=False)
    path = tmp_path / "structure.yaml"
    path.write_text(yaml.safe_dump(DEFAULTS_SPEC), encoding="utf-8")
    dry = CliRunner().invoke(main, ["structure", "apply", str(path), "--dry-run"])
    real = CliRunner().invoke(main, ["structure", "apply", str(path)])
    assert (dry.exit_code, real.exit_code) == (1, 1)  # the conflict on `media`
    said = [ln.replace("would create", "created     ").replace("would update", "updated     ")
            for ln in dry.output.splitlines()]
    assert said[:-1] == real.output.splitlines()[:-1]
    assert dry.output.splitlines()[-1] == "dry run: " + real.output.splitlines()[-1]
    assert f"would create attribute videos.media (type, media_type): {BY_PIM}" in dry.output


def test_immutable_property_conflict_is_reported_not_sent(pim, client):
    sandbox, _ = pim
    data = {"families": {"packshots": {"attributes": {
        "media": {"type": "media_link", "media_type": "image"},   # Akeneo made it media_file
        "label": {"type": "text", "value_per_locale": False},      # Akeneo made it localizable
        "ok": {"type": "text"},
    }}}}
    report = apply_structure(client, parse_structure(data))
    assert not report.ok
    by_code = {i.code: i for i in report.items}
    assert by_code["packshots.media"].action == "conflict"
    assert "type is 'media_file' in the PIM but 'media_link'" in (
        by_code["packshots.media"].message or ""
    )
    assert by_code["packshots.label"].action == "conflict"
    assert by_code["packshots.ok"].action == "created"
    assert sandbox.store.get_attribute("packshots", "media")["type"] == "media_file"


def test_pim_rejection_is_reported_per_item(pim, client):
    data = {"families": {"f": {"attributes": {
        "a": {"type": "text", "labels": {"it_IT": "non attivo"}},  # locale not activated
        "b": {"type": "text"},
    }}}}
    report = apply_structure(client, parse_structure(data))
    by_code = {i.code: i for i in report.items}
    assert by_code["f.a"].action == "failed"
    assert "422" in (by_code["f.a"].message or "")
    assert by_code["f.b"].action == "created"
    assert not report.ok


def test_apply_invalidates_the_cache_of_touched_families(pim, client, redis_client, namespace):
    cache = StructureCache(client, redis_client, Keys(namespace), memo_ttl=0)
    with pytest.raises(UnknownFamilyError):
        cache.family("videos")  # remembered as missing for a while
    apply_structure(client, load_structure_file(EXAMPLE), cache=cache)
    videos = cache.family("videos")
    assert videos.attributes["duration"].decimals_allowed is True
    assert cache.family("packshots").attribute_as_main_media == "image_url"
    before = cache.stats()["fetches"]
    apply_structure(client, load_structure_file(EXAMPLE), cache=cache)  # all unchanged
    cache.family("videos")
    assert cache.stats()["fetches"] == before  # nothing touched, nothing invalidated
