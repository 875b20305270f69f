"""The sandbox DAM itself: determinism, shapes, admin endpoints, auth, scale."""

from __future__ import annotations

import base64
import collections
import tracemalloc
from collections.abc import Iterator
from datetime import datetime

import pytest
import requests

from sandbox.dam import DamSandbox
from sandbox.dam_data import BAD_KINDS, Catalog
from sandbox.server import BackgroundServer

BEARER = {"Authorization": "Bearer sandbox-dam-token"}
BASIC = {"Authorization": "Basic " + base64.b64encode(b"sandbox:sandbox-dam-password").decode()}


class Dispatcher:
    def __init__(self) -> None:
        self.current: DamSandbox | None = None

    def __call__(self, environ, start_response):
        assert self.current is not None
        return self.current.app(environ, start_response)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Dispatcher, str]]:
    dispatcher = Dispatcher()
    background = BackgroundServer(dispatcher).start()
    yield dispatcher, background.url
    background.stop()


def use(server, **kw) -> tuple[DamSandbox, str]:
    dispatcher, url = server
    dispatcher.current = DamSandbox(**kw)
    return dispatcher.current, url


def all_bynder(url: str, limit: int = 100, **params) -> list[dict]:
    out, page = [], 1
    while True:
        r = requests.get(f"{url}/api/v4/media/", params={"page": page, "limit": limit, **params},
                         headers=BEARER)
        assert r.status_code == 200, r.text
        out.extend(r.json())
        if len(r.json()) < limit:
            return out
        page += 1


def test_deterministic_per_seed(server):
    a = [DamSandbox(assets=50, seed=4).record(i) for i in list(DamSandbox(assets=50, seed=4).ids())]
    b = [DamSandbox(assets=50, seed=4).record(i) for i in list(DamSandbox(assets=50, seed=4).ids())]
    c = list(DamSandbox(assets=50, seed=5).ids())
    assert a == b and [r["id"] for r in a] != c


def test_realistic_families_and_record_shape(server):
    _sb, url = use(server, assets=400, seed=1, shape="bynder")
    records = all_bynder(url)
    assert len(records) == 400  # including the record that deliberately lacks its id
    hidden = [r for r in records if "id" not in r]
    assert len(hidden) == 1
    folders = collections.Counter(r["folder"].split("/")[0] for r in records)
    marketing = folders["marketing"]
    assert 5 <= marketing <= 40                          # ~5 % non-product
    kinds = collections.Counter(r["folder"] for r in records if r["folder"].startswith("products"))
    assert set(kinds) == {"products/packshots", "products/user-guides", "products/videos"}
    for r in records:
        if r["folder"] == "products/packshots":
            assert r["filename"] == f"{r['name']}.png" and r["property_colors"]
            assert r["filename"].startswith(r["property_sku"] + "_")
            assert "product" in r["tags"] and r["property_product_asset"] is True
        elif r["folder"] == "products/user-guides":
            assert r["filename"].endswith(f"_user_guide_{r['language']}.pdf")
        elif r["folder"] == "products/videos":
            assert r["extension"] == "mp4"
        else:
            assert "product" not in r["tags"] and r["property_product_asset"] is False
        assert r["original"].startswith(url + "/media/") or r["original"].startswith("://")


def test_sorted_by_updated_then_id_and_filtered(server):
    sb, url = use(server, assets=60, seed=2, auth="any", bad=False)
    ids = list(sb.ids())
    sb.edit(ids[0], {"tags": ["product", "x"]})
    sb.edit(ids[1], {})
    records = all_bynder(url, limit=7)
    # compare instants, not strings: "…:09Z" sorts after "…:09.001Z" as text
    keys = [
        (datetime.fromisoformat(r["dateModified"].replace("Z", "+00:00")), r["id"])
        for r in records
    ]
    assert keys == sorted(keys) and len(keys) == 60
    assert [r["id"] for r in records[-2:]] == ids[:2]
    since = records[-2]["dateModified"]
    assert [r["id"] for r in all_bynder(url, dateModified=since)] == ids[:2]


