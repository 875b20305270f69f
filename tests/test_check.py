"""`connector check` logic: the mapping against the live structure of the sandbox PIM."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import redis

from connector.config import parse_config
from connector.config.model import PimConfig
from connector.pim.cache import fetch_structure
from connector.pim.client import AkeneoClient
from connector.redis_conn import Keys
from connector.settings import PimCredentials, Secret
from connector.structure import (
    Finding,
    apply_structure,
    check_family,
    load_structure_file,
    run_check,
)
from sandbox.server import BackgroundServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "structure.yaml"

GOOD: dict[str, Any] = {
    "pim": {"locales": ["en_US", "fr_FR", "de_DE"], "channels": ["ecommerce"]},
    "families": {
        "packshots": {
            "match": {"folder": "products/packshots"},
            "locale": {"default": "en_US"},
            "auto_create_options": False,
            "mapping": {
                "image_url": "original",
                "label": "name",
                "main_colors": {"property": "property_colors",
                                "option_map": {"Red": "red", "Grey": "grey"}},
                "disclaimer": {"property": "property_disclaimer", "locale": "fr_FR"},
                "product_ref": "property_sku",
                "width": {"property": "width", "type": "number"},
                "tags": {"property": "tags", "auto_create_options": True},
            },
        },
        "videos": {
            "match": {"folder": "products/videos"},
            "mapping": {"video_url": "original", "title": "name", "duration": "duration",
                        "product_ref": "property_sku"},
        },
    },
    "sources": {"dam": {"type": "rest",
                        "rest": {"base_url": "http://127.0.0.1:9", "list": {"path": "/a"}}}},
}


def make_client(server: BackgroundServer, namespace: str, redis_client: redis.Redis,
                secret: str = "sandbox-secret") -> AkeneoClient:
    credentials = PimCredentials(
        url=server.url, client_id="sandbox-client", client_secret=Secret(secret),
        username="sandbox", password=Secret("sandbox-password"),
    )
    config = PimConfig(timeout=10, requests_per_second=10_000, option_writes_per_second=10_000)
    return AkeneoClient(credentials, config, redis_client, Keys(namespace))


@pytest.fixture
def client(pim_server, namespace, redis_client) -> AkeneoClient:
    """A client of a sandbox holding the demo structure (applied once per module)."""
    sandbox, server = pim_server
    client = make_client(server, namespace, redis_client)
    if "packshots" not in sandbox.store.families:
        assert apply_structure(client, load_structure_file(EXAMPLE)).ok
    return client


def by_path(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.path, []).append(f)
    return out


def test_a_consistent_config_passes(client):
    report = run_check(parse_config(GOOD, {}), client)
    assert report.pim_reachable
    assert report.errors == [], [str(f) for f in report.errors]
    assert report.ok
    assert report.families == {"packshots": "ok", "videos": "ok"}


def test_a_broken_config_gets_one_clear_finding_per_mistake(client):
    data = copy.deepcopy(GOOD)
    pack = data["families"]["packshots"]
    del pack["locale"]  # `label` is localizable: no locale source any more
    pack["mapping"].update({
        "main_colors": {"property": "property_colors", "option_map": {"Purple": "purple"}},
        "colour": "property_colors",                                  # no such attribute
        "width": {"property": "width", "type": "text"},               # wrong expected type
        "height": {"constant": "tall"},                               # not a number
        "product_ref": {"property": "property_sku", "locale": "en_US"},  # not localizable
    })
    data["families"]["videos"]["mapping"]["title"] = {"constant": 12}  # text needs a string
    data["families"]["ghosts"] = {"match": {"always": True}, "mapping": {"x": "y"}}
    report = run_check(parse_config(data, {}), client)
    assert not report.ok
    found = by_path(report.errors)
    base = "families.packshots.mapping"
    assert "does not exist in asset family 'packshots'" in found[f"{base}.colour"][0].message
    assert "localizable" in found[f"{base}.label"][0].message
    assert "families.packshots.locale.property" in found[f"{base}.label"][0].message
    assert "expected type 'text' but the PIM attribute 'width' is 'number'" in (
        found[f"{base}.width"][0].message
    )
    assert "constant 'tall' (str)" in found[f"{base}.height"][0].message
    assert "purple" in found[f"{base}.main_colors"][0].message
    assert "auto_create_options is off" in found[f"{base}.main_colors"][0].message
    assert "not localizable" in found[f"{base}.product_ref"][0].message
    assert "constant 12 (int)" in found["families.videos.mapping.title"][0].message
    assert "'ghosts' does not exist in the PIM" in found["families.ghosts"][0].message
    assert "packshots, user_guides, videos" in found["families.ghosts"][0].message
    assert report.families == {"packshots": "problems", "videos": "problems",
                               "ghosts": "unknown"}
    assert len(report.errors) == 8
    assert str(found[f"{base}.colour"][0]).startswith(f"{base}.colour: attribute 'colour'")


def test_options_are_not_checked_when_auto_creation_is_on(client):
    data = copy.deepcopy(GOOD)
    data["families"]["packshots"]["auto_create_options"] = True
    data["families"]["packshots"]["mapping"]["main_colors"] = {"constant": ["red", "purple"]}
    assert run_check(parse_config(data, {}), client).ok
    data["families"]["packshots"]["auto_create_options"] = False
    report = run_check(parse_config(data, {}), client)
    [finding] = report.errors
    assert finding.path == "families.packshots.mapping.main_colors"
    assert "purple (constant)" in finding.message


def test_wrong_credentials_are_reported(pim_server, namespace, redis_client):
    _, server = pim_server
    client = make_client(server, namespace, redis_client, secret="wrong")
    report = run_check(parse_config(GOOD, {}), client)
    assert not report.ok and not report.pim_reachable
    [finding] = report.findings
    assert finding.path == "pim"
    assert "refused the credentials" in finding.message
    assert "wrong" not in finding.message  # the secret never shows


def test_scopable_attribute_needs_a_channel(pim_server, client):
    sandbox, _ = pim_server
    sandbox.store.upsert_attribute("videos", "promo", {
        "code": "promo", "type": "text", "value_per_channel": True})
    data = copy.deepcopy(GOOD)
    data["families"]["videos"]["mapping"]["promo"] = "description"
    report = run_check(parse_config(data, {}), client)
    [finding] = report.errors
    assert finding.path == "families.videos.mapping.promo"
    assert "scopable" in finding.message and "families.videos.channel" in finding.message
    data["families"]["videos"]["channel"] = "ecommerce"
    assert run_check(parse_config(data, {}), client).ok


def test_media_link_prefix_on_another_host_is_a_warning(pim_server, client):
    sandbox, _ = pim_server
    sandbox.store.upsert_attribute("videos", "cdn_link", {
        "code": "cdn_link", "type": "media_link", "media_type": "other",
        "prefix": "https://cdn.example.com/"})
    data = copy.deepcopy(GOOD)
    data["families"]["videos"]["mapping"]["cdn_link"] = "original"
    structure = fetch_structure(client, "videos")
    config = parse_config(data, {})
    findings = check_family(config.family("videos"), structure, config)
    [warning] = [f for f in findings if f.path.endswith("cdn_link")]
    assert warning.severity == "warning"
    assert "https://cdn.example.com/" in warning.message and "127.0.0.1" in warning.message
    # a DAM whose media come from that host is fine
    data["sources"]["dam"]["media"] = {"allowed_hosts": ["cdn.example.com"]}
    config = parse_config(data, {})
    assert not [f for f in check_family(config.family("videos"), structure, config)
                if f.path.endswith("cdn_link")]
