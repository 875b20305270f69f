"""The generic REST adapter over real HTTP against the sandbox DAM."""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from connector.config.model import (
    AuthConfig,
    ListEndpointConfig,
    MediaConfig,
    PaginationConfig,
    RestSourceConfig,
    SourceConfig,
)
from connector.dam.auth import DamAuthError
from connector.dam.base import BadRecord, DamError, PaginationLoopError, TransientDamError
from connector.dam.factory import build_source
from connector.dam.rest import RestSource
from connector.settings import Secret
from sandbox.dam import DamSandbox
from sandbox.server import BackgroundServer

# style → (list endpoint, pagination) for every pagination strategy the sandbox serves
STYLES: dict[str, tuple[ListEndpointConfig, PaginationConfig]] = {
    "bynder": (
        ListEndpointConfig("/api/v4/media/", since_param="dateModified", id_field="id",
                           updated_field="dateModified"),
        PaginationConfig(type="page_number", page_size=10),
    ),
    "cloudinary": (
        # the Search API on the last-update date, by GET (sandbox/dam_cloudinary.py)
        ListEndpointConfig("/v1_1/demo/resources/search", since_param="expression",
                           since_template='last_updated>="{since}"',
                           params={"sort_by[0][last_updated]": "asc",
                                   "with_field[0]": "context", "with_field[1]": "tags"},
                           items_path="resources", id_field="asset_id",
                           updated_field="last_updated.updated_at"),
        PaginationConfig(type="cursor", page_size=10, size_param="max_results",
                         cursor_param="next_cursor", cursor_path="next_cursor"),
    ),
    "page": (
        ListEndpointConfig("/api/page/assets", since_param="updated_since",
                           items_path="results", updated_field="dateModified"),
        PaginationConfig(type="page_number", page_size=10),
    ),
    "offset": (
        ListEndpointConfig("/api/offset/assets", since_param="updated_since",
                           items_path="items", updated_field="dateModified"),
        PaginationConfig(type="offset", page_size=10),
    ),
    "cursor": (
        ListEndpointConfig("/api/cursor/assets", since_param="updated_since",
                           items_path="data", updated_field="dateModified"),
        PaginationConfig(type="cursor", page_size=10, cursor_path="paging.next"),
    ),
    "header_cursor": (
        ListEndpointConfig("/api/header_cursor/assets", since_param="updated_since",
                           updated_field="dateModified"),
        PaginationConfig(type="header_cursor", page_size=10, cursor_header="X-Next-Cursor"),
    ),
    "link": (
        ListEndpointConfig("/api/link/assets", since_param="updated_since",
                           updated_field="dateModified"),
        PaginationConfig(type="link_header", page_size=10),
    ),
    "none": (
        ListEndpointConfig("/api/none/assets", since_param="updated_since",
                           items_path="assets", updated_field="dateModified"),
        PaginationConfig(type="none"),
    ),
}

BEARER = AuthConfig(type="bearer", token=Secret("sandbox-dam-token"))


def make_config(url: str, style: str = "bynder", **kw) -> RestSourceConfig:
    endpoint, pagination = STYLES[style]
    cloud = style == "cloudinary"
    defaults = dict(
        base_url=url,
        list=endpoint,
        auth=BEARER,
        pagination=pagination,
        get_path="/v1_1/demo/resources/{id}" if cloud else "/api/v4/media/{id}/",
        media_url_field="secure_url" if cloud else "original",
        filename_field="filename",
        folder_field="asset_folder" if cloud else "folder",
        tags_field="tags",
        requests_per_second=0,
        timeout=5,
        max_retries=3,
    )
    defaults.update(kw)
    return RestSourceConfig(**defaults)


def make_source(url: str, style: str = "bynder", **kw) -> RestSource:
    return RestSource("dam", make_config(url, style, **kw), backoff_base=0.01)