def test_bad_records_listed(server):
    sb, url = use(server, assets=100, seed=9)
    bad = requests.get(f"{url}/_sandbox/bad").json()
    assert [b["kind"] for b in bad] == [k for k, _, _ in BAD_KINDS]
    by_kind = {b["kind"]: sb.record(b["id"]) for b in bad}
    assert by_kind["unknown_language"]["language"] == "xx_XX"
    assert isinstance(by_kind["non_numeric_duration"]["duration"], str)
    assert len(by_kind["long_description"]["description"]) > 255
    assert by_kind["broken_original"]["original"].startswith("://")
    assert by_kind["bad_date"]["dateModified"] == "not-a-date"


def test_admin_add_edit_delete_over_http(server):
    _sb, url = use(server, assets=10, seed=1)
    r = requests.post(f"{url}/_sandbox/assets", json={"filename": "zed-cap_1_front.png",
                                                      "property_sku": "zed-cap"})
    assert r.status_code == 201
    new = r.json()
    got = requests.get(f"{url}/api/v4/media/{new['id']}/", headers=BEARER).json()
    assert got["property_sku"] == "zed-cap" and got["original"].endswith("/zed-cap_1_front.png")
    before = got["dateModified"]
    edited = requests.post(f"{url}/_sandbox/assets/{new['id']}", json={"description": "d"}).json()
    assert edited["description"] == "d" and edited["dateModified"] > before
    assert requests.delete(f"{url}/_sandbox/assets/{new['id']}").status_code == 204
    assert requests.get(f"{url}/api/v4/media/{new['id']}/", headers=BEARER).status_code == 404
    assert requests.delete(f"{url}/_sandbox/assets/{new['id']}").status_code == 404
    deleted = requests.get(f"{url}/api/v4/media/deleted/", headers=BEARER).json()
    assert [d["id"] for d in deleted] == [new["id"]]
    r = requests.post(f"{url}/_sandbox/settings", json={"nonsense": 1})
    assert r.status_code == 400 and "nonsense" in r.json()["message"]


def test_media_bytes_change_with_the_asset_version(server):
    sb, url = use(server, assets=10, seed=1, bad=False)
    asset_id = next(sb.ids())
    rec = sb.record(asset_id)
    media = f"{url}/media/{asset_id}/{rec['filename']}"
    first = requests.get(media).content
    assert requests.get(media).content == first and len(first) == rec["fileSize"]
    sb.edit(asset_id, {"description": "new version"})
    assert requests.get(media).content != first
    assert requests.get(f"{url}/media/{asset_id}/other.png").status_code == 404


def test_shapes_pick_their_auth(server):
    sb, url = use(server, assets=10, shape="bynder")
    assert requests.get(f"{url}/api/v4/media/", headers=BASIC).status_code == 401
    assert requests.get(f"{url}/api/v4/media/", headers=BEARER).status_code == 200
    sb, url = use(server, assets=10, shape="cloudinary")
    assert requests.get(f"{url}/v1_1/demo/resources/image", headers=BEARER).status_code == 401
    body = requests.get(f"{url}/v1_1/demo/resources/image", headers=BASIC,
                        params={"max_results": 4, "context": "true"}).json()
    assert len(body["resources"]) == 4 and body["next_cursor"]
    assert body["resources"][0]["context"]["custom"]["sku"]
    assert sb.counters()["401"] == 1


def test_oauth_token_endpoint(server):
    _sb, url = use(server, assets=5, auth="oauth2", token_ttl=60)
    bad = requests.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"},
                        auth=("sandbox-dam-client", "wrong"))
    assert bad.status_code == 401
    r = requests.post(f"{url}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": "sandbox-dam-client",
        "client_secret": "sandbox-dam-secret"})
    token = r.json()["access_token"]
    assert r.json()["expires_in"] == 60
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{url}/api/none/assets", headers=headers).status_code == 200
    requests.post(f"{url}/_sandbox/tokens/expire")
    assert requests.get(f"{url}/api/none/assets", headers=headers).status_code == 401


