"""Sandbox DAM: a real HTTP server that behaves like the DAMs the connector meets.

    sandbox = DamSandbox(assets=500, shape="bynder", seed=1)
    server = sandbox.serve()            # BackgroundServer on 127.0.0.1:<free port>
    ...
    server.stop()

Every endpoint is served whatever the shape; the shape picks the auth scheme required
(unless `auth=` says otherwise) and what `/_sandbox/info` advertises.

API (all accept the "changed since" filter; results sorted by (updated, id)):
  bynder      GET /api/v4/media/?page=&limit=&dateModified=        plain array, bearer
              GET /api/v4/media/<id>/   GET /api/v4/media/deleted/?since=&page=&limit=
              (the deleted listing is a sandbox extension: real Bynder has none, its
              deletions come as webhook events or are found by a full listing)
  bynder      GET /api/v4/media/<id>/download/   {"s3_file": URL}; orderBy=dateModified asc|desc
  cloudinary  the Admin and Search APIs as Cloudinary's SDK calls them (cloud name "demo",
              basic auth api key "sandbox", secret "sandbox-dam-password"): see
              sandbox/dam_cloudinary.py. GET /v1_1/demo/resources/deleted?start_at=... is a
              sandbox extension (Cloudinary announces deletions as notifications)
  nested      GET /api/v2/assets?modified_after=&limit=&cursor=   {"data": [...]} + Link
              rel="next", bearer; dotted ids (`assets.<uuid>`), facts under
              `metadata.fields`, file URLs relative to the root (`media/<id>/<name>`),
              no single-asset endpoint, no deletion listing (docs/quickstart.md)
  graphql     POST /graphql {query, variables}: `assets(first, after, updatedSince)` with
              Relay pageInfo/edges/nodes and `asset(id)`, bearer; not a GraphQL server
              (no parser): see sandbox/dam_graphql.py
  generic     GET /api/<style>/assets?updated_since=...  and  /api/<style>/deleted
              style page (page/limit, {"results"}), offset (offset/limit, {"items","total"}),
              cursor (cursor/limit, {"data", "paging": {"next"}}), header_cursor (cursor/limit,
              plain array + X-Next-Cursor), link (limit, plain array + Link rel="next"),
              none ({"assets": [...]}, everything)
              GET /api/items/<id>
  OAuth2      POST /oauth/token (grant_type=client_credentials; tokens expire)
  binaries    GET /media/<id>/<filename>
`serve(tls=True)` serves HTTPS (trust `server.ca_bundle`); the counters include the
server's `connections` and `tls_handshakes` (sandbox/server.py).
Admin under /_sandbox/: GET info, counters, log, bad, assets/<id>; POST settings,
counters/reset, assets (add), assets/<id> (edit), tokens/expire; DELETE assets/<id>;
GET redirect?to=URL (a 302, for redirect tests).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import json
import math
import secrets
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import dam_cloudinary as cld
from sandbox import dam_graphql
from sandbox.dam_data import (
    BAD_KINDS,
    CONTENT_TYPES,
    Catalog,
    iso_ms,
    media_bytes,
    media_size,
    render_bynder,
    render_cloudinary,
    render_nested,
)
from sandbox.server import ConnectionCounter, SandboxCA, ServedSandbox

SHAPES = (
    "bynder", "cloudinary", "nested", "graphql", "page", "offset", "cursor", "header_cursor",
    "link", "none",
)
AUTH_MODES = ("any", "none", "bearer", "basic", "api_key", "oauth2")
SHAPE_AUTH = {"bynder": "bearer", "cloudinary": "basic", "nested": "bearer", "graphql": "bearer"}
SHAPE_LIST_PATH = {
    "bynder": "/api/v4/media/",
    "cloudinary": "/v1_1/demo/resources/search",
    "nested": "/api/v2/assets",
    "graphql": "/graphql",
}
GENERIC_STYLES = ("page", "offset", "cursor", "header_cursor", "link", "none")


@dataclass(frozen=True)
class DamSandboxSettings:
    """Knobs changeable at run time (POST /_sandbox/settings)."""

    auth: str = "any"               # which credentials the API accepts
    token_ttl: float = 3600.0       # OAuth2 token lifetime, seconds
    inject_429: int = 0             # answer the next N API requests with 429
    inject_429_every: int = 0       # answer every Nth API request with 429 (0 = never)
    retry_after: float = 1.0        # Retry-After of injected 429s, seconds
    inject_500: int = 0             # answer the next N API requests with 500
    rate_limit: float = 0.0         # API requests per second before 429 (0 = unlimited)
    limit_media: bool = False       # injections and the rate limit apply to binaries too
    fail_media: tuple[str, ...] = ()  # asset ids whose binary always answers 503
    repeat_cursor: bool = False     # cursors/next links always point at the second page
    ignore_page: bool = False       # page/offset parameters ignored (same page forever)
    latency: float = 0.0            # seconds added to every API response
    max_limit: int = 1000           # largest page size accepted
    link_base: str = ""             # Link rel="next" points at this origin instead (tests)
    list_empty: bool = False        # listings answer 200 with no assets (an expired
    #                                 permission, a wrong filter, an unmounted share)
    cld_rate_limit_status: int = 420  # Cloudinary's rate-limit answer (420, or 429)
    graphql_errors: int = 0         # answer the next N GraphQL requests with errors[] (a 200)
    graphql_errors_skip: int = 0    # ... after letting this many through


class _BadRequest(Exception):
    pass


def _parse_since(value: str) -> int:
    """A "changed since" parameter in any format the connector may send → epoch ms."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return int(number if abs(number) > 1e11 else number * 1000)
    parsers: tuple[Callable[[str], datetime], ...] = (
        datetime.fromisoformat,
        lambda t: datetime.strptime(t, "%Y-%m-%d %H:%M:%S"),
    )
    for parse in parsers:
        try:
            dt = parse(text)
        except ValueError:
            continue
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    raise _BadRequest(f"unparsable date {text!r}")


