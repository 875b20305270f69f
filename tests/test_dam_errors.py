"""DAM errors that name the cause: what was expected, what was found, which key to change."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from connector.config.model import (
    AuthConfig,
    ListEndpointConfig,
    PaginationConfig,
    RestSourceConfig,
)
from connector.dam.base import DamError, PaginationLoopError
from connector.dam.rest import RestSource
from connector.settings import Secret
from sandbox.dam import DamSandbox

BEARER = AuthConfig(type="bearer", token=Secret("sandbox-dam-token"))


@pytest.fixture(scope="module")
def dam() -> Iterator[tuple[DamSandbox, str]]:
    sandbox = DamSandbox(assets=30, shape="bynder", seed=3, auth="bearer", bad=False)
    server = sandbox.serve()
    try:
        yield sandbox, server.url
    finally:
        server.stop()


def link_source(url: str, **list_kw: str) -> RestSource:
    endpoint = ListEndpointConfig(
        "/api/link/assets", since_param="updated_since", updated_field="dateModified",
        **list_kw,
    )
    config = RestSourceConfig(
        base_url=url, list=endpoint, auth=BEARER,
        pagination=PaginationConfig(type="link_header", page_size=10),
        requests_per_second=0, timeout=5, max_retries=0,
    )
    return RestSource("mydam", config, backoff_base=0.01)


def test_a_wrong_id_field_names_the_field_and_lists_the_record_fields(dam):
    sandbox, url = dam
    source = link_source(url, id_field="uuid")
    with pytest.raises(DamError) as caught:
        for _ in source.changed_since(None):
            pass
    assert not isinstance(caught.value, PaginationLoopError)
    keys = ", ".join(sandbox.record(next(sandbox.ids())) or {})
    assert str(caught.value) == (
        f"mydam: none of the 10 records listed by {url}/api/link/assets has the id field "
        f"'uuid'; the first record has: {keys}. Set sources.mydam.rest.list.id_field to "
        "the field that holds the asset id"
    )


def test_a_right_id_field_still_lists_everything(dam):
    sandbox, url = dam
    ids = [a.id for page in link_source(url).changed_since(None) for a in page.assets]
    assert ids == list(sandbox.ids())


def test_a_wrong_items_path_says_where_the_lists_are(dam):
    _, url = dam
    endpoint = ListEndpointConfig("/api/cursor/assets", items_path="items", id_field="id")
    config = RestSourceConfig(
        base_url=url, list=endpoint, auth=BEARER,
        pagination=PaginationConfig(type="cursor", page_size=10, cursor_path="paging.next"),
        requests_per_second=0, timeout=5, max_retries=0,
    )
    with pytest.raises(DamError) as caught:
        list(RestSource("mydam", config).changed_since(None))
    assert str(caught.value) == (
        f"mydam: expected the list of records at 'items' in the response of "
        f"{url}/api/cursor/assets, found nothing; the body's lists are at: data. Set "
        'sources.mydam.rest.list.items_path to the path of the list ("" when the body is '
        "the list)"
    )


# ---------------------------------------------------------------- config variants


def config_errors(rest: dict[str, object]) -> list[str]:
    from connector.config import ConfigError, parse_config

    data = {
        "families": {"f": {"match": {"always": True}, "mapping": {"x": "y"}}},
        "sources": {"dam": {"type": "rest", "rest": {
            "base_url": "http://127.0.0.1:9", "list": {"path": "/a"}, **rest}}},
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(data, {"T": "secret"})
    return list(caught.value.errors)


@pytest.mark.parametrize(("rest", "message"), [
    ({"pagination": {"type": "link_header", "foo": 1}},
     'sources.dam.rest.pagination.foo: unknown key (allowed for pagination type '
     '"link_header": page_size, size_param, type)'),
    ({"pagination": {"type": "link_header", "page_sise": 5}},
     'sources.dam.rest.pagination.page_sise: unknown key; did you mean "page_size"?'),
    ({"pagination": {"foo": 1}},
     'sources.dam.rest.pagination.foo: unknown key (allowed for pagination type "none": '
     "type)"),
    ({"auth": {"type": "bearer", "token": "${T}", "tokn": "x"}},
     'sources.dam.rest.auth.tokn: unknown key; did you mean "token"?'),
    ({"auth": {"type": "basic", "username": "u", "password": "${T}", "secret": "x"}},
     'sources.dam.rest.auth.secret: unknown key (allowed for auth type "basic": password, '
     "type, username)"),
])
def test_unknown_keys_list_only_the_keys_of_the_chosen_variant(rest, message):
    assert config_errors(rest) == [message]


# ---------------------------------------------------------------- audited messages


def test_refused_credentials_name_the_auth_keys(dam):
    _, url = dam
    config = RestSourceConfig(
        base_url=url, list=ListEndpointConfig("/api/link/assets"),
        auth=AuthConfig(type="bearer", token=Secret("wrong-token")),
        requests_per_second=0, timeout=5, max_retries=0,
    )
    with pytest.raises(DamError) as caught:
        list(RestSource("mydam", config).changed_since(None))
    assert str(caught.value) == (
        f"mydam: the DAM refused our credentials (HTTP 401) on {url}/api/link/assets: "
        "check sources.mydam.rest.auth.token"
    )
    assert "wrong-token" not in str(caught.value)


def test_an_ignored_page_parameter_names_the_pagination_key(dam):
    _, url = dam
    config = RestSourceConfig(
        base_url=url, list=ListEndpointConfig("/api/page/assets", items_path="results"),
        auth=BEARER, requests_per_second=0, timeout=5, max_retries=0,
        pagination=PaginationConfig(type="page_number", page_size=10, page_param="p"),
    )
    with pytest.raises(PaginationLoopError) as caught:
        list(RestSource("mydam", config).changed_since(None))
    assert str(caught.value).startswith("mydam: the DAM returned the same page twice")
    assert str(caught.value).endswith(
        "; the DAM does not read the paging parameter: check "
        "sources.mydam.rest.pagination.page_param"
    )


def test_an_answer_that_is_not_json_names_the_url_key(dam):
    sandbox, url = dam
    record = sandbox.record(next(sandbox.ids())) or {}
    path = f"/media/{record['id']}/{record['filename']}"
    content_type = requests.get(url + path, timeout=5).headers["Content-Type"]
    config = RestSourceConfig(
        base_url=url, list=ListEndpointConfig(path),
        auth=BEARER, requests_per_second=0, timeout=5, max_retries=0,
    )
    with pytest.raises(DamError) as caught:
        list(RestSource("mydam", config).changed_since(None))
    assert str(caught.value) == (
        f"mydam: expected JSON from {url}{path}, got Content-Type {content_type!r}: "
        "check sources.mydam.rest.base_url and sources.mydam.rest.list.path"
    )


def test_a_missing_hot_folder_names_the_path_key(tmp_path):
    from connector.config.model import FolderSourceConfig
    from connector.dam.folder import FolderSource

    source = FolderSource("drop", FolderSourceConfig(path=str(tmp_path / "nope")))
    with pytest.raises(DamError) as caught:
        list(source.changed_since(None))
    assert str(caught.value) == (
        f"drop: folder {str(tmp_path / 'nope')!r} does not exist: check "
        "sources.drop.folder.path (a relative path is relative to the config file)"
    )


def test_a_sync_with_a_wrong_id_field_fails_with_that_reason_and_quarantines_nothing(
    dam, namespace
):
    """Through the pipeline's fetch step: one clear run error, not 100 quarantine rows and
    a `PaginationLoopError`."""
    from connector import pipeline as steps
    from connector.pipeline import run_report
    from tests.pipeline_fakes import FakePim, make_config, make_services

    _, url = dam
    services, queue = make_services(make_config(), None, FakePim())  # type: ignore[arg-type]
    services._sources["dam"] = link_source(url, id_field="uuid")
    started = steps.start_run("dam", "test", services=services)
    queue.drain()
    report = run_report(started.run_id, services=services)
    assert report["state"] == "failed", report
    text = json.dumps(report)
    assert "has the id field 'uuid'" in text and "sources.mydam.rest.list.id_field" in text
    assert "same page twice" not in text
    assert services.quarantine.count("dam") == 0


def test_a_wrong_list_path_names_the_path_keys(dam):
    _, url = dam
    config = RestSourceConfig(
        base_url=url, list=ListEndpointConfig("/api/v4/medias/"), auth=BEARER,
        requests_per_second=0, timeout=5, max_retries=0,
    )
    with pytest.raises(DamError) as caught:
        list(RestSource("mydam", config).changed_since(None))
    assert str(caught.value).startswith(f"mydam: {url}/api/v4/medias/ answered HTTP 404: ")
    assert str(caught.value).endswith(
        ". Check sources.mydam.rest.base_url and sources.mydam.rest.list.path"
    )
    assert caught.value.key == "sources.mydam.rest.list.path"