def test_429_injection_and_rate_limit_counters(server):
    _sb, url = use(server, assets=5, auth="none")
    requests.post(f"{url}/_sandbox/settings", json={"inject_429": 1, "retry_after": 2})
    r = requests.get(f"{url}/api/none/assets")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert requests.get(f"{url}/api/none/assets").status_code == 429   # too early
    counters = requests.get(f"{url}/_sandbox/counters").json()
    assert counters["429"] == 2 and counters["early_after_429"] == 1
    _sb, url = use(server, assets=5, auth="none", rate_limit=3)
    statuses = [requests.get(f"{url}/api/none/assets").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]


def test_bad_parameters_are_400(server):
    _sb, url = use(server, assets=5, auth="none")
    for params in ({"limit": "x"}, {"limit": 0}, {"page": -1}, {"dateModified": "yesterday"}):
        r = requests.get(f"{url}/api/v4/media/", params=params)
        assert r.status_code == 400, params
    r = requests.get(f"{url}/api/cursor/assets", params={"cursor": "%%%"})
    assert r.status_code == 400


def test_hundred_thousand_assets_lazily(server, monkeypatch):
    generated: list[int] = []  # indices whose record was built (laziness, without a clock)
    build = Catalog.record

    def counting(catalog: Catalog, i: int) -> dict:
        generated.append(i)
        return build(catalog, i)

    monkeypatch.setattr(Catalog, "record", counting)
    tracemalloc.start()
    sb, url = use(server, assets=100_000, seed=1, auth="none")
    size, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < 20 * 1024 * 1024 and generated == []  # nothing built up front
    last = requests.get(f"{url}/api/v4/media/", params={"page": 1000, "limit": 100}).json()
    assert len(last) == 100
    assert len(generated) < 1000  # the last page builds its own records, not the catalog
    assert requests.get(f"{url}/api/v4/media/", params={"page": 1001, "limit": 100}).json() == []
    off = requests.get(f"{url}/api/offset/assets", params={"offset": 99_990, "limit": 50}).json()
    assert off["total"] == 100_000 and len(off["items"]) == 10
    target = off["items"][0]["id"]
    sb.edit(target, {"description": "moved"})
    assert requests.get(f"{url}/api/offset/assets",
                        params={"offset": 99_999, "limit": 5}).json()["items"][0]["id"] == target


def test_the_nested_shape_of_the_quickstart(server):
    """docs/quickstart.md's DAM: `{"data": [...]}` paged by Link headers, `modified_after`,
    dotted ids, facts under metadata.fields, file URLs relative to the server's root."""
    sb, url = use(server, assets=30, shape="nested", seed=1)
    assert requests.get(f"{url}/api/v2/assets", headers=BASIC).status_code == 401
    seen: list[dict] = []
    next_url: str | None = f"{url}/api/v2/assets?limit=7"
    while next_url:
        r = requests.get(next_url, headers=BEARER)
        assert r.status_code == 200, r.text
        seen.extend(r.json()["data"])
        next_url = r.links.get("next", {}).get("url")
    ids = [rec.get("id") for rec in seen]
    assert len(seen) == 30 and ids.count(None) == 1           # the record without an id
    first = seen[0]
    assert first["id"] == "assets." + next(sb.ids()).lower()
    assert set(first["metadata"]["fields"]) >= {"sku", "title", "product_asset"}
    assert not first["file"]["url"].startswith(("/", "http"))
    assert requests.get(f"{url}/{first['file']['url']}").status_code == 200
    later = requests.get(f"{url}/api/v2/assets", headers=BEARER,
                         params={"modified_after": seen[20]["modified_at"]}).json()["data"]
    assert [rec.get("id") for rec in later] == ids[20:]
    colors = [rec["metadata"]["fields"].get("colors") for rec in seen]
    assert any(isinstance(c, list) and c for c in colors)    # a JSON list, not "a,b"
