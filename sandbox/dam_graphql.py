"""The sandbox DAM's `graphql` shape: `POST /graphql`, a Frontify/Contentful-like schema
with Relay pagination, for the generic adapter's GraphQL listing (connector/dam/graphql.py).

NOT a GraphQL server: there is no parser. It answers the two operations the example
(examples/graphql.yaml) sends, recognised by their root field, and reads `variables`:

    query Assets($first: Int, $after: String, $updatedSince: DateTime) {
      assets(first: $first, after: $after, updatedSince: $updatedSince) {
        pageInfo { endCursor hasNextPage }
        edges { cursor node { id title ... } }      # and/or: nodes { id title ... }
      }
    }
    query Asset($id: ID!) { asset(id: $id) { id title ... } }

`assets` lists by (modifiedAt, id), `updatedSince` keeping what changed at or after it;
`first` is 1..1000 (default 50). A node carries only the `Asset` fields the query text
names (any nesting, no aliases or fragments). What a GraphQL server would refuse is
answered as one does, HTTP 200 with `{"errors": [...], "data": null}`: an unknown root
field or `Asset` field, a variable the operation does not declare or that the schema has
no argument for, a malformed body. Settings (sandbox/dam.py): `repeat_cursor` (endCursor
always the first page's: a cursor that never ends), `graphql_errors` (answer the next N
requests with an error, after `graphql_errors_skip` good ones).
"""

from __future__ import annotations

import bisect
import re
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from sandbox.dam_data import render_graphql

if TYPE_CHECKING:
    from sandbox.dam import DamSandbox

ROOT_FIELDS = {"assets": {"first", "after", "updatedSince"}, "asset": {"id"}}
ASSET_FIELDS = {
    "id", "type", "title", "description", "filename", "extension", "size", "width",
    "height", "duration", "createdAt", "modifiedAt", "folder", "tags", "downloadUrl",
    "metadata", "sku", "colors", "language", "disclaimer", "productAsset", "__typename",
}
CONNECTION_FIELDS = {"pageInfo", "endCursor", "hasNextPage", "edges", "cursor", "node",
                     "nodes", "totalCount"}
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")
_ROOT = re.compile(r"\{\s*([_A-Za-z][_0-9A-Za-z]*)")


def answer(sb: DamSandbox, request: Request, host: str) -> Response:
    """One POST /graphql (already authorised): data, or errors[] as a server gives them."""
    from sandbox.dam import _json

    injected = _injected(sb)
    if injected:
        return _json({"errors": [{"message": injected, "extensions": {"code": "INTERNAL"}}],
                      "data": None})
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return _errors('expected a JSON body {"query": "...", "variables": {...}}')
    query: str = body["query"]
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        return _errors('"variables" must be an object')
    head, _, _ = query.partition("{")
    declared = set(re.findall(r"\$([_A-Za-z][_0-9A-Za-z]*)\s*:", head))
    root = _ROOT.search(query)
    if root is None:
        return _errors("Syntax Error: no selection set")
    field = root.group(1)
    if field not in ROOT_FIELDS:
        return _errors(f'Cannot query field "{field}" on type "Query".', query=query,
                       at=root.start(1))
    problems = [f'Variable "${name}" is not defined by operation.'
                for name in sorted(set(variables) - declared)]
    problems += [f'Unknown argument "{name}" on field "Query.{field}".'
                 for name in sorted(declared - ROOT_FIELDS[field])]
    selection = re.sub(r"\([^)]*\)", " ", query[root.end():])
    names = set(_NAME.findall(selection)) - {"on"}
    problems += [f'Cannot query field "{name}" on type "Asset".'
                 for name in sorted(names - ASSET_FIELDS - CONNECTION_FIELDS)]
    if problems:
        return _errors(*problems)
    wanted = names & ASSET_FIELDS
    if field == "asset":
        return _one(sb, str(variables.get("id") or ""), host, wanted)
    return _page(sb, variables, host, wanted, names)


def _injected(sb: DamSandbox) -> str | None:
    """The `graphql_errors` setting: an error for the next N requests after the skipped."""
    from dataclasses import replace

    with sb._lock:
        s = sb.settings
        if s.graphql_errors <= 0:
            return None
        if s.graphql_errors_skip > 0:
            sb.settings = replace(s, graphql_errors_skip=s.graphql_errors_skip - 1)
            return None
        sb.settings = replace(s, graphql_errors=s.graphql_errors - 1)
    return "injected failure: the assets resolver timed out"


def _one(sb: DamSandbox, asset_id: str, host: str, wanted: set[str]) -> Response:
    from sandbox.dam import _json

    with sb._lock:
        i = sb._index(asset_id)
        if i is None:
            return _json({"data": {"asset": None}})
        rec = dict(sb._record(i))
        hidden = i in sb._hidden_ids
    return _json({"data": {"asset": _select(render_graphql(rec, host, hidden), wanted)}})


def _page(sb: DamSandbox, variables: dict[str, Any], host: str, wanted: set[str],
          names: set[str]) -> Response:
    from sandbox.dam import _decode_cursor, _encode_cursor, _json, _parse_since

    first = variables.get("first", 50)
    if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= 1000:
        return _errors(f'Variable "$first" got invalid value {first!r}: an Int 1..1000')
    since_ms = None
    if variables.get("updatedSince") is not None:
        try:
            since_ms = _parse_since(str(variables["updatedSince"]))
        except Exception:
            return _errors(f'Variable "$updatedSince" got invalid value '
                           f'{variables["updatedSince"]!r}: a DateTime')
    after = variables.get("after")
    s = sb.settings
    with sb._lock:
        n = 0 if s.list_empty else len(sb._order)
        order = sb._order

        def key(pos: int) -> int:
            return sb._updated_ms(order[pos])

        start = bisect.bisect_left(range(n), since_ms, key=key) if since_ms is not None else 0
        lo = start
        if after:
            try:
                lo = max(start, bisect.bisect_right(range(n), _decode_cursor(after), key=key))
            except Exception:
                return _errors(f'Variable "$after" got invalid value {after!r}: not a cursor')
        hi = min(n, lo + first)
        rows = [(key(p), order[p], dict(sb._record(order[p]))) for p in range(lo, hi)]
        anchor = min(start + first, n) - 1 if s.repeat_cursor else hi - 1
        end_cursor = _encode_cursor(key(anchor)) if hi > lo else None
        has_next = hi < n
        nodes = [(_encode_cursor(ms), _select(render_graphql(rec, host, i in sb._hidden_ids),
                                              wanted)) for ms, i, rec in rows]
    connection: dict[str, Any] = {}
    if "pageInfo" in names:
        info = {"endCursor": end_cursor, "hasNextPage": has_next}
        connection["pageInfo"] = {k: v for k, v in info.items() if k in names}
    if "totalCount" in names:
        connection["totalCount"] = n - start
    if "edges" in names:
        connection["edges"] = [{"cursor": c, "node": node} for c, node in nodes]
    if "nodes" in names:
        connection["nodes"] = [node for _c, node in nodes]
    return _json({"data": {"assets": connection}})


def _select(node: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """The node's fields the query names (a nested object is kept whole when named)."""
    return {k: v for k, v in node.items() if k in wanted}


def _errors(*messages: str, query: str = "", at: int = -1) -> Response:
    from sandbox.dam import _json

    errors: list[dict[str, Any]] = [{"message": m} for m in messages]
    if at >= 0 and errors:
        line = query.count("\n", 0, at) + 1
        column = at - (query.rfind("\n", 0, at) + 1) + 1
        errors[0]["locations"] = [{"line": line, "column": column}]
    return _json({"errors": errors, "data": None})
