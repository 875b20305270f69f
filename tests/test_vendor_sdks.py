"""The vendors' own SDKs are the oracle: Cloudinary's `cloudinary` and Bynder's `bynder-sdk`
driven against the sandbox DAM's shape of that vendor, as a user would drive them against
the real service. What the SDK does not decide is checked against the vendor's public API
reference, cited in each test."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import cloudinary
import cloudinary.api
import cloudinary.exceptions
import cloudinary.search
import pytest
import requests
from bynder_sdk import BynderClient
from oauthlib.oauth2.rfc6749.errors import InvalidClientError

from sandbox.dam import DamSandbox

API_KEY, API_SECRET = "sandbox", "sandbox-dam-password"   # the sandbox's documented pair


# ---------------------------------------------------------------- Cloudinary


@pytest.fixture(scope="module")
def cld_sandbox() -> Iterator[tuple[DamSandbox, str]]:
    sb = DamSandbox(assets=1500, shape="cloudinary", seed=21, bad=False)
    server = sb.serve()
    try:
        yield sb, server.url
    finally:
        server.stop()


@pytest.fixture
def cld(cld_sandbox) -> Iterator[DamSandbox]:
    """The SDK configured for the sandbox (`upload_prefix` is the SDK's API base URL)."""
    sb, url = cld_sandbox
    saved = dict(cloudinary.config().__dict__)
    cloudinary.config(cloud_name="demo", api_key=API_KEY, api_secret=API_SECRET,
                      upload_prefix=url)
    sb.configure(inject_429=0, inject_500=0, cld_rate_limit_status=420)
    try:
        yield sb
    finally:
        cloudinary.config().__dict__.clear()
        cloudinary.config().__dict__.update(saved)


def image_ids(sb: DamSandbox) -> set[str]:
    """Ids Cloudinary lists as images: every asset but the videos (PDFs are images)."""
    return {i for i in sb.ids() if (sb.record(i) or {}).get("type") != "video"}


def test_cloudinary_sdk_lists_every_image_once_with_next_cursor(cld):
    """api.resources(type="upload", max_results=500) pages with next_cursor, newest first
    (https://cloudinary.com/documentation/admin_api#get_resources: `direction` defaults to
    desc by created_at; max_results at most 500; tags/context only when asked)."""
    expected = image_ids(cld)
    assert len(expected) >= 1200
    seen: list[str] = []
    public_ids: set[str] = set()    # unique, as Cloudinary keeps them
    cursor: str | None = None
    pages = 0
    while True:
        kw: dict[str, Any] = {"next_cursor": cursor} if cursor else {}
        res = cloudinary.api.resources(type="upload", max_results=500, **kw)
        pages += 1
        created = [r["created_at"] for r in res["resources"]]
        assert created == sorted(created, reverse=True)
        assert {"public_id", "format", "resource_type", "type", "created_at", "bytes",
                "width", "height", "secure_url", "asset_id"} <= set(res["resources"][0])
        assert "tags" not in res["resources"][0] and "context" not in res["resources"][0]
        assert res.rate_limit_allowed == 500 and res.rate_limit_remaining is not None
        seen.extend(r["asset_id"] for r in res["resources"])
        public_ids.update(r["public_id"] for r in res["resources"])
        cursor = res.get("next_cursor")
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == len(public_ids) and set(seen) == expected
    assert pages == math.ceil(len(expected) / 500)
    with pytest.raises(cloudinary.exceptions.BadRequest, match="max_results"):
        cloudinary.api.resources(type="upload", max_results=501)
    asked = cloudinary.api.resources(type="upload", max_results=3, tags=True, context=True,
                                     metadata=True)["resources"][0]
    assert asked["tags"] and asked["context"]["custom"]["sku"] and asked["metadata"]["sku"]


def test_cloudinary_sdk_gets_one_resource_by_public_id_and_by_asset_id(cld):
    """api.resource(public_id) → /resources/image/upload/<public_id>;
    api.resource_by_asset_id(id) → /resources/<asset_id>; unknown → NotFound
    (https://cloudinary.com/documentation/admin_api#get_details_of_a_single_resource_by_public_id)."""
    listed = cloudinary.api.resources(type="upload", max_results=1, direction="asc")
    first = listed["resources"][0]
    one = cloudinary.api.resource(first["public_id"])
    assert one["asset_id"] == first["asset_id"] and one["tags"] and one["context"]["custom"]
    by_id = cloudinary.api.resource_by_asset_id(first["asset_id"])
    assert by_id["public_id"] == first["public_id"]
    with pytest.raises(cloudinary.exceptions.NotFound, match="Error 404 - Resource not found"):
        cloudinary.api.resource("no/such/asset")


def test_cloudinary_sdk_search_on_last_updated_with_next_cursor(cld):
    """search.Search(): expression on last_updated / uploaded_at, sort_by, max_results,
    next_cursor (https://cloudinary.com/documentation/search_method ;
    https://cloudinary.com/documentation/search_expressions)."""
    everything: list[str] = []
    cursor = None
    while True:
        search = (cloudinary.search.Search().expression("resource_type:image")
                  .sort_by("last_updated", "asc").max_results(500).with_field("context"))
        if cursor:
            search = search.next_cursor(cursor)
        res = search.execute()
        assert res["total_count"] == len(image_ids(cld))
        everything.extend(r["asset_id"] for r in res["resources"])
        assert "context" in res["resources"][0] and "tags" not in res["resources"][0]
        cursor = res.get("next_cursor")
        if not cursor:
            break
    assert len(everything) == len(set(everything)) == len(image_ids(cld))
    # an edit bumps last_updated, not created_at/uploaded_at: the search finds it
    since = datetime.now(UTC) - timedelta(seconds=1)
    target = everything[10]
    before = cloudinary.api.resource_by_asset_id(target)
    cld.edit(target, {"tags": ["product", "edited"]})
    stamp = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    found = (cloudinary.search.Search()
             .expression(f'uploaded_at>"{stamp}" OR last_updated>="{stamp}"')
             .sort_by("last_updated", "asc").max_results(10).with_field("tags").execute())
    assert [r["asset_id"] for r in found["resources"]] == [target]
    assert found["resources"][0]["tags"] == ["product", "edited"]
    assert found["resources"][0]["created_at"] == before["created_at"]
    # the Admin list by creation date does not see it: created_at is unchanged
    created = cloudinary.api.resources(type="upload", start_at=stamp, max_results=10)
    assert target not in [r["asset_id"] for r in created["resources"]]
    with pytest.raises(cloudinary.exceptions.BadRequest, match="Unsupported search"):
        cloudinary.search.Search().expression("colour:red").execute()


def test_cloudinary_sdk_wrong_credentials_and_cloud_name(cld):
    """Basic auth api_key:api_secret; a wrong pair is 401 {"error": {"message": ...}},
    which the SDK raises as AuthorizationRequired
    (https://cloudinary.com/documentation/admin_api#authentication)."""
    with pytest.raises(cloudinary.exceptions.AuthorizationRequired,
                       match="Error 401 - Invalid api_key or api_secret"):
        cloudinary.api.resources(type="upload", api_secret="wrong")
    with pytest.raises(cloudinary.exceptions.AuthorizationRequired, match="cloud_name"):
        cloudinary.api.resources(type="upload", cloud_name="other")


@pytest.mark.parametrize("status", [420, 429])
def test_cloudinary_sdk_sees_rate_limits_as_rate_limited(cld_sandbox, cld, status):
    """The Admin API's rate-limit answer (420, or 429) with X-FeatureRateLimit-Limit,
    -Remaining and -Reset (https://cloudinary.com/documentation/admin_api#usage_limits):
    the SDK raises RateLimited."""
    _sb, url = cld_sandbox
    cld.configure(inject_429=1, cld_rate_limit_status=status, retry_after=0.001)
    with pytest.raises(cloudinary.exceptions.RateLimited,
                       match=f"Error {status} - Rate Limit Exceeded"):
        cloudinary.api.resources(type="upload", max_results=1)
    cld.configure(inject_429=1, retry_after=0)  # no window: the next call may follow at once
    raw = requests.get(f"{url}/v1_1/demo/resources/image/upload", auth=(API_KEY, API_SECRET))
    assert raw.status_code == status
    assert raw.json() == {"error": {"message": "Rate Limit Exceeded"}}
    assert raw.headers["X-FeatureRateLimit-Remaining"] == "0"
    assert raw.headers["X-FeatureRateLimit-Limit"] == "500"
    assert raw.headers["X-FeatureRateLimit-Reset"].endswith("GMT")
    ok = cloudinary.api.resources(type="upload", max_results=1)
    assert ok.rate_limit_reset_at is not None


# ---------------------------------------------------------------- Bynder


@pytest.fixture
def bynder(monkeypatch) -> Iterator[tuple[DamSandbox, BynderClient, Any]]:
    """The SDK only speaks https://<domain>/api: the sandbox over TLS, trusted through
    REQUESTS_CA_BUNDLE (the SDK's session is a requests.Session)."""
    sb = DamSandbox(assets=330, shape="bynder", seed=22, bad=False)
    server = sb.serve(tls=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
    client = BynderClient(domain=f"127.0.0.1:{server.port}", permanent_token="sandbox-dam-token")
    try:
        yield sb, client, server
    finally:
        server.stop()


def test_bynder_sdk_media_list_pages_by_date_modified(bynder):
    """asset_bank_client.media_list with limit, page, dateModified and orderBy
    (https://bynder.docs.apiary.io/#reference/assets/media-operations/retrieve-assets:
    limit ≤ 1000, page from 1, dateModified = modified after, a JSON array)."""
    sb, client, _server = bynder
    bank = client.asset_bank_client
    seen: list[str] = []
    page = 1
    while True:
        items = bank.media_list({"limit": 100, "page": page, "orderBy": "dateModified asc"})
        seen.extend(item["id"] for item in items)
        if len(items) < 100:
            break
        page += 1
    assert seen == list(sb.ids()) and page == 4
    newest = bank.media_list({"limit": 5, "page": 1, "orderBy": "dateModified desc"})
    assert [m["id"] for m in newest] == list(reversed(seen))[:5]
    since = datetime.now(UTC)
    target = seen[42]
    sb.edit(target, {"description": "edited in Bynder"})
    changed = bank.media_list({"limit": 100, "page": 1, "orderBy": "dateModified asc",
                               "dateModified": since.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert [m["id"] for m in changed] == [target]
    assert changed[0]["description"] == "edited in Bynder"
    assert sb.counters()["tls_handshakes"] >= 1


def test_bynder_sdk_media_info_and_download_url(bynder):
    """media_info(id) → /api/v4/media/{id}/; media_download_url(id) →
    /api/v4/media/{id}/download/ answering {"s3_file": URL}
    (https://bynder.docs.apiary.io/#reference/assets/specific-media-operations)."""
    sb, client, server = bynder
    bank = client.asset_bank_client
    asset_id = next(sb.ids())
    info = bank.media_info(asset_id)
    record = sb.record(asset_id)
    assert record is not None
    assert info["id"] == asset_id and info["dateModified"] == record["dateModified"]
    url = bank.media_download_url(asset_id)["s3_file"]
    assert url.startswith(server.url + "/media/")
    body = requests.get(url, verify=str(server.ca_bundle)).content
    assert len(body) == record["fileSize"]
    with pytest.raises(requests.HTTPError) as missing:
        bank.media_info("00000000-0000-4000-0000-000000000000")
    assert missing.value.response.status_code == 404
    wrong = BynderClient(domain=f"127.0.0.1:{server.port}", permanent_token="wrong")
    with pytest.raises(requests.HTTPError) as refused:
        wrong.asset_bank_client.media_list({"limit": 1})
    assert refused.value.response.status_code == 401


def test_bynder_sdk_client_credentials_token(monkeypatch):
    """OAuth2 client credentials: the SDK posts to /v6/authentication/oauth2/token and
    sends the token as a bearer (https://bynder.docs.apiary.io/#reference/oauth-2.0);
    a wrong secret is refused."""
    sb = DamSandbox(assets=30, shape="bynder", seed=23, bad=False, auth="any")
    server = sb.serve(tls=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
    try:
        def client(secret: str) -> BynderClient:
            return BynderClient(domain=f"127.0.0.1:{server.port}",
                                client_id="sandbox-dam-client", client_secret=secret,
                                client_credentials=True, scopes=["asset:read"])

        good = client("sandbox-dam-secret")
        token = good.fetch_token(code=None)
        assert token["token_type"] == "Bearer" and token["expires_in"] > 0
        assert len(good.asset_bank_client.media_list({"limit": 7, "page": 1})) == 7
        assert sb.counters()["tokens_issued"] == 1
        with pytest.raises(InvalidClientError):
            client("wrong").fetch_token(code=None)
    finally:
        server.stop()