class Dispatcher:
    """One server for the module, a fresh sandbox per test (stopping a server costs 0.5 s)."""

    def __init__(self) -> None:
        self.current: DamSandbox | None = None

    def __call__(self, environ, start_response):
        assert self.current is not None
        return self.current.app(environ, start_response)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Dispatcher, str]]:
    dispatcher = Dispatcher()
    background = BackgroundServer(dispatcher).start()
    try:
        yield dispatcher, background.url
    finally:
        background.stop()


@pytest.fixture
def sandbox(server) -> tuple[DamSandbox, str]:
    dispatcher, url = server
    dispatcher.current = DamSandbox(assets=45, shape="bynder", seed=7, auth="any")
    return dispatcher.current, url


def collect(source, since=None):
    assets, bad, pages = [], [], 0
    for page in source.changed_since(since):
        pages += 1
        assets.extend(page.assets)
        bad.extend(page.bad)
    return assets, bad, pages


def requests_to(sb: DamSandbox, rule: str) -> int:
    return sb.counters()["by_path"].get(rule, 0)


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize("style", list(STYLES))
def test_every_pagination_style_streams_everything_once(sandbox, style):
    sb, url = sandbox
    source = make_source(url, style)
    assets, bad, pages = collect(source)
    bad_specs = {b["kind"]: b for b in sb.bad_records()}
    hidden = bad_specs["missing_id"]["id"]
    expected = [i for i in sb.ids() if i not in (hidden, bad_specs["bad_date"]["id"])]
    assert [a.id for a in assets] == expected          # stable (updated, id) order, no dupes
    assert len(bad) == 2
    assert pages == (1 if style == "none" else 5)      # 45 records, 10 per page
    first = assets[0]
    assert first.media_url and first.media_url.startswith(url + "/media/")
    assert first.filename and first.media_url.endswith("/" + first.filename)
    assert first.folder in ("products/packshots", "products/user-guides", "products/videos") \
        or first.folder.startswith("marketing/")
    assert first.tags and first.updated is not None and first.updated.tzinfo is not None


def test_page_number_requests_stop_at_the_short_page(sandbox):
    sb, url = sandbox
    collect(make_source(url, "bynder"))
    assert requests_to(sb, "/api/v4/media/") == 5        # 10+10+10+10+5, no extra request


def test_bad_records_come_back_in_the_page(sandbox):
    sb, url = sandbox
    _, bad, _ = collect(make_source(url, "bynder"))
    specs = {b["kind"]: b for b in sb.bad_records()}
    by_field = {b.field: b for b in bad}
    assert set(by_field) == {"id", "dateModified"}
    missing = by_field["id"]
    assert isinstance(missing, BadRecord) and missing.record_id is None
    assert "missing id" in missing.reason and missing.raw["name"] == specs["missing_id"]["name"]
    dated = by_field["dateModified"]
    assert dated.record_id == specs["bad_date"]["id"]
    assert "not-a-date" in dated.reason
    # reconciliation still sees the record whose id is known
    ids = set(make_source(url, "bynder").all_ids())
    assert specs["bad_date"]["id"] in ids


@pytest.mark.parametrize("style", ["cursor", "header_cursor", "link", "cloudinary"])
def test_repeated_cursor_is_a_loop_error(sandbox, style):
    sb, url = sandbox
    sb.configure(repeat_cursor=True)
    with pytest.raises(PaginationLoopError, match="twice"):
        collect(make_source(url, style))
    assert sb.counters()["requests"] == 2  # stopped at the first repeat


@pytest.mark.parametrize("style", ["bynder", "offset"])
def test_page_parameter_ignored_is_a_loop_error(sandbox, style):
    sb, url = sandbox
    sb.configure(ignore_page=True)
    with pytest.raises(PaginationLoopError, match="same page twice"):
        collect(make_source(url, style))


def test_next_link_to_another_host_is_not_followed(sandbox):
    sb, url = sandbox
    sb.configure(link_base="http://169.254.169.254")
    with pytest.raises(DamError, match="another host"):
        collect(make_source(url, "link"))
    assert sb.counters()["requests"] == 1


