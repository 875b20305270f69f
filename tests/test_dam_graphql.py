"""GraphQL DAMs through the generic adapter (`rest.graphql`, connector/dam/graphql.py),
over HTTP against the sandbox DAM's `graphql` shape (sandbox/dam_graphql.py): Relay pages,
the changed-since variable, `errors` in a 200 answer, a cursor that never ends, the single
get, the config's checks; then examples/graphql.yaml synced through the pipeline into the
sandbox PIM, and a run stopped by an `errors` answer that loses nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import ConfigError, parse_config
from connector.config.model import Config, PimConfig
from connector.dam.base import DamError, NoSingleGetError, PaginationLoopError
from connector.dam.factory import build_source
from connector.dam.graphql import GraphQLError, GraphQLSource, items_at
from connector.pim.client import AkeneoClient
from connector.pipeline import run_report, start_run
from connector.pipeline.ops import watermark
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.structure import apply_structure, load_structure_file
from connector.transform.codes import asset_code
from sandbox.dam import DamSandbox
from sandbox.harness import SandboxSecrets
from tests.pipeline_fakes import QueueEnqueuer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOKEN = "sandbox-dam-token"


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "graphql.yaml").read_text())
    return data


def config_of(url: str, data: dict[str, Any] | None = None, **graphql: Any) -> Config:
    data = copy.deepcopy(data or example())
    data["sources"]["graphql"]["rest"]["graphql"].update(graphql)
    return parse_config(data, {"GRAPHQL_DAM_URL": url, "GRAPHQL_DAM_TOKEN": TOKEN})


def source_of(url: str, **graphql: Any) -> GraphQLSource:
    src = build_source(config_of(url, **graphql).source("graphql"))
    assert isinstance(src, GraphQLSource)
    return src


@pytest.fixture
def dam() -> Iterator[tuple[DamSandbox, str]]:
    sb = DamSandbox(assets=250, shape="graphql", seed=21, bad=False)
    server = sb.serve()
    yield sb, server.url
    server.stop()


def listed(src: GraphQLSource, since: Any = None) -> tuple[list[str], int]:
    ids, bad = [], 0
    for page in src.changed_since(since):
        ids += [a.id for a in page.assets]
        bad += len(page.bad)
    return ids, bad


def test_pages_through_the_relay_cursor_over_http(dam):
    sb, url = dam
    src = source_of(url, page_size=40)
    ids, bad = listed(src)
    assert (len(ids), len(set(ids)), bad) == (250, 250, 0)
    assert set(ids) == set(sb.ids())
    log = [e for e in sb.request_log() if e["path"] == "/graphql"]
    assert [e["method"] for e in log] == ["POST"] * 7  # ceil(250 / 40) pages, no extra
    # the same listing through `nodes` instead of `edges[*].node`
    query = (
        "query Assets($first: Int, $after: String) {\n"
        "  assets(first: $first, after: $after) {\n"
        "    pageInfo { endCursor hasNextPage }\n"
        "    nodes { id modifiedAt filename downloadUrl }\n"
        "  }\n"
        "}"
    )
    nodes = source_of(url, page_size=100, items_path="data.assets.nodes", query=query,
                      since_variable=None)
    assert listed(nodes)[0] == ids
    src.close(), nodes.close()


def test_the_since_variable_lists_only_what_changed(dam):
    sb, url = dam
    src = source_of(url, page_size=40)
    everything = [a for p in src.changed_since(None) for a in p.assets]
    newest = max(a.updated for a in everything if a.updated)
    edited = everything[3].id
    sb.edit(edited, {"description": "edited"})
    ids, _bad = listed(src, newest + timedelta(seconds=1))
    assert ids == [edited]
    src.close()


def test_errors_in_a_200_answer_are_a_clear_permanent_error(dam):
    sb, url = dam
    sb.configure(graphql_errors=1, graphql_errors_skip=1)
    src = source_of(url, page_size=100)
    pages = src.changed_since(None)
    assert len(next(pages).assets) > 90
    with pytest.raises(GraphQLError) as err:
        next(pages)
    assert str(err.value) == (
        f"graphql: the GraphQL API at {url}/graphql answered HTTP 200 with 1 error(s): "
        "injected failure: the assets resolver timed out. Check "
        "sources.graphql.rest.graphql.query and sources.graphql.rest.graphql.variables"
    )
    assert err.value.key == "sources.graphql.rest.graphql.query"
    src.close()


def test_an_unknown_field_names_the_error_its_location_and_the_key(dam):
    _sb, url = dam
    query = example()["sources"]["graphql"]["rest"]["graphql"]["query"]
    src = source_of(url, query=query.replace("{ sku colors", "{ skuu colors"))
    with pytest.raises(GraphQLError) as err:
        listed(src)
    assert 'answered HTTP 200 with 1 error(s): Cannot query field "skuu" on type "Asset".' \
        in str(err.value)
    src = source_of(url, query=query.replace("  assets(", "  assetz("))
    with pytest.raises(GraphQLError, match=r'Cannot query field "assetz" on type "Query"\. '
                       r"\(line 2:3\)"):
        listed(src)


def test_a_cursor_that_never_ends_is_a_pagination_loop_error(dam):
    sb, url = dam
    sb.configure(repeat_cursor=True)
    src = source_of(url, page_size=40)
    with pytest.raises(PaginationLoopError) as err:
        listed(src)
    assert str(err.value) == (
        "graphql: the DAM handed out the page token/URL 'YWZ0ZXI6MTc2NzIyNzk0MDAwMA' "
        "twice (after 2 pages); stopping instead of looping; the API does not read the "
        "cursor: check that sources.graphql.rest.graphql.query passes $after to the "
        "connection's `after` argument (sources.graphql.rest.graphql.cursor_variable) and "
        "that sources.graphql.rest.graphql.cursor_path is the connection's "
        "pageInfo.endCursor"
    )
    assert err.value.key == "sources.graphql.rest.graphql.cursor_variable"


def test_a_wrong_has_next_path_is_an_error_not_a_last_page(dam):
    _sb, url = dam
    src = source_of(url, page_size=40, has_next_path="data.assets.pageInfo.hasNext")
    with pytest.raises(DamError) as err:
        listed(src)
    assert str(err.value) == (
        "graphql: expected true or false at 'data.assets.pageInfo.hasNext' of the GraphQL "
        "answer, found nothing: set sources.graphql.rest.graphql.has_next_path to the "
        "connection's pageInfo.hasNextPage (and ask for it in the query)"
    )


def test_one_asset_by_the_get_query(dam):
    sb, url = dam
    src = source_of(url)
    some = next(i for i in sb.ids() if i)
    asset = src.get(some)
    assert asset is not None and asset.id == some and asset.media_url
    assert src.get("no-such-asset") is None
    src.close()
    without = source_of(url, get_query=None, get_item_path=None)
    with pytest.raises(NoSingleGetError) as err:
        without.get(some)
    assert str(err.value) == (
        "source 'graphql' has no single-asset query: set sources.graphql.rest.graphql."
        "get_query (a query with an $id variable) and sources.graphql.rest.graphql."
        "get_item_path"
    )


def test_items_path_with_a_star_takes_every_edge():
    body = {"data": {"a": {"edges": [{"node": {"id": 1}}, {"node": {"id": 2}}, {}]}}}
    assert items_at(body, "data.a.edges[*].node") == [{"id": 1}, {"id": 2}, None]
    assert items_at(body, "data.a.edges") == body["data"]["a"]["edges"]
    assert items_at(body, "data.b[*].node") is not None  # MISSING: reported by the adapter


def test_the_config_refuses_undeclared_variables_and_rest_only_keys():
    data = example()
    data["sources"]["graphql"]["rest"]["list"]["since_param"] = "updatedSince"
    with pytest.raises(ConfigError) as err:
        config_of("http://x", data, since_variable="modifiedSince", page_size_variable="limit")
    text = str(err.value)
    assert ("sources.graphql.rest.graphql.since_variable: the query declares no "
            "$modifiedSince: declare it (e.g. $modifiedSince: String) or set since_variable "
            "to another variable") in text
    assert ("sources.graphql.rest.graphql.page_size_variable: the query declares no $limit: "
            "declare it (e.g. $limit: String) or set page_size_variable to another variable "
            "(null: none)") in text
    with pytest.raises(ConfigError, match=r"sources\.graphql\.rest\.list\.since_param: not "
                       r"used with graphql: set graphql\.since_variable instead"):
        config_of("http://x", data)


# ---------------------------------------------------------------- through the pipeline


@pytest.fixture
def pim(pim_server: Any, namespace: str) -> Iterator[AkeneoClient]:
    sandbox, server = pim_server
    sandbox.reset()
    limits = PimConfig(requests_per_second=10_000, option_writes_per_second=10_000)
    client = AkeneoClient(SandboxSecrets().credentials(server.url), limits, get_redis(),
                          Keys(namespace))
    assert apply_structure(client, load_structure_file(EXAMPLES / "structure.yaml")).ok
    yield client
    client.close()


def test_the_example_syncs_into_the_pim_and_an_errors_answer_loses_nothing(
    namespace: str, pim: AkeneoClient
) -> None:
    """An `errors` answer on the second page fails the run (not retried: a GraphQL error
    does not heal by itself) and keeps the watermark where it was; the next run lists the
    same assets again and every one reaches the PIM."""
    sb = DamSandbox(assets=120, shape="graphql", seed=22, bad=False)
    server = sb.serve()
    try:
        data = example()
        data["pim"]["requests_per_second"] = 10_000
        for key in ("schedule", "reconcile_schedule"):
            data["sources"]["graphql"].pop(key)
        config = config_of(server.url, data, page_size=50)
        enqueuer = QueueEnqueuer()
        services = Services(config, get_redis(), Keys(namespace), client=pim,
                            enqueuer=enqueuer)
        enqueuer.services = services

        sb.configure(graphql_errors=1, graphql_errors_skip=1)
        failed = start_run("graphql", "test", services=services)
        assert failed.started and failed.run_id, failed.message
        enqueuer.drain()
        report = run_report(failed.run_id, services=services)
        assert report["state"] == "failed", report
        assert report["error"] == (
            f"fetch failed: GraphQLError: graphql: the GraphQL API at {server.url}/graphql "
            "answered HTTP 200 with 1 error(s): injected failure: the assets resolver timed "
            "out. Check sources.graphql.rest.graphql.query and "
            "sources.graphql.rest.graphql.variables"
        ), report
        assert watermark("graphql", services=services) is None

        started = start_run("graphql", "test", services=services)
        assert started.started and started.run_id, started.message
        enqueuer.drain()
        report = run_report(started.run_id, services=services)
        assert report["state"] == "succeeded", report
        ids = [i for i in sb.ids() if i]
        landed = 0
        for dam_id in ids:
            rec = sb.record(dam_id)
            assert rec is not None
            family = {"image": "packshots", "document": "user_guides",
                      "video": "videos"}[rec["type"]]
            if rec.get("property_product_asset"):
                assert pim.get_asset(family, asset_code(dam_id)) is not None, dam_id
                landed += 1
        assert landed > 100
        assert watermark("graphql", services=services) is not None
        services.close()
    finally:
        server.stop()


def test_a_listing_resumes_after_its_cursor_and_epoch_dates_are_numbers(dam):
    _sb, url = dam
    src = source_of(url, page_size=40)
    pages = src.changed_pages(None)
    first, token = next(pages)
    pages.close()
    assert token is not None
    rest = [a.id for p, _t in src.changed_pages(None, token) for a in p.assets]
    assert len(rest) == 210 and not {a.id for a in first.assets} & set(rest)

    epoch = source_of(url, since_format="epoch")
    everything = [a for p in epoch.changed_since(None) for a in p.assets]
    since = sorted(a.updated for a in everything if a.updated)[-5]
    assert epoch.list_variables(since) == {"updatedSince": int(since.timestamp())}
    assert len(listed(epoch, since)[0]) == 5
    src.close(), epoch.close()


def test_a_wrong_endpoint_path_names_base_url_and_list_path(dam):
    _sb, url = dam
    data = example()
    data["sources"]["graphql"]["rest"]["list"]["path"] = "/graphq1"
    src = build_source(config_of(url, data).source("graphql"))
    assert isinstance(src, GraphQLSource)
    with pytest.raises(DamError) as err:
        listed(src)
    assert str(err.value).startswith(f"graphql: {url}/graphq1 answered HTTP 404: ")
    assert str(err.value).endswith(
        ". Check sources.graphql.rest.base_url and sources.graphql.rest.list.path")
