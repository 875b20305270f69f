"""`connector check` probes every DAM source: each mistake made on purpose against the
sandbox DAM (served on 127.0.0.1) → the message a user sees, with the key to change."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from sandbox.dam import DamSandbox
from sandbox.harness import local_pim
from sandbox.pim import PimSandbox
from sandbox.server import BackgroundServer

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo.yaml"
STRUCTURE = ROOT / "examples" / "structure.yaml"
TOKEN = "sandbox-dam-token"


@pytest.fixture(scope="module")
def pim_sandbox() -> Iterator[tuple[PimSandbox, BackgroundServer]]:
    sandbox = local_pim()
    server = sandbox.serve()
    yield sandbox, server
    server.stop()


@pytest.fixture
def pim(pim_sandbox) -> BackgroundServer:
    return pim_sandbox[1]


@pytest.fixture(scope="module")
def dam() -> Iterator[tuple[DamSandbox, str]]:
    sandbox = DamSandbox(assets=300, shape="bynder", seed=5)
    server = sandbox.serve()
    yield sandbox, server.url
    server.stop()


@pytest.fixture
def env(pim, dam, namespace, monkeypatch, tmp_path) -> Path:
    """AKENEO_* for the sandbox PIM (demo structure applied), DAM_URL/DAM_TOKEN for the
    sandbox DAM, a hot folder holding one user guide; returns the hot folder."""
    values = {
        "AKENEO_URL": pim.url, "AKENEO_CLIENT_ID": "sandbox-client",
        "AKENEO_CLIENT_SECRET": "sandbox-secret", "AKENEO_USERNAME": "sandbox",
        "AKENEO_PASSWORD": "sandbox-password", "DAM_URL": dam[1], "DAM_TOKEN": TOKEN,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONNECTOR_CONFIG", raising=False)
    hot = tmp_path / "hot"
    (hot / "products" / "guides").mkdir(parents=True)
    (hot / "products" / "guides" / "SKU-1_user_guide_en_US.pdf").write_bytes(b"%PDF-1.4 x")
    monkeypatch.setenv("HOT_FOLDER", str(hot))
    result = run("structure", "apply", str(STRUCTURE))
    assert result.exit_code == 0, result.output
    return hot


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def demo() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text())
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def check(tmp_path: Path, data: dict[str, Any], *extra: str) -> tuple[int, list[str]]:
    result = run("check", "-c", write(tmp_path, data), *extra)
    return result.exit_code, result.output.splitlines()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_config_passes_with_counts_and_example_payloads(env, dam, pim_sandbox):
    started = time.time()
    result = run("check", "-c", str(DEMO))
    # planning only: the PIM was read (token, families, attributes), never written
    requests = [(r["method"], r["path"]) for r in pim_sandbox[0].log(started)]
    assert ("GET", "/api/rest/v1/asset-families/packshots") in requests
    assert [r for r in requests if r[0] != "GET"] == []
    lines = result.output.splitlines()
    assert result.exit_code == 0, result.output
    assert lines[-1].startswith("OK: PIM reachable, 3 families checked, no problems")
    assert [ln for ln in lines if ln.startswith("DAM source")] == [
        "DAM source sandbox (rest): reachable, 200 records sampled (2 unreadable), "
        "changed-since filter accepted",
        "DAM source hot_folder (folder): reachable, 1 record sampled, changed-since "
        "filter not applicable",
    ]
    assert any(ln.startswith("  example packshots/") for ln in lines)
    assert any(ln.startswith("  example user_guides/hot_") for ln in lines)

    report = json.loads(run("check", "-c", str(DEMO), "--json", "--sample", "50").output)
    assert report["ok"] is True
    sandbox = report["sources"]["sandbox"]
    assert sandbox["sampled"] == 50 and sandbox["since_filter"] == "accepted"
    assert set(sandbox["families"]) >= {"packshots", "user_guides", "videos"}
    assert sum(sandbox["families"].values()) == sandbox["product_assets"]
    example = sandbox["examples"]["packshots"]
    assert example["values"]["image_url"][0]["data"].startswith(dam[1] + "/media/")
    assert sandbox["examples"].keys() <= {"packshots", "user_guides", "videos"}


def test_a_wrong_token_names_the_auth_key(env, tmp_path, dam, monkeypatch):
    monkeypatch.setenv("DAM_TOKEN", "not-the-token")
    code, lines = check(tmp_path, demo())
    assert code == 1
    assert (
        "sources.sandbox.rest.auth: sandbox: the DAM refused our credentials (HTTP 401) on "
        f"{dam[1]}/api/v4/media/: check sources.sandbox.rest.auth.token"
    ) in lines
    assert not any("not-the-token" in ln for ln in lines)
    assert lines[-1] == "1 problem(s), 0 warning(s)"  # the hot folder alone judges no path


def test_a_dam_that_is_down_is_a_problem_not_a_traceback(env, tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.setenv("DAM_URL", f"http://127.0.0.1:{port}")
    code, lines = check(tmp_path, demo())
    assert code == 1
    assert (
        "sources.sandbox.rest.base_url: cannot reach the DAM: sandbox: DAM unreachable after "
        f"2 attempts (ConnectionError on http://127.0.0.1:{port}/api/v4/media/)"
    ) in lines
    assert (
        "DAM source sandbox (rest): NOT reachable, 0 records sampled, changed-since filter "
        "not probed"
    ) in lines


def test_a_wrong_items_path_says_the_body_is_the_list(env, tmp_path, dam):
    data = demo()
    data["sources"]["sandbox"]["rest"]["list"]["items_path"] = "data"
    code, lines = check(tmp_path, data)
    assert code == 1
    assert (
        "sources.sandbox.rest.list.items_path: sandbox: expected the list of records at "
        f"'data' in the response of {dam[1]}/api/v4/media/, found nothing; the body itself "
        "is a list (of 100 records). Set sources.sandbox.rest.list.items_path to the path "
        'of the list ("" when the body is the list)'
    ) in lines


def test_a_wrong_id_field_lists_the_fields_the_records_have(env, tmp_path, dam):
    sandbox, url = dam
    data = demo()
    data["sources"]["sandbox"]["rest"]["list"]["id_field"] = "uuid"
    code, lines = check(tmp_path, data)
    assert code == 1
    keys = ", ".join(sandbox.record(next(sandbox.ids())) or {})
    assert (
        "sources.sandbox.rest.list.id_field: sandbox: none of the 100 records listed by "
        f"{url}/api/v4/media/ has the id field 'uuid'; the first record has: {keys}. Set "
        "sources.sandbox.rest.list.id_field to the field that holds the asset id"
    ) in lines


def test_a_wrong_updated_field_is_named(env, tmp_path):
    data = demo()
    data["sources"]["sandbox"]["rest"]["list"]["updated_field"] = "modified"
    code, lines = check(tmp_path, data)
    assert code == 1
    found = [ln for ln in lines if ln.startswith("sources.sandbox.rest.list.updated_field: ")]
    assert len(found) == 1
    assert found[0].startswith(
        "sources.sandbox.rest.list.updated_field: field 'modified' is absent from all 200 "
        "sampled records (the records have: id, "
    )


def test_a_mapping_typo_names_the_key_and_the_close_paths(env, tmp_path):
    data = demo()
    data["families"]["packshots"]["mapping"]["product_ref"]["property"] = "property_skus"
    data["families"]["videos"]["mapping"]["title"] = "metadata.field.name"
    code, lines = check(tmp_path, data)
    assert code == 1
    assert (
        "families.packshots.mapping.product_ref.property: property 'property_skus' is absent "
        "from all 198 sampled records of source sandbox: no asset would get this value "
        "(closest existing paths: property_sku, property_colors, property_product_asset)"
    ) in lines
    videos = [ln for ln in lines if ln.startswith("families.videos.mapping.title.property: ")]
    assert videos == [
        "families.videos.mapping.title.property: property 'metadata.field.name' is absent "
        "from all 198 sampled records of source sandbox: no asset would get this value (the "
        "records have: dateCreated, dateModified, description, duration, extension, "
        "fileSize, filename, folder, height, id, language, name, original, property_colors, "
        "property_disclaimer, property_product_asset, property_sku, tags, type, width)"
    ]
    assert lines[-1] == "2 problem(s), 2 warning(s)"


def test_a_nested_typo_on_a_cloudinary_shaped_dam(env, tmp_path, monkeypatch):
    sandbox = DamSandbox(assets=40, shape="cloudinary", seed=2)
    server = sandbox.serve()
    try:
        for key, value in {
            "CLOUDINARY_API_URL": server.url, "CLOUDINARY_CLOUD_NAME": "demo",
            "CLOUDINARY_API_KEY": "sandbox", "CLOUDINARY_API_SECRET": "sandbox-dam-password",
        }.items():
            monkeypatch.setenv(key, value)
        data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "cloudinary.yaml").read_text())
        data["families"]["packshots"]["mapping"]["product_ref"]["property"] = (
            "context.custum.sku")
        del data["families"]["user_guides"]  # its PDFs: see the test below
        code, lines = check(tmp_path, data, "--no-dam")
        assert code == 0, lines        # the PIM side alone cannot see the typo
        code, lines = check(tmp_path, data)
        assert code == 1, '\n'.join(lines)
        assert (
            "families.packshots.mapping.product_ref.property: property 'context.custum.sku' "
            "is absent from all 27 sampled records of source cloudinary: no asset would get "
            "this value (closest existing paths: context.custom.sku, context.custom, "
            "context.custom.colors)"
        ) in lines
        assert lines[-1].startswith("1 problem(s), ")
    finally:
        server.stop()


def test_the_cloudinary_example_passes_check_with_its_user_guides(env, monkeypatch):
    """examples/cloudinary.yaml as shipped: public ids carry no extension, so a file name
    taken from them made every PDF "extension '(none)'" and quarantined the family."""
    sandbox = DamSandbox(assets=80, shape="cloudinary", seed=2)
    server = sandbox.serve()
    try:
        for key, value in {
            "CLOUDINARY_API_URL": server.url, "CLOUDINARY_CLOUD_NAME": "demo",
            "CLOUDINARY_API_KEY": "sandbox", "CLOUDINARY_API_SECRET": "sandbox-dam-password",
        }.items():
            monkeypatch.setenv(key, value)
        result = run("check", "-c", str(ROOT / "examples" / "cloudinary.yaml"), "--json")
        report = json.loads(result.output)
        problems = [f for f in report["findings"] if f["severity"] == "error"]
        assert (result.exit_code, problems) == (0, []), result.output
        guides = report["sources"]["cloudinary"]["examples"]["user_guides"]
        assert guides["code"] and guides["values"]["file"], guides
        assert any(e.startswith("would upload `") and ".pdf` (sha256 " in e
                   for e in guides["effects"]), guides["effects"]
        assert report["sources"]["cloudinary"]["families"]["user_guides"] > 0
    finally:
        server.stop()


def test_a_refused_changed_since_filter_names_its_keys(env, tmp_path, dam):
    data = demo()
    data["sources"]["sandbox"]["rest"]["list"]["since_format"] = "%d/%m/%Y"
    code, lines = check(tmp_path, data)
    assert code == 1
    found = [ln for ln in lines if ln.startswith("sources.sandbox.rest.list.since_param: ")]
    assert len(found) == 1, lines
    assert found[0].startswith(
        "sources.sandbox.rest.list.since_param: the DAM refused the changed-since filter "
        "(dateModified="
    )
    assert found[0].endswith(
        "answered HTTP 400: {\"error\": \"bad_request\", \"message\": \"unparsable date "
        f"'{found[0].split('dateModified=')[1].split(')')[0]}'\"}}. Check "
        "sources.sandbox.rest.list.params, sources.sandbox.rest.list.since_param, "
        "sources.sandbox.rest.list.since_format and sources.sandbox.rest.pagination (the "
        "parameters this request sent)"
    )
    assert "DAM source sandbox (rest): reachable, 200 records sampled (2 unreadable), " \
        "changed-since filter refused" in lines


SHAPES: dict[str, tuple[str, str, dict[str, Any]]] = {  # style → (path, items_path, paging)
    "offset": ("/api/offset/assets", "items", {"type": "offset"}),
    "cursor": ("/api/cursor/assets", "data", {"type": "cursor", "cursor_path": "paging.next"}),
    "header_cursor": ("/api/header_cursor/assets", "", {"type": "header_cursor"}),
    "link": ("/api/link/assets", "", {"type": "link_header"}),
}


def shaped_source(url: str, style: str, **list_overrides: Any) -> Any:
    from connector.config import parse_config

    path, items_path, paging = SHAPES[style]
    data = {
        "families": {"f": {"match": {"always": True}, "mapping": {"x": "name"}}},
        "sources": {"dam": {"type": "rest", "rest": {
            "base_url": url, "auth": {"type": "bearer", "token": "${T}"},
            "list": {"path": path, "items_path": items_path, "since_param": "updated_since",
                     "updated_field": "dateModified", **list_overrides},
            "pagination": {**paging, "page_size": 25},
        }}},
    }
    return parse_config(data, {"T": TOKEN}).sources[0]


@pytest.mark.parametrize("style", list(SHAPES))
def test_every_paging_shape_probes_clean(dam, style):
    from connector.structure.dam_probe import probe_source

    probed = probe_source(shaped_source(dam[1], style), 60)
    probed.close()
    assert probed.reachable and probed.sampled == 60 and probed.since_filter == "accepted"
    assert [f.severity for f in probed.findings] in ([], ["warning"]), probed.findings


@pytest.mark.parametrize("style", list(SHAPES))
def test_every_paging_shape_names_a_wrong_id_field(dam, style):
    from connector.structure.dam_probe import probe_source

    probed = probe_source(shaped_source(dam[1], style, id_field="asset.id"), 60)
    probed.close()
    assert [f.path for f in probed.findings] == ["sources.dam.rest.list.id_field"]
    assert "has the id field 'asset.id'; the first record has: id, " in \
        probed.findings[0].message


def test_the_graphql_example_passes_check_with_its_since_variable(env, monkeypatch):
    """examples/graphql.yaml against the sandbox's `graphql` shape: the probe lists through
    the GraphQL query and checks the changed-since variable (rest.graphql.since_variable)."""
    sandbox = DamSandbox(assets=80, shape="graphql", seed=3)
    server = sandbox.serve()
    try:
        monkeypatch.setenv("GRAPHQL_DAM_URL", server.url)
        monkeypatch.setenv("GRAPHQL_DAM_TOKEN", TOKEN)
        result = run("check", "-c", str(ROOT / "examples" / "graphql.yaml"), "--json")
        report = json.loads(result.output)
        problems = [f for f in report["findings"] if f["severity"] == "error"]
        assert (result.exit_code, problems) == (0, []), result.output
        probe = report["sources"]["graphql"]
        assert probe["reachable"] and probe["sampled"] > 0, probe
        assert probe["since_filter"] == "accepted", probe
        for family in ("packshots", "user_guides", "videos"):
            assert probe["families"][family] > 0, (family, probe["families"])
        # a query the API refuses: the GraphQL error, under the key to change
        data: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "graphql.yaml").read_text())
        gql = data["sources"]["graphql"]["rest"]["graphql"]
        gql["query"] = gql["query"].replace("downloadUrl", "downloadURL")
        result = run("check", "-c", write(env.parent, data), "--json")
        report = json.loads(result.output)
        assert result.exit_code == 1, result.output
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        assert [f["path"] for f in errors] == ["sources.graphql.rest.graphql.query"], errors
        assert 'Cannot query field "downloadURL" on type "Asset".' in errors[0]["message"]
    finally:
        server.stop()