# ---------------------------------------------------------------- changed since


@pytest.mark.parametrize("style", ["bynder", "cloudinary", "offset", "link"])
def test_changed_since_returns_only_the_edited_assets(sandbox, style):
    sb, url = sandbox
    source = make_source(url, style)
    assert len(collect(source)[0]) == 43
    watermark = datetime.now(UTC)
    ids = list(sb.ids())
    edited = [ids[3], ids[20], ids[11]]
    for asset_id in edited:  # through the admin API, as a DAM user would
        r = requests.post(f"{url}/_sandbox/assets/{asset_id}", json={"description": "new"})
        assert r.status_code == 200
    assets, bad, _ = collect(source, watermark)
    assert [a.id for a in assets] == edited and bad == []     # in edit order
    assert all(a.updated >= watermark.replace(microsecond=0) for a in assets)
    desc = "context.custom.description" if style == "cloudinary" else "description"
    from connector.dam.paths import get_path
    assert {get_path(a.properties, desc) for a in assets} == {"new"}


@pytest.mark.parametrize("fmt", ["iso", "epoch", "epoch_ms", "%Y-%m-%d %H:%M:%S"])
def test_since_formats(sandbox, fmt):
    sb, url = sandbox
    endpoint = ListEndpointConfig("/api/offset/assets", since_param="updated_since",
                                  since_format=fmt, items_path="items",
                                  updated_field="dateModified")
    source = make_source(url, "offset", list=endpoint)
    watermark = datetime.now(UTC)
    target = list(sb.ids())[5]
    sb.edit(target, {"tags": ["product", "edited"]})
    assets, _, _ = collect(source, watermark)
    assert [a.id for a in assets] == [target]
    assert assets[0].tags == ("product", "edited")
    query = sb.request_log()[-1]["query"]
    assert "updated_since=" in query


def test_fixed_params_are_sent(sandbox):
    sb, url = sandbox
    endpoint = ListEndpointConfig("/api/v4/media/", params={"type": "image", "x": "1"},
                                  updated_field="dateModified")
    collect(make_source(url, "bynder", list=endpoint))
    assert "type=image" in sb.request_log()[0]["query"]


# ---------------------------------------------------------------- get, deletions, binary


def test_get_one_asset_and_a_deleted_one(sandbox):
    sb, url = sandbox
    source = make_source(url, "bynder")
    asset_id = list(sb.ids())[2]
    asset = source.get(asset_id)
    assert asset is not None and asset.id == asset_id
    assert asset.properties["property_sku"] == sb.record(asset_id)["property_sku"]
    assert requests.delete(f"{url}/_sandbox/assets/{asset_id}").status_code == 204
    assert source.get(asset_id) is None


@pytest.mark.parametrize("style", ["bynder", "cloudinary", "cursor"])
def test_deleted_since_and_all_ids(sandbox, style):
    sb, url = sandbox
    _endpoint, _ = STYLES[style]
    deletions = {
        "bynder": ListEndpointConfig("/api/v4/media/deleted/", since_param="since"),
        "cloudinary": ListEndpointConfig("/v1_1/demo/resources/deleted", since_param="start_at",
                                         items_path="resources", id_field="asset_id"),
        "cursor": ListEndpointConfig("/api/cursor/deleted", since_param="updated_since",
                                     items_path="data"),
    }[style]
    source = make_source(url, style, deletions=deletions)
    before = datetime.now(UTC)
    ids = list(sb.ids())
    sb.delete(ids[0])
    assert list(source.deleted_since(before)) == [ids[0]]
    watermark = datetime.now(UTC)
    gone = ids[1:13]  # more than one page of deletions
    for asset_id in gone:
        sb.delete(asset_id)
    got = list(source.deleted_since(watermark))
    # the watermark is sent to the second, so a deletion of that same second may come too
    assert got[-len(gone):] == gone and set(got) <= {ids[0], *gone}
    remaining = set(source.all_ids())
    hidden = next(b["id"] for b in sb.bad_records() if b["kind"] == "missing_id")
    assert remaining.isdisjoint([ids[0], *gone])
    assert remaining == set(sb.ids()) - {hidden} and len(remaining) >= 30


