"""`connector explain ID` answers (issue 12, item 3) and relative media links (item 4).

Real parts: the sandbox DAM and PIM over HTTP, real Redis, the `connector` CLI through
click's CliRunner; the one push these tests need runs inline (`sync_assets_by_id`), no
Celery worker. explain must stay read-only: no PIM request but GETs and the token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from connector.pipeline.realtime import sync_assets_by_id
from connector.pipeline.services import get_services, set_services
from connector.transform.codes import asset_code
from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.server import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "sandbox"
TOKEN_PATH = "/api/oauth/v1/token"
PRODUCT_RULE = 'tags contains "product" or folder startswith "products/"'


class Sandboxes:
    def __init__(self) -> None:
        self.dam = DamSandbox(assets=30, shape="bynder", seed=5, bad=False)
        self.pim = PimSandbox(PimSandboxSettings(max_concurrency=0))
        self.dam_server: BackgroundServer = self.dam.serve()
        self.pim_server: BackgroundServer = self.pim.serve()
        self.structured = False

    def stop(self) -> None:
        self.dam_server.stop()
        self.pim_server.stop()


@pytest.fixture(scope="module")
def boxes() -> Iterator[Sandboxes]:
    found = Sandboxes()
    yield found
    found.stop()


def write_config(tmp_path: Path, dam_url: str, name: str = "config.yaml",
                 **rest: Any) -> str:
    """examples/demo.yaml, one source pointed at the sandbox DAM, `rest` keys overridden
    (None removes a key)."""
    data = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    source = data["sources"][SOURCE]
    source["rest"].update(base_url=dam_url, max_retries=0, requests_per_second=1000)
    for key, value in rest.items():
        if value is None:
            source["rest"].pop(key, None)
        else:
            source["rest"][key] = value
    source.pop("schedule", None)
    source.pop("reconcile_schedule", None)
    data["sources"] = {SOURCE: source}
    data["pim"].update(requests_per_second=1000, option_writes_per_second=1000)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.fixture
def config(boxes: Sandboxes, namespace: str, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[str]:
    """The environment of a CLI user (PIM credentials, DAM token) and a config file."""
    values = {
        "AKENEO_URL": boxes.pim_server.url,
        "AKENEO_CLIENT_ID": "sandbox-client",
        "AKENEO_CLIENT_SECRET": "sandbox-secret",
        "AKENEO_USERNAME": "sandbox",
        "AKENEO_PASSWORD": "sandbox-password",
        "DAM_TOKEN": "sandbox-dam-token",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    path = write_config(tmp_path, boxes.dam_server.url)
    monkeypatch.setenv("CONNECTOR_CONFIG", path)
    set_services(None)
    if not boxes.structured:
        done = run("structure", "apply", str(ROOT / "examples" / "structure.yaml"))
        assert done.exit_code == 0, done.output
        boxes.structured = True
    yield path
    set_services(None)


def run(*args: str) -> Any:
    set_services(None)  # every command builds its services from its own config
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def non_get_pim_requests(boxes: Sandboxes, since: float) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in boxes.pim.log(since)
            if r["method"] != "GET" and r["path"] != TOKEN_PATH]


def packshot(boxes: Sandboxes, position: int = 0) -> str:
    ids = [i for i in boxes.dam.ids()
           if (boxes.dam.record(i) or {}).get("folder") == "products/packshots"]
    return ids[position]


# ---------------------------------------------------------------- item 3: explain


def test_an_unknown_id_exits_1_not_found(boxes: Sandboxes, config: str) -> None:
    result = run("explain", "NO-SUCH-ID")
    assert result.exit_code == 1, result.output
    assert "error: DAM asset NO-SUCH-ID not found in source sandbox" in result.stderr
    as_json = run("explain", "NO-SUCH-ID", "--json")
    assert as_json.exit_code == 1
    out = json.loads(as_json.stdout)
    assert out["found"] is False and out["dam"] is None
    assert out["not_found"] == "DAM asset NO-SUCH-ID not found in source sandbox"


def test_a_skipped_asset_names_the_selector_that_rejected_it(
    boxes: Sandboxes, config: str
) -> None:
    boxes.dam.add({"id": "skip-me-1", "folder": "archive/2019", "tags": ["internal"],
                   "filename": "old_logo.png"})
    result = run("explain", "skip-me-1")
    assert result.exit_code == 0, result.output
    assert (
        "  transform: skipped: not a product asset: rejected by product_asset: "
        f"expression {PRODUCT_RULE!r} does not hold (tags = [\"internal\"], "
        'folder = "archive/2019")'
    ) in result.stdout, result.stdout
    out = json.loads(run("explain", "skip-me-1", "--json").stdout)
    assert out["transformed"]["skipped"] == "not a product asset"
    assert out["rejected_by"] == {
        "key": "product_asset",
        "selector": f"expression {PRODUCT_RULE!r}",
        "read": {"tags": ["internal"], "folder": "archive/2019"},
    }


def test_a_record_of_no_family_says_what_each_family_tested(
    boxes: Sandboxes, config: str
) -> None:
    boxes.dam.add({"id": "no-family-1", "folder": "products/misc", "tags": ["product"],
                   "filename": "misc.png", "type": "image"})
    result = run("explain", "no-family-1")
    assert result.exit_code == 0, result.output
    assert "  transform: quarantined: no family matches (field family)" in result.stdout
    assert (
        '    families.packshots.match: folder "products/packshots" does not hold '
        '(folder = "products/misc")'
    ) in result.stdout, result.stdout
    assert (
        '    families.videos.match: type == "video" does not hold (type = "image")'
    ) in result.stdout


def test_without_a_single_asset_endpoint_it_names_the_key_or_scans_the_listing(
    boxes: Sandboxes, config: str, tmp_path: Path
) -> None:
    no_get = write_config(tmp_path, boxes.dam_server.url, "no-get.yaml", get_path=None)
    target = list(boxes.dam.ids())[9]

    result = run("explain", target, "-c", no_get)
    assert result.exit_code == 1, result.output
    assert (
        "error: source 'sandbox' has no single-asset endpoint: set "
        "sources.sandbox.rest.get_path (a path with {id}, such as /assets/{id}), or pass "
        "--scan to look the asset up in the listing"
    ) in result.stderr
    assert "unreachable" not in result.output

    found = run("explain", target, "-c", no_get, "--scan")
    assert found.exit_code == 0, found.output
    assert "  found by scanning 10 records of the listing" in found.stdout
    assert f"DAM asset {target} (source sandbox)" in found.stdout
    out = json.loads(run("explain", target, "-c", no_get, "--scan", "--json").stdout)
    assert out["found"] is True and out["scan"] == {"scanned": 10, "limit": 10000,
                                                   "complete": False}

    short = run("explain", target, "-c", no_get, "--scan", "--scan-limit", "5")
    assert short.exit_code == 1
    assert (
        f"error: DAM asset {target} not found in the first 5 records of source sandbox's "
        "listing (raise --scan-limit, or set sources.sandbox.rest.get_path)"
    ) in short.stderr

    total = len(list(boxes.dam.ids()))
    missing = run("explain", "NOT-THERE", "-c", no_get, "--scan")
    assert missing.exit_code == 1
    assert (
        f"error: DAM asset NOT-THERE not found in source sandbox (scanned all {total} "
        "records of the listing)"
    ) in missing.stderr


def test_the_payload_is_formatted_and_compared_value_by_value_with_the_pim(
    boxes: Sandboxes, config: str
) -> None:
    dam_id = packshot(boxes, 2)
    code = asset_code(dam_id)
    first = run("explain", dam_id)
    assert first.exit_code == 0, first.output
    assert f"  PIM: no asset packshots/{code} yet: a sync would create it" in first.stdout

    counts = sync_assets_by_id(SOURCE, [dam_id], trigger="test", services=get_services())
    assert counts["created"] == 1, counts
    old = (boxes.dam.record(dam_id) or {})["description"]
    boxes.dam.edit(dam_id, {"description": "Brand new label", "width": 4242})

    since = time.time()
    result = run("explain", dam_id)
    assert result.exit_code == 0, result.output
    assert non_get_pim_requests(boxes, since) == []
    text = result.stdout
    assert "  payload (PATCH /api/rest/v1/asset-families/packshots/assets):" in text
    assert f'      "code": "{code}",' in text
    assert "  PIM differences (attribute [locale|channel]: PIM value → new value):" in text
    assert f'    label [en_US|-]: {json.dumps(old)} → "Brand new label"' in text
    assert "    width [-|-]: " in text and " → \"4242\"" in text
    assert "would push now: yes" in text
    assert "{'" not in text  # no raw Python dict

    out = json.loads(run("explain", dam_id, "--json").stdout)
    assert out["payload"]["code"] == code
    assert out["pim"]["exists"] is True
    assert {"attribute": "label", "locale": "en_US", "channel": None, "pim": old,
            "dam": "Brand new label"} in out["pim"]["differences"]
    assert non_get_pim_requests(boxes, since) == []


# ---------------------------------------------------------------- item 4: relative links


def test_a_relative_media_link_is_pushed_absolute(boxes: Sandboxes, config: str) -> None:
    boxes.dam.add({"id": "relative-1", "filename": "rel_front.png",
                   "original": "/media/relative-1/rel_front.png"})
    counts = sync_assets_by_id(SOURCE, ["relative-1"], trigger="test",
                               services=get_services())
    assert counts["created"] == 1, counts
    (pushed,) = [a for a in boxes.pim.dump_assets("packshots")
                 if a["code"] == asset_code("relative-1")]
    (value,) = pushed["values"]["image_url"]
    assert value["data"] == f"{boxes.dam_server.url}/media/relative-1/rel_front.png"


def test_media_base_url_is_the_base_of_relative_links(
    boxes: Sandboxes, config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(write_config(tmp_path, boxes.dam_server.url, "cdn.yaml"))
    data = yaml.safe_load(path.read_text())
    data["sources"][SOURCE]["media"] = {"base_url": "https://cdn.example.com/assets/"}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("CONNECTOR_CONFIG", str(path))
    set_services(None)
    boxes.dam.add({"id": "relative-2", "filename": "rel2_front.png",
                   "original": "files/rel2_front.png"})
    counts = sync_assets_by_id(SOURCE, ["relative-2"], trigger="test",
                               services=get_services())
    assert counts["created"] == 1, counts
    (pushed,) = [a for a in boxes.pim.dump_assets("packshots")
                 if a["code"] == asset_code("relative-2")]
    (value,) = pushed["values"]["image_url"]
    assert value["data"] == "https://cdn.example.com/assets/files/rel2_front.png"