def _encode_cursor(key_ms: int) -> str:
    return base64.urlsafe_b64encode(f"after:{key_ms}".encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, ms = raw.partition(":")
        if prefix != "after":
            raise ValueError
        return int(ms)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _BadRequest(f"invalid cursor {token[:40]!r}") from None


class DamSandbox(ServedSandbox):
    """State + WSGI app of the sandbox DAM (thread-safe)."""

    def __init__(
        self,
        assets: int = 200,
        shape: str = "bynder",
        seed: int = 1,
        *,
        auth: str | None = None,
        bad: bool = True,
        token: str = "sandbox-dam-token",
        username: str = "sandbox",
        password: str = "sandbox-dam-password",
        api_key: str = "sandbox-dam-key",
        api_key_header: str = "X-API-Key",
        client_id: str = "sandbox-dam-client",
        client_secret: str = "sandbox-dam-secret",
        **settings: Any,
    ) -> None:
        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")
        auth = auth or SHAPE_AUTH.get(shape, "any")
        if auth not in AUTH_MODES:
            raise ValueError(f"unknown auth {auth!r} (one of {', '.join(AUTH_MODES)})")
        self.shape = shape
        self.catalog = Catalog(assets, seed, bad)
        self.credentials = {
            "token": token, "username": username, "password": password,
            "api_key": api_key, "api_key_header": api_key_header,
            "client_id": client_id, "client_secret": client_secret,
        }
        unknown = sorted(set(settings) - {f.name for f in fields(DamSandboxSettings)})
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        self.settings = replace(DamSandboxSettings(auth=auth), **settings)
        self._lock = threading.RLock()
        self._order = array("q", range(assets))       # live indices, by (updated, id)
        self._max_ms = self.catalog.base_updated_ms(assets - 1) if assets else 0
        self._updated: dict[int, int] = {}              # index → ms, for mutated assets
        self._records: dict[int, dict[str, Any]] = {}   # index → record, edited/added
        self._custom_ids: dict[str, int] = {}           # ids given to POST /_sandbox/assets
        self._next_index = assets
        self._deleted: set[int] = set()
        self._deletions: list[tuple[int, str]] = []     # (ms, id), by time
        self._hidden_ids = {s.index for s in self.catalog.bad.values() if s.kind == "missing_id"}
        self._tokens: dict[str, float] = {}              # OAuth2 token → expiry (monotonic)
        self.connections = ConnectionCounter()  # filled by the servers this sandbox runs on
        self._reset_counters()
        self._url_map = Map(
            [
                Rule("/oauth/token", endpoint="token", methods=["POST"]),
                # Bynder's own token URL (client credentials), as bynder-sdk calls it
                Rule("/v6/authentication/oauth2/token", endpoint="token", methods=["POST"]),
                Rule("/api/v4/media/", endpoint="bynder_list", methods=["GET"]),
                Rule("/api/v4/media/deleted/", endpoint="bynder_deleted", methods=["GET"]),
                Rule("/api/v4/media/<asset_id>/", endpoint="bynder_get", methods=["GET"]),
                Rule(
                    "/api/v4/media/<asset_id>/download/", endpoint="bynder_download",
                    methods=["GET"],
                ),
                Rule(
                    "/v1_1/<cloud>/resources/search", endpoint="cld_search",
                    methods=["GET", "POST"],
                ),
                Rule("/v1_1/<cloud>/resources/deleted", endpoint="cld_deleted", methods=["GET"]),
                Rule("/v1_1/<cloud>/resources/<first>", endpoint="cld_one", methods=["GET"]),
                Rule(
                    "/v1_1/<cloud>/resources/<resource_type>/<delivery>", endpoint="cld_list",
                    methods=["GET"],
                ),
                Rule(
                    "/v1_1/<cloud>/resources/<resource_type>/<delivery>/<path:public_id>",
                    endpoint="cld_public", methods=["GET"],
                ),
                Rule("/api/v2/assets", endpoint="nested_list", methods=["GET"]),
                Rule("/graphql", endpoint="graphql", methods=["POST"]),
                Rule("/api/<style>/assets", endpoint="generic_list", methods=["GET"]),
                Rule("/api/<style>/deleted", endpoint="generic_deleted", methods=["GET"]),
                Rule("/api/items/<asset_id>", endpoint="generic_get", methods=["GET"]),
                Rule("/media/<asset_id>/<filename>", endpoint="media", methods=["GET"]),
                Rule("/_sandbox/info", endpoint="a_info", methods=["GET"]),
                Rule("/_sandbox/counters", endpoint="a_counters", methods=["GET"]),
                Rule("/_sandbox/counters/reset", endpoint="a_reset", methods=["POST"]),
                Rule("/_sandbox/log", endpoint="a_log", methods=["GET"]),
                Rule("/_sandbox/bad", endpoint="a_bad", methods=["GET"]),
                Rule("/_sandbox/settings", endpoint="a_settings", methods=["GET", "POST"]),
                Rule("/_sandbox/tokens/expire", endpoint="a_expire", methods=["POST"]),
                Rule("/_sandbox/assets", endpoint="a_add", methods=["POST"]),
                Rule(
                    "/_sandbox/assets/<asset_id>",
                    endpoint="a_asset",
                    methods=["GET", "POST", "DELETE"],
                ),
                Rule("/_sandbox/redirect", endpoint="a_redirect", methods=["GET"]),
            ],
            strict_slashes=False,
        )

    # ================================================================ Python API

    @property
    def app(self) -> Callable[..., Any]:
        return self._wsgi

    def configure(self, **changes: Any) -> DamSandboxSettings:
        known = {f.name for f in fields(DamSandboxSettings)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        if "auth" in changes and changes["auth"] not in AUTH_MODES:
            raise ValueError(f"unknown auth {changes['auth']!r}")
        with self._lock:
            self.settings = replace(self.settings, **changes)
            return self.settings

    def record(self, asset_id: str) -> dict[str, Any] | None:
        """The canonical record of a live asset (id included even when hidden)."""
        with self._lock:
            i = self._index(asset_id)
            return None if i is None else dict(self._record(i))

    def ids(self) -> Iterator[str]:
        """Live ids in listing order."""
        with self._lock:
            order = array("q", self._order)
        for i in order:
            yield self._id(i)

    def edit(
        self, asset_id: str, changes: dict[str, Any], raw: bool = False
    ) -> dict[str, Any] | None:
        """Merge `changes` into the record and bump its dateModified; None if unknown.

        raw=True writes `changes` after the bump, so a test can break the record itself
        (e.g. an unparsable dateModified) while the listing still sees it as changed."""
        with self._lock:
            i = self._index(asset_id)
            if i is None:
                return None
            rec = dict(self._record(i))
            rec.update({k: v for k, v in changes.items() if k != "id"})
            self._move_to_end(i)
            rec["dateModified"] = iso_ms(self._updated[i])
            if raw:
                rec.update({k: v for k, v in changes.items() if k != "id"})
            self._records[i] = rec
            return dict(rec)

    def delete(self, asset_id: str) -> bool:
        with self._lock:
            i = self._index(asset_id)
            if i is None:
                return False
            self._remove_from_order(i)
            self._deleted.add(i)
            self._records.pop(i, None)
            ms = self._bump()
            self._deletions.append((ms, asset_id))
            return True

    def add(self, fields_: dict[str, Any]) -> dict[str, Any]:
        """Create an asset (defaults: a product packshot); returns its record."""
        with self._lock:
            i = self._next_index
            self._next_index += 1
            asset_id = str(fields_.get("id") or self.catalog.id_of(i))
            if self._index(asset_id) is not None:
                raise _BadRequest(f"asset {asset_id} exists")
            if asset_id != self.catalog.id_of(i):
                self._custom_ids[asset_id] = i
            filename = str(fields_.get("filename") or f"new-asset_{i}_front.png")
            stem, _, ext = filename.rpartition(".")
            ms = self._bump()
            rec: dict[str, Any] = {
                "id": asset_id, "name": stem or filename, "filename": filename,
                "extension": ext.lower(), "type": "image", "folder": "products/packshots",
                "tags": ["product"], "dateCreated": iso_ms(ms), "dateModified": iso_ms(ms),
                "description": "", "fileSize": media_size(asset_id), "width": 1200,
                "height": 1600, "duration": None, "language": None, "original": None,
                "property_colors": "", "property_sku": None, "property_disclaimer": "",
                "property_product_asset": True,
            }
            rec.update({k: v for k, v in fields_.items() if k != "id"})
            rec["dateModified"] = iso_ms(ms)
            self._records[i] = rec
            self._updated[i] = ms
            self._order.append(i)
            return dict(rec)

    def bad_records(self) -> list[dict[str, Any]]:
        """The deliberately bad records: index, id, name, kind, field, level."""
        out = []
        for spec in sorted(self.catalog.bad.values(), key=lambda s: s.index):
            rec = self.catalog.record(spec.index)
            out.append(
                {"index": spec.index, "id": rec["id"], "name": rec["name"],
                 "filename": rec["filename"], "kind": spec.kind, "field": spec.field,
                 "level": spec.level}
            )
        return out

    def counters(self) -> dict[str, Any]:
        with self._lock:
            data: dict[str, Any] = json.loads(json.dumps(self._counters))
        data.update(self.connections.snapshot())
        return data

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._log)

    def expire_tokens(self) -> int:
        with self._lock:
            n = len(self._tokens)
            self._tokens = {t: 0.0 for t in self._tokens}
            return n

    def reset_counters(self) -> None:
        with self._lock:
            self._reset_counters()
        self.connections.reset()

    # ================================================================ state helpers

    def _reset_counters(self) -> None:
        self._counters: dict[str, Any] = {
            "requests": 0, "api_requests": 0, "by_path": {}, "by_status": {},
            "429": 0, "401": 0, "500": 0, "early_after_429": 0, "tokens_issued": 0,
            "media": 0, "cloudinary_calls": 0,
        }
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self._retry_not_before = 0.0   # wall clock; requests before it are "early"
        self._window: collections.deque[float] = collections.deque()

    def _id(self, i: int) -> str:
        rec = self._records.get(i)
        return str(rec["id"]) if rec is not None else self.catalog.id_of(i)

    def _index(self, asset_id: str) -> int | None:
        i = self._custom_ids.get(asset_id)
        if i is None:
            i = self.catalog.index_of(asset_id)
            if i is None:
                return None
            if i >= self.catalog.count:
                rec = self._records.get(i)
                if rec is None or rec.get("id") != asset_id:
                    return None
        return None if i in self._deleted else i

    def _record(self, i: int) -> dict[str, Any]:
        rec = self._records.get(i)
        return rec if rec is not None else self.catalog.record(i)

    def _updated_ms(self, i: int) -> int:
        ms = self._updated.get(i)
        return ms if ms is not None else self.catalog.base_updated_ms(i)

    def _bump(self) -> int:
        """A mutation timestamp strictly after every existing one."""
        self._max_ms = max(int(time.time() * 1000), self._max_ms + 1)
        return self._max_ms

    def _remove_from_order(self, i: int) -> None:
        pos = bisect.bisect_left(self._order, self._updated_ms(i), key=self._updated_ms)
        if pos < len(self._order) and self._order[pos] == i:
            del self._order[pos]
        else:  # pragma: no cover - invariant broken; stay correct anyway
            self._order.remove(i)

    def _move_to_end(self, i: int) -> None:
        self._remove_from_order(i)
        self._updated[i] = self._bump()
        self._order.append(i)

    # ================================================================ WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        adapter = self._url_map.bind_to_environ(environ)
        started = time.time()
        rule_path = request.path
        try:
            rule, args = adapter.match(return_rule=True)
            rule_path = rule.rule
            endpoint = str(rule.endpoint)
            if endpoint.startswith("a_"):
                response = self._admin(endpoint, request, args)
            else:
                response = self._api(endpoint, request, args, rule_path)
        except _BadRequest as exc:
            response = _json({"error": "bad_request", "message": str(exc)}, 400)
        except HTTPException as exc:
            response = _json({"error": exc.name, "message": exc.description}, exc.code or 500)
        if not rule_path.startswith("/_sandbox"):
            with self._lock:
                c = self._counters
                c["requests"] += 1
                c["by_path"][rule_path] = c["by_path"].get(rule_path, 0) + 1
                status = str(response.status_code)
                c["by_status"][status] = c["by_status"].get(status, 0) + 1
                self._log.append(
                    {"t": started, "method": request.method, "path": request.path,
                     "rule": rule_path, "query": request.query_string.decode("latin-1"),
                     "status": response.status_code}
                )
        return response(environ, start_response)

    # ---------------------------------------------------------------- API

    def _api(self, endpoint: str, request: Request, args: Mapping[str, Any], rule: str) -> Response:
        settings = self.settings
        if endpoint == "media" and args["asset_id"] in settings.fail_media:
            with self._lock:
                self._counters["500"] += 1
            return _json({"error": "unavailable", "message": "injected media failure"}, 503)
        if endpoint.startswith("cld_"):
            return self._cloudinary(endpoint, request, args, settings)
        if endpoint != "media" or settings.limit_media:
            gate = self._gate(settings)
            if gate is not None:
                return gate
            if settings.latency:
                time.sleep(settings.latency)
        if endpoint == "token":
            return self._token(request, settings)
        if endpoint == "media":
            return self._media(args["asset_id"], args["filename"])
        if not self._authorised(request, settings):
            with self._lock:
                self._counters["401"] += 1
            resp = _json({"error": "unauthorized", "message": "missing or invalid credentials"},
                         401)
            resp.headers["WWW-Authenticate"] = 'Bearer realm="sandbox-dam"'
            return resp
        host = request.host_url
        if endpoint == "nested_list":
            return self._list(request, "nested", "modified_after", "nested", host, False)
        if endpoint == "graphql":
            return dam_graphql.answer(self, request, host)
        if endpoint == "bynder_list":
            order = request.args.get("orderBy", "dateModified asc")
            if order not in ("dateModified asc", "dateModified desc"):
                raise _BadRequest(
                    f"orderBy {order!r}: the sandbox orders by dateModified asc or desc only"
                )
            return self._list(request, "page", "dateModified", "bynder", host, False,
                              reverse=order.endswith("desc"))
        if endpoint == "bynder_deleted":
            return self._list(request, "page", "since", "bynder", host, True)
        if endpoint == "bynder_download":
            rec = self.record(args["asset_id"])
            if rec is None:
                raise NotFound(f"no asset {args['asset_id']}")
            return _json({"s3_file": render_bynder(rec, host)["original"]})
        if endpoint in ("generic_list", "generic_deleted"):
            style = args["style"]
            if style not in GENERIC_STYLES:
                raise NotFound(f"unknown style {style!r} (one of {', '.join(GENERIC_STYLES)})")
            body_style = "generic_" + style
            return self._list(
                request, body_style, "updated_since", "bynder", host,
                endpoint == "generic_deleted",
            )
        if endpoint in ("bynder_get", "generic_get"):
            with self._lock:
                i = self._index(args["asset_id"])
                if i is None:
                    raise NotFound(f"no asset {args['asset_id']}")
                rec = dict(self._record(i))
                hidden = i in self._hidden_ids
            return _json(render_bynder(rec, host, hidden))
        raise NotFound()  # pragma: no cover

    # ---------------------------------------------------------------- Cloudinary

    def _cloudinary(
        self, endpoint: str, request: Request, args: Mapping[str, Any], s: DamSandboxSettings
    ) -> Response:
        """The Admin/Search APIs (sandbox/dam_cloudinary.py): Cloudinary's error bodies,
        its 420 (or 429) rate-limit answer and its X-FeatureRateLimit-* headers."""
        now = time.time()
        with self._lock:
            self._counters["cloudinary_calls"] += 1
            used = self._counters["cloudinary_calls"]
        headers = cld.rate_headers(used, now)
        try:
            gate = self._gate(s)
            if gate is not None and gate.status_code == 429:
                headers["X-FeatureRateLimit-Remaining"] = "0"
                raise cld.CldError(s.cld_rate_limit_status, "Rate Limit Exceeded")
            if gate is not None:
                raise cld.CldError(gate.status_code, "General Error")
            if s.latency:
                time.sleep(s.latency)
            if not self._authorised(request, s):
                with self._lock:
                    self._counters["401"] += 1
                raise cld.CldError(401, "Invalid api_key or api_secret")
            if args["cloud"] != cld.CLOUD_NAME:
                raise cld.CldError(401, f"Invalid cloud_name {args['cloud']}")
            response = self._cld_answer(endpoint, request, args, s)
        except cld.CldError as exc:
            response = cld.error_response(exc.status, exc.message)
        except _BadRequest as exc:
            response = cld.error_response(400, str(exc))
        except NotFound as exc:
            response = cld.error_response(404, str(exc.description))
        response.headers.update(headers)
        return response

    def _cld_answer(
        self, endpoint: str, request: Request, args: Mapping[str, Any], s: DamSandboxSettings
    ) -> Response:
        host = request.host_url
        if endpoint == "cld_deleted":
            return self._list(request, "cloudinary", "start_at", "cloudinary", host, True)
        if endpoint == "cld_search":
            query = cld.search_request(request.method, request.args, request.get_data())
            return self._cld_search(query, host, s)
        first = str(args.get("first") or args.get("resource_type"))
        if endpoint == "cld_one" and first not in cld.RESOURCE_TYPES:
            with self._lock:  # GET /resources/<asset_id>
                i = self._index(first)
                if i is None:
                    raise cld.CldError(404, f"Resource not found - {first}")
                rec, hidden = dict(self._record(i)), i in self._hidden_ids
            return _json(cld.resource(rec, host, hidden, set(cld.OPTIONAL_FIELDS)))
        if first not in cld.RESOURCE_TYPES:
            raise cld.CldError(400, f"Invalid resource type {first}")
        delivery = args.get("delivery") or request.args.get("type")
        if endpoint == "cld_public":
            public_id = str(args["public_id"])
            for _i, res, _upd in self._cld_all(host):
                if (res["public_id"], res["resource_type"], res["type"]) == (
                    public_id, first, delivery or "upload"
                ):
                    return _json(res)
            raise cld.CldError(404, f"Resource not found - {public_id}")
        return self._cld_list(request, first, delivery, host, s)

    def _cld_all(self, host: str) -> list[tuple[int, dict[str, Any], int]]:
        """Every live asset as a full resource, with its update time (ms)."""
        with self._lock:
            order = [] if self.settings.list_empty else list(self._order)
            snapshot = [
                (i, dict(self._record(i)), self._updated_ms(i), i in self._hidden_ids)
                for i in order
            ]
        full = set(cld.OPTIONAL_FIELDS)
        return [(i, cld.resource(rec, host, hidden, full), upd)
                for i, rec, upd, hidden in snapshot]

    def _cld_list(
        self, request: Request, resource_type: str, delivery: str | None, host: str,
        s: DamSandboxSettings,
    ) -> Response:
        """GET /resources/<resource_type>[/<type>]: by created_at, `start_at` = created since."""
        q = request.args
        limit = cld.limit_of(q.get("max_results"), 10)
        direction = q.get("direction", "desc")
        if direction not in ("asc", "desc", "1", "-1"):
            raise cld.CldError(400, f"direction must be asc or desc, got {direction!r}")
        descending = direction in ("desc", "-1")
        since = _parse_since(q["start_at"]) if q.get("start_at") else None
        prefix = q.get("prefix")
        rows: list[tuple[Any, int]] = []
        by_index: dict[int, dict[str, Any]] = {}
        for i, res, _upd in self._cld_all(host):
            if res["resource_type"] != resource_type or (delivery and res["type"] != delivery):
                continue
            if prefix and not str(res["public_id"]).startswith(prefix):
                continue
            created = cld.date_ms(res["created_at"])
            if since is not None and (created is None or created < since):
                continue
            by_index[i] = res
            rows.append((res["public_id"] if prefix else created, i))
        if prefix:  # Cloudinary: with a prefix, sorted by public id and `direction` ignored
            descending = False
        rows = cld.sort_rows(rows, descending)
        ids, token = cld.page(rows, descending, limit, q.get("next_cursor"), s.repeat_cursor)
        include = cld.flags(q)
        body: dict[str, Any] = {"resources": [
            {k: v for k, v in by_index[i].items() if k not in cld.OPTIONAL_FIELDS or k in include}
            for i in ids
        ]}
        if token:
            body["next_cursor"] = token
        return _json(body)

    def _cld_search(self, query: dict[str, Any], host: str, s: DamSandboxSettings) -> Response:
        """POST/GET /resources/search: expression, sort_by, max_results, next_cursor, with_field."""
        now = cld.now_ms()
        predicate = cld.parse_expression(str(query.get("expression") or ""), now)
        field, descending = cld.sort_spec(query.get("sort_by"))
        limit = cld.limit_of(query.get("max_results"), 50)
        with_field = query.get("with_field") or []
        include = {with_field} if isinstance(with_field, str) else set(with_field)
        rows: list[tuple[Any, int]] = []
        by_index: dict[int, dict[str, Any]] = {}
        for i, res, upd in self._cld_all(host):
            values = cld.search_fields(res, upd)
            if predicate(values):
                by_index[i] = res
                rows.append((values[field], i))
        rows = cld.sort_rows(rows, descending)
        cursor = query.get("next_cursor")
        ids, token = cld.page(rows, descending, limit, str(cursor) if cursor else None,
                              s.repeat_cursor)
        body: dict[str, Any] = {
            "total_count": len(rows), "time": 1,
            "resources": [
                {k: v for k, v in by_index[i].items()
                 if k not in cld.OPTIONAL_FIELDS or k in include}
                for i in ids
            ],
        }
        if token:
            body["next_cursor"] = token
        return _json(body)

    def _gate(self, s: DamSandboxSettings) -> Response | None:
        """Fault injection and the requests/s limit, before any real work."""
        now = time.time()
        with self._lock:
            c = self._counters
            c["api_requests"] += 1
            if now < self._retry_not_before:
                c["early_after_429"] += 1
                return self._too_many(self._retry_not_before - now, now)
            if s.inject_500 > 0:
                self.settings = replace(self.settings, inject_500=s.inject_500 - 1)
                c["500"] += 1
                return _json({"error": "internal", "message": "injected failure"}, 500)
            if s.inject_429 > 0:
                self.settings = replace(self.settings, inject_429=s.inject_429 - 1)
                return self._too_many(s.retry_after, now)
            if s.inject_429_every and c["api_requests"] % s.inject_429_every == 0:
                return self._too_many(s.retry_after, now)
            if s.rate_limit > 0:
                while self._window and self._window[0] <= now - 1.0:
                    self._window.popleft()
                if len(self._window) >= s.rate_limit:
                    wait = max(0.001, self._window[0] + 1.0 - now)
                    return self._too_many(math.ceil(wait), now)
                self._window.append(now)
        return None

    def _too_many(self, retry_after: float, now: float) -> Response:
        self._counters["429"] += 1
        self._retry_not_before = max(self._retry_not_before, now + retry_after)
        resp = _json({"error": "too_many_requests", "message": "slow down"}, 429)
        value = int(retry_after) if float(retry_after).is_integer() else round(retry_after, 3)
        resp.headers["Retry-After"] = str(value)
        return resp

    def _authorised(self, request: Request, s: DamSandboxSettings) -> bool:
        mode = s.auth
        if mode == "none":
            return True
        creds = self.credentials
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            if mode in ("any", "bearer") and secrets.compare_digest(value, creds["token"]):
                return True
            if mode in ("any", "oauth2"):
                with self._lock:
                    expiry = self._tokens.get(value)
                return expiry is not None and time.monotonic() < expiry
            return False
        if scheme == "basic" and mode in ("any", "basic"):
            user, password = _basic(value)
            return user == creds["username"] and password == creds["password"]
        if mode in ("any", "api_key"):
            key = request.headers.get(creds["api_key_header"])
            return key is not None and secrets.compare_digest(key, creds["api_key"])
        return False

    def _token(self, request: Request, s: DamSandboxSettings) -> Response:
        creds = self.credentials
        user, password = _basic(request.headers.get("Authorization", "").partition(" ")[2])
        client_id = user or request.form.get("client_id")
        client_secret = password or request.form.get("client_secret")
        if request.form.get("grant_type") != "client_credentials":
            return _json({"error": "unsupported_grant_type"}, 400)
        if client_id != creds["client_id"] or client_secret != creds["client_secret"]:
            return _json({"error": "invalid_client"}, 401)
        token = secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = time.monotonic() + s.token_ttl
            self._counters["tokens_issued"] += 1
        return _json({"access_token": token, "token_type": "Bearer", "expires_in": s.token_ttl})

    def _media(self, asset_id: str, filename: str) -> Response:
        with self._lock:
            self._counters["media"] += 1
            i = self._index(asset_id)
            if i is None:
                raise NotFound(f"no asset {asset_id}")
            rec = self._record(i)
            version = self._updated_ms(i)
        if filename != rec.get("filename"):
            raise NotFound(f"asset {asset_id} has no file {filename!r}")
        ext = str(rec.get("extension") or "").lower()
        size = rec.get("fileSize")
        data = media_bytes(asset_id, version, ext, size if isinstance(size, int) else 1024)
        return Response(
            data, 200, content_type=CONTENT_TYPES.get(ext, "application/octet-stream")
        )

    # ---------------------------------------------------------------- listings

    def _list(
        self, request: Request, style: str, since_param: str, render_as: str, host: str,
        deletions: bool, reverse: bool = False,
    ) -> Response:
        s = self.settings
        q = request.args
        since_raw = q.get(since_param)
        since_ms = _parse_since(since_raw) if since_raw else None
        size_param = "max_results" if style == "cloudinary" else "limit"
        default_size = "10" if style == "cloudinary" else "50"
        limit = _int(q.get(size_param, default_size), size_param, 1, s.max_limit)
        cursor_param = "next_cursor" if style == "cloudinary" else "cursor"
        keyset = style in ("cloudinary", "generic_cursor", "generic_header_cursor",
                           "generic_link", "nested")
        with self._lock:
            if deletions:
                n = len(self._deletions)
                dels = self._deletions

                def key(pos: int) -> int:
                    return dels[pos][0]
            else:
                n = 0 if s.list_empty else len(self._order)
                order = self._order
                upd = self._updated_ms

                def key(pos: int) -> int:
                    return upd(order[pos])

            start = bisect.bisect_left(range(n), since_ms, key=key) if since_ms is not None else 0
            lo = start
            if style in ("page", "generic_page"):
                page = _int(q.get("page", "1"), "page", 1, 10**9)
                lo = start if s.ignore_page else start + (page - 1) * limit
            elif style == "generic_offset":
                offset = _int(q.get("offset", "0"), "offset", 0, 10**12)
                lo = start if s.ignore_page else start + offset
            elif keyset and q.get(cursor_param):
                after = _decode_cursor(q[cursor_param])
                lo = max(start, bisect.bisect_right(range(n), after, key=key))
            hi = n if style == "generic_none" else min(n, lo + limit)
            lo = min(lo, n)
            next_token: str | None = None
            if keyset and hi < n and hi > lo:
                anchor = min(start + limit, n) - 1 if s.repeat_cursor else hi - 1
                next_token = _encode_cursor(key(anchor))
            positions: range | list[int] = range(lo, hi)
            if reverse:  # the same pages, counted from the newest end
                positions = [n - 1 - (p - start) for p in range(lo, hi)]
            if deletions:
                items = [self._render_deletion(dels[p], render_as) for p in positions]
            else:
                picked = [(order[p], dict(self._record(order[p]))) for p in positions]
                render = {"cloudinary": render_cloudinary, "nested": render_nested}.get(
                    render_as, render_bynder
                )
                items = [render(rec, host, i in self._hidden_ids) for i, rec in picked]
            total = n - start
        return self._list_body(style, items, next_token, total, lo - start, request)

    def _render_deletion(self, entry: tuple[int, str], render_as: str) -> dict[str, Any]:
        ms, asset_id = entry
        if render_as == "cloudinary":
            return {"asset_id": asset_id, "deleted_at": iso_ms(ms)}
        return {"id": asset_id, "dateDeleted": iso_ms(ms)}

    def _list_body(
        self, style: str, items: list[Any], token: str | None, total: int, offset: int,
        request: Request,
    ) -> Response:
        if style == "page":
            return _json(items)
        if style == "cloudinary":
            body: dict[str, Any] = {"resources": items}
            if token:
                body["next_cursor"] = token
            return _json(body)
        if style == "generic_page":
            return _json({"results": items})
        if style == "generic_offset":
            return _json({"items": items, "total": total, "offset": offset})
        if style == "generic_cursor":
            return _json({"data": items, "paging": {"next": token}})
        if style == "generic_none":
            return _json({"assets": items})
        resp = _json({"data": items} if style == "nested" else items)
        if token and style == "generic_header_cursor":
            resp.headers["X-Next-Cursor"] = token
        if token and style in ("generic_link", "nested"):
            args = request.args.copy()
            args["cursor"] = token
            query = "&".join(f"{k}={v}" for k, v in args.items(multi=True))
            base = request.base_url
            if self.settings.link_base:
                base = self.settings.link_base.rstrip("/") + request.path
            resp.headers["Link"] = f'<{base}?{query}>; rel="next"'
        return resp

    # ---------------------------------------------------------------- admin

    def _admin(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        if endpoint == "a_info":
            return _json(
                {"shape": self.shape, "assets": len(self._order), "seed": self.catalog.seed,
                 "auth": self.settings.auth,
                 "list_path": SHAPE_LIST_PATH.get(self.shape, f"/api/{self.shape}/assets"),
                 "credentials": self.credentials}
            )
        if endpoint == "a_counters":
            return _json(self.counters())
        if endpoint == "a_reset":
            self.reset_counters()
            return _json(self.counters())
        if endpoint == "a_log":
            return _json(self.request_log())
        if endpoint == "a_bad":
            return _json(self.bad_records())
        if endpoint == "a_settings":
            if request.method == "POST":
                try:
                    self.configure(**_body(request))
                except (ValueError, TypeError) as exc:
                    raise _BadRequest(str(exc)) from None
            return _json(asdict(self.settings))
        if endpoint == "a_expire":
            return _json({"expired": self.expire_tokens()})
        if endpoint == "a_add":
            return _json(self.add(_body(request)), 201)
        if endpoint == "a_redirect":
            target = request.args.get("to")
            if not target:
                raise _BadRequest("missing ?to=")
            return Response("", 302, headers={"Location": target})
        asset_id = args["asset_id"]
        if request.method == "GET":
            rec = self.record(asset_id)
        elif request.method == "DELETE":
            if not self.delete(asset_id):
                raise NotFound(f"no asset {asset_id}")
            return Response(status=204)
        else:
            rec = self.edit(asset_id, _body(request))
        if rec is None:
            raise NotFound(f"no asset {asset_id}")
        return _json(rec)


# ---------------------------------------------------------------- helpers


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status, content_type="application/json")


def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        raise _BadRequest("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body must be a JSON object")
    return data


def _basic(value: str) -> tuple[str | None, str | None]:
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    return (user, password) if sep else (None, None)


def _int(value: str, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise _BadRequest(f"{name} must be between {low} and {high}, got {number}")
    return number


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8081,
    *,
    tls: bool = False,
    ca: SandboxCA | None = None,
    **kw: Any,
) -> None:
    """Run the sandbox DAM in the foreground (`connector sandbox dam --port P --assets N`)."""
    sandbox = DamSandbox(**kw)
    server = sandbox.server(host, port, tls=tls, ca=ca)
    list_path = SHAPE_LIST_PATH.get(sandbox.shape, f"/api/{sandbox.shape}/assets")
    print(
        f"sandbox DAM ({sandbox.shape}, {len(sandbox._order)} assets, auth "
        f"{sandbox.settings.auth}) on {server.url}, list: {server.url}{list_path}",
        flush=True,
    )
    server.serve_forever()


__all__ = ["BAD_KINDS", "DamSandbox", "DamSandboxSettings", "serve_forever"]