def test_deletions_not_configured_yields_nothing(sandbox):
    _, url = sandbox
    assert list(make_source(url, "bynder").deleted_since(None)) == []


def test_open_binary_streams_the_dam_file(sandbox):
    sb, url = sandbox
    source = make_source(url, "bynder")
    asset = next(a for a in collect(source)[0] if a.filename.endswith(".png"))
    with source.open_binary(asset) as stream:
        data = stream.read()
    assert data.startswith(b"\x89PNG") and len(data) == sb.record(asset.id)["fileSize"]


def test_open_binary_of_a_small_file_makes_no_temporary_file(sandbox, monkeypatch):
    # SafeDownloader.open keeps a body within its in-memory threshold in memory
    sb, url = sandbox
    source = make_source(url, "bynder")
    asset = collect(source)[0][0]

    def refuse(*_args, **_kw):
        raise AssertionError("a temporary file was made")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with source.open_binary(asset) as stream:
        assert len(stream.read()) == sb.record(asset.id)["fileSize"]


# ---------------------------------------------------------------- auth


AUTHS = {
    "bearer": AuthConfig(type="bearer", token=Secret("sandbox-dam-token")),
    "basic": AuthConfig(type="basic", username="sandbox", password=Secret("sandbox-dam-password")),
    "api_key": AuthConfig(type="api_key", header="X-API-Key", value=Secret("sandbox-dam-key")),
    "oauth2": AuthConfig(type="oauth2_client_credentials", token_url="/oauth/token",
                         client_id="sandbox-dam-client",
                         client_secret=Secret("sandbox-dam-secret")),
}
WRONG = {
    "bearer": AuthConfig(type="bearer", token=Secret("nope")),
    "basic": AuthConfig(type="basic", username="sandbox", password=Secret("nope")),
    "api_key": AuthConfig(type="api_key", header="X-API-Key", value=Secret("nope")),
    "oauth2": AuthConfig(type="oauth2_client_credentials", token_url="/oauth/token",
                         client_id="sandbox-dam-client", client_secret=Secret("nope")),
}


@pytest.mark.parametrize("kind", list(AUTHS))
def test_every_auth_kind(sandbox, kind):
    sb, url = sandbox
    sb.configure(auth=kind)  # the sandbox now accepts only this kind
    assets, _, _ = collect(make_source(url, "offset", auth=AUTHS[kind]))
    assert len(assets) == 43
    other = next(k for k in AUTHS if k != kind)
    with pytest.raises(DamAuthError) as err:
        collect(make_source(url, "offset", auth=AUTHS[other]))
    with pytest.raises(DamAuthError) as err2:
        collect(make_source(url, "offset", auth=WRONG[kind]))
    for e in (err, err2):
        text = str(e.value) + repr(e.value)
        assert "401" in text
        assert "nope" not in text and "sandbox-dam" not in text   # no secret in messages


def test_oauth2_token_cached_refreshed_before_expiry_and_on_401(sandbox):
    sb, url = sandbox
    sb.configure(auth="oauth2")
    now = [1000.0]
    source = RestSource("dam", make_config(url, "offset", auth=AUTHS["oauth2"]),
                        clock=lambda: now[0])
    collect(source)
    collect(source)
    assert sb.counters()["tokens_issued"] == 1                 # cached across 10 requests
    now[0] += 3600 - 30                                        # inside the refresh margin
    collect(source)
    counters = sb.counters()
    assert counters["tokens_issued"] == 2 and counters["401"] == 0   # renewed before expiry
    assert requests.post(f"{url}/_sandbox/tokens/expire").json()["expired"] == 2
    assets, _, _ = collect(source)
    counters = sb.counters()
    assert len(assets) == 43
    assert counters["401"] == 1 and counters["tokens_issued"] == 3   # refreshed on 401, once


