"""GraphQL DAMs (Frontify, Contentful-like) through the generic adapter: `rest.graphql`.

A listing is `POST <rest.list.path>` with the JSON body `{query, variables}`: the fixed
`variables`, the changed-since date as `since_variable`, the page size as
`page_size_variable` and the Relay cursor (`pageInfo.endCursor`) as `cursor_variable`.
Records are found at `items_path` (`data.assets.nodes`, or `data.assets.edges[*].node`
where `[*]` takes every element of that list), the next cursor at `cursor_path` while
`has_next_path` is true. Budget, retries, auth and normalisation are `RestSource`'s.

GraphQL answers its errors in the body, often with HTTP 200: an answer with a non-empty
`errors` list is a failure (`GraphQLError`, permanent), even when `data` is partly there.
A partial page is not a page: the listing stops, the run fails without moving its
watermark, and the next run lists the same changes again (nothing is lost; nothing is
acknowledged that was not read). HTTP statuses keep their meaning: a 429 or 5xx is retried
like any request of the adapter before it fails as transient.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import requests

from connector.config.model import GraphQLConfig, MediaConfig, PaginationConfig, RestSourceConfig
from connector.dam.base import DamAsset, DamError, NoSingleGetError, Page, PaginationLoopError
from connector.dam.dates import since_value
from connector.dam.diagnose import check_ids
from connector.dam.media import safe_url
from connector.dam.pagination import BasePaginator, PageResponse
from connector.dam.paths import MISSING, get_path
from connector.dam.records import normalise_record
from connector.dam.rest import BadRecordError, RestSource, _fingerprint

# at most this many empty pages in a row that still say "more": a cursor that never ends
MAX_EMPTY_PAGES = 10


class GraphQLError(DamError):
    """A GraphQL answer carrying `errors`: permanent (the query or its variables are wrong,
    or the server refused them), whatever the HTTP status of the answer."""


class RelayPaginator(BasePaginator):
    """Relay cursors: `endCursor` sent back as a variable while `hasNextPage` is true.
    The loop guard (same cursor or same page twice) is `BasePaginator`'s."""

    loop_keys = ("cursor_variable",)

    def __init__(self, config: GraphQLConfig) -> None:
        super().__init__(PaginationConfig(page_size=config.page_size))
        self.gql = config
        self.empty_pages = 0

    def variables(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.gql.page_size_variable:
            out[self.gql.page_size_variable] = self.page_size
        if self.current_value is not None:
            out[self.gql.cursor_variable] = self.current_value
        return out

    def get_next(self, response: PageResponse) -> Any | None:
        if not self.gql.cursor_path:
            return None
        if self.gql.has_next_path and get_path(response.body, self.gql.has_next_path) is not True:
            return None
        if not self.gql.has_next_path and response.item_count == 0:
            return None
        token = get_path(response.body, self.gql.cursor_path)
        if token is None or token is False or token == "":
            return None
        self.empty_pages = self.empty_pages + 1 if response.item_count == 0 else 0
        if self.empty_pages > MAX_EMPTY_PAGES:
            raise PaginationLoopError(
                f"{self.empty_pages} empty pages in a row still said there is a next page "
                f"(after {self.pages} pages); stopping instead of looping"
            )
        return token if isinstance(token, str) else str(token)


def items_at(body: Any, path: str) -> Any:
    """The records at `path`; `a.edges[*].node` takes `node` of every element of
    `a.edges` (MISSING when a step is absent; an element without it is kept as None, to
    be quarantined as a bad record rather than dropped)."""
    head, star, rest = path.partition("[*]")
    found = get_path(body, head, MISSING)
    if not star or not isinstance(found, list):
        return found
    rest = rest.lstrip(".")
    if "[*]" in rest:
        return [x for item in found for x in _as_list(items_at(item, rest))]
    return [get_path(item, rest) for item in found] if rest else found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class GraphQLSource(RestSource):
    """A `RestSource` whose listing and single get are GraphQL queries (`rest.graphql`)."""

    def __init__(
        self, name: str, config: RestSourceConfig, media: MediaConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if config.graphql is None:
            raise ValueError(f"source {name!r} has no rest.graphql section")
        super().__init__(name, config, media, **kwargs)
        self.gql: GraphQLConfig = config.graphql
        self.endpoint_url = self._url(config.list.path)
        self._key_base = f"sources.{name}.rest.graphql"

    def __repr__(self) -> str:
        return f"GraphQLSource(name={self.name!r}, url={safe_url(self.endpoint_url)!r})"

    # ------------------------------------------------------------ DamSource

    def list_variables(self, since: datetime | None) -> dict[str, Any]:
        """The fixed variables, with the changed-since date when there is one."""
        variables = dict(self.gql.variables)
        if since is not None and self.gql.since_variable:
            value: Any = since_value(since, self.gql.since_format, None)
            if self.gql.since_format in ("epoch", "epoch_ms"):
                value = int(value)  # a typed variable (Int): a number, not its text
            variables[self.gql.since_variable] = value
        return variables

    def changed_pages(
        self, since: datetime | None, resume: str | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """The cursor is the token: a resumed listing asks for the page after it."""
        paginator = RelayPaginator(self.gql)
        if resume is not None:
            paginator.restore(resume)
        base = self.list_variables(since)
        id_key = f"sources.{self.name}.rest.list.id_field"
        while not paginator.finished:
            body, url = self.query(self.gql.query, {**base, **paginator.variables()})
            items = items_at(body, self.gql.items_path)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise self._not_a_list(body, items)
            check_ids(self.name, id_key, self.config.list.id_field, items, url)
            self._check_paging(body)
            fingerprint = tuple(_fingerprint(it, self.config.list.id_field) for it in items)
            try:
                paginator.advance(PageResponse(url, {}, body, len(items), fingerprint))
            except PaginationLoopError as exc:
                raise PaginationLoopError(
                    f"{self.name}: {exc}; the API does not read the cursor: check that "
                    f"{self._key_base}.query passes ${self.gql.cursor_variable} to the "
                    f"connection's `after` argument ({self._key_base}.cursor_variable) and "
                    f"that {self._key_base}.cursor_path is the connection's "
                    "pageInfo.endCursor",
                    key=f"{self._key_base}.cursor_variable",
                ) from None
            page = Page()
            for item in items:
                page.add(self.normalise(item))
            yield page, paginator.position()

    def get(self, asset_id: str) -> DamAsset | None:
        if not self.gql.get_query or not self.gql.get_item_path:
            raise NoSingleGetError(
                f"source {self.name!r} has no single-asset query: set "
                f"{self._key_base}.get_query (a query with an $id variable) and "
                f"{self._key_base}.get_item_path",
                key=f"{self._key_base}.get_query",
            )
        body, _url = self.query(self.gql.get_query, {"id": asset_id}, key="get_query")
        item = get_path(body, self.gql.get_item_path)
        if item is None:
            return None
        result = normalise_record(self.name, self.config, self.media_base_url, item)
        if not isinstance(result, DamAsset):
            raise BadRecordError(result)
        return result

    # ------------------------------------------------------------ requests

    def query(
        self, query: str, variables: dict[str, Any], key: str = "query"
    ) -> tuple[Any, str]:
        """POST one query; its JSON body and URL. `GraphQLError` when it carries errors."""
        resp = self._send("POST", self.endpoint_url, None, {"query": query,
                                                            "variables": variables})
        body = self._graphql_body(resp)
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            raise self._errors(resp, errors, key)
        if not 200 <= resp.status_code < 300:
            missing = resp.status_code in (404, 405, 410)
            self._raise_for_status(resp, self.config.list if missing else None)
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise GraphQLError(
                f"{self.name}: expected a GraphQL answer ({{\"data\": {{…}}}}) from "
                f"{safe_url(resp.url)}, got {type(body).__name__} "
                f"{self._blank(str(body)[:200])!r}: check sources.{self.name}.rest.base_url "
                f"and sources.{self.name}.rest.list.path (the GraphQL endpoint)",
                key=f"sources.{self.name}.rest.list.path",
            )
        return body, resp.url

    def _graphql_body(self, resp: requests.Response) -> Any:
        """The JSON body (GraphQL errors may come with a 4xx); else the status's DamError,
        naming base_url and list.path when the endpoint is not there."""
        if 200 <= resp.status_code < 300 or "json" in resp.headers.get("Content-Type", ""):
            try:
                return resp.json()
            except ValueError:
                if 200 <= resp.status_code < 300:
                    return self._json(resp)  # its message: expected JSON, got ...
        missing = resp.status_code in (404, 405, 410)
        self._raise_for_status(resp, self.config.list if missing else None)
        return None  # pragma: no cover - _raise_for_status raised

    def _errors(self, resp: requests.Response, errors: Any, key: str) -> GraphQLError:
        """Every error's message, path and location (five at most), secrets blanked."""
        shown: list[str] = []
        entries = errors if isinstance(errors, list) else [errors]
        for err in entries[:5]:
            if not isinstance(err, dict):
                shown.append(self._blank(str(err)[:300]))
                continue
            text = self._blank(str(err.get("message", "(no message)"))[:300])
            where = []
            if isinstance(err.get("path"), list):
                where.append("path " + ".".join(str(p) for p in err["path"]))
            for loc in err.get("locations") or []:
                if isinstance(loc, dict):
                    where.append(f"line {loc.get('line')}:{loc.get('column')}")
            shown.append(text + (f" ({', '.join(where)})" if where else ""))
        more = f" (and {len(entries) - 5} more)" if len(entries) > 5 else ""
        return GraphQLError(
            f"{self.name}: the GraphQL API at {safe_url(resp.url)} answered HTTP "
            f"{resp.status_code} with {len(entries)} error(s): {'; '.join(shown)}{more}. "
            f"Check {self._key_base}.{key} and {self._key_base}.variables",
            key=f"{self._key_base}.{key}",
        )

    def _check_paging(self, body: Any) -> None:
        """A wrong `has_next_path` would end every listing after its first page, and a
        next page without a cursor could not be asked for: both are errors, not an end."""
        if not self.gql.cursor_path:
            return
        if self.gql.has_next_path:
            has_next = get_path(body, self.gql.has_next_path, MISSING)
            if not isinstance(has_next, bool):
                raise DamError(
                    f"{self.name}: expected true or false at {self.gql.has_next_path!r} of "
                    f"the GraphQL answer, found {_found(has_next)}: set "
                    f"{self._key_base}.has_next_path to the connection's pageInfo.hasNextPage "
                    "(and ask for it in the query)",
                    key=f"{self._key_base}.has_next_path",
                )
            if has_next and get_path(body, self.gql.cursor_path) in (None, ""):
                raise DamError(
                    f"{self.name}: the GraphQL answer has a next page but no cursor at "
                    f"{self.gql.cursor_path!r}: set {self._key_base}.cursor_path to the "
                    "connection's pageInfo.endCursor (and ask for it in the query)",
                    key=f"{self._key_base}.cursor_path",
                )

    def _not_a_list(self, body: Any, items: Any) -> DamError:
        data = body.get("data") if isinstance(body, dict) else None
        has = ", ".join(f"data.{k}" for k in data) if isinstance(data, dict) else "no data"
        return DamError(
            f"{self.name}: expected the list of records at {self.gql.items_path!r} of the "
            f"GraphQL answer, found {_found(items)} (the answer has: {has}). Set "
            f"{self._key_base}.items_path (e.g. data.assets.nodes or "
            "data.assets.edges[*].node)",
            key=f"{self._key_base}.items_path",
        )

    def _blank(self, text: str) -> str:
        auth = self.config.auth
        for secret in (auth.token, auth.password, auth.value, auth.client_secret):
            if secret is not None and secret.reveal():
                text = text.replace(secret.reveal(), "********")
        return text


def _found(value: Any) -> str:
    return "nothing" if value is MISSING else f"{type(value).__name__} {str(value)[:60]!r}"


def source_class(config: RestSourceConfig) -> type[RestSource]:
    """The adapter class of a `rest` section: GraphQL when it has `graphql`."""
    return GraphQLSource if config.graphql is not None else RestSource