def test_oauth2_bad_client_secret_is_an_auth_error_without_secret(sandbox):
    _sb, url = sandbox
    with pytest.raises(DamAuthError, match="refused the client credentials") as err:
        collect(make_source(url, "offset", auth=WRONG["oauth2"]))
    assert "nope" not in str(err.value)


# ---------------------------------------------------------------- rate limits, errors


def test_429_retry_after_is_honoured(sandbox):
    sb, url = sandbox
    sb.configure(inject_429=2, retry_after=1)
    started = time.monotonic()
    assets, _, _ = collect(make_source(url, "bynder"))
    assert len(assets) == 43
    counters = sb.counters()
    assert counters["429"] == 2 and counters["early_after_429"] == 0
    log = sb.request_log()
    for before, after in itertools.pairwise(log):
        if before["status"] == 429:
            assert after["t"] - before["t"] >= 1.0       # nothing sent before it elapsed
    assert time.monotonic() - started >= 2.0


def test_429_beyond_the_retry_budget_is_transient(sandbox):
    sb, url = sandbox
    sb.configure(inject_429=10, retry_after=0.1)
    with pytest.raises(TransientDamError, match="429") as err:
        collect(make_source(url, "bynder", max_retries=2))
    assert err.value.retry_after == pytest.approx(0.1)
    assert sb.counters()["429"] == 3                     # 1 try + 2 retries, then give up


def test_retry_after_too_long_is_not_slept_in_process(sandbox):
    sb, url = sandbox
    sb.configure(inject_429=1, retry_after=3600)
    slept: list[float] = []  # the source's sleeps (throttle, backoff), recorded, not slept
    source = RestSource("dam", make_config(url, "bynder"), backoff_base=0.01,
                        sleep=slept.append)
    with pytest.raises(TransientDamError) as err:
        collect(source)
    assert err.value.retry_after == 3600 and slept == []


def test_5xx_retried_then_transient(sandbox):
    sb, url = sandbox
    sb.configure(inject_500=2)
    assert len(collect(make_source(url, "bynder"))[0]) == 43
    assert sb.counters()["500"] == 2
    sb.configure(inject_500=50)
    with pytest.raises(TransientDamError, match="500"):
        collect(make_source(url, "bynder", max_retries=2))


def test_timeouts_are_retried_then_transient(sandbox):
    sb, url = sandbox
    sb.configure(latency=0.5)
    with pytest.raises(TransientDamError, match="Timeout"):
        collect(make_source(url, "bynder", timeout=0.1, max_retries=1))
    assert sb.counters()["api_requests"] == 2


def test_connection_refused_is_transient():
    with pytest.raises(TransientDamError, match="unreachable"):
        collect(make_source("http://127.0.0.1:9", "bynder", max_retries=1))


def test_request_budget_spaces_requests(sandbox):
    sb, url = sandbox
    sb.configure(rate_limit=5)                      # the DAM's own limit
    source = make_source(url, "bynder", requests_per_second=4,
                         pagination=PaginationConfig(type="page_number", page_size=10))
    collect(source)
    log = [e for e in sb.request_log() if e["rule"] == "/api/v4/media/"]
    assert len(log) == 5
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(log)]
    assert min(gaps) >= 0.25 - 0.03
    assert sb.counters()["429"] == 0                # the budget kept us under the DAM limit


def test_factory_builds_rest_source_with_media_cap(sandbox):
    _sb, url = sandbox
    source = build_source(SourceConfig(name="bynder", type="rest",
                                       rest=make_config(url, "bynder"),
                                       media=MediaConfig(max_bytes=100)))
    assert isinstance(source, RestSource) and source.name == "bynder"
    asset = collect(source)[0][0]
    from connector.dam.media import MediaTooLargeError
    with pytest.raises(MediaTooLargeError), source.open_binary(asset):
        pass
    assert "sandbox-dam-token" not in repr(source)
