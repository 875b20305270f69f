"""Sandbox Akeneo PIM: the Asset Manager API (and the product calls the connector makes).

It answers like Akeneo 7 (status codes, bodies, headers: docs/akeneo.md)
and adds what a real PIM cannot give a test: knobs (latency, injected 429/5xx, slow responses,
concurrency limit per connection, token lifetime) changeable at runtime, and an admin API under
`/_sandbox/` (no auth) that exposes a request log and counters so that tests can assert how the
connector behaved (did it respect Retry-After? split batches at 100? refresh tokens?).

    sandbox = PimSandbox(PimSandboxSettings(latency=0.01))
    server = sandbox.serve("127.0.0.1", 0)      # BackgroundServer, already started
    ...
    server.stop()

`serve(tls=True)` serves HTTPS (trust `server.ca_bundle`); the counters include the
server's `connections` and `tls_handshakes` (sandbox/server.py).
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import logging
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox.pim_store import ApiError, Asset, PimStore, parse_time
from sandbox.server import ConnectionCounter, SandboxCA, ServedSandbox
from sandbox.uploads import KEEP_BYTES, DigestSink, StreamingRequest

log = logging.getLogger(__name__)

API = "/api/rest/v1"
MAX_BULK_ITEMS = 100
MAX_LINE_LENGTH = 1_000_000
TOO_MANY = f"Too many resources to process, {MAX_BULK_ITEMS} is the maximum allowed."
COLLECTION_JSON = "application/vnd.akeneo.collection+json"
REFRESH_TOKEN_TTL = 14 * 24 * 3600.0


@dataclass
class PimSandboxSettings:
    """Everything a test may turn; POST /_sandbox/settings changes any of it at runtime."""

    client_id: str = "sandbox-client"
    secret: str = field(default="sandbox-secret", repr=False)
    username: str = "sandbox"
    password: str = field(default="sandbox-password", repr=False)
    extra_clients: dict[str, str] = field(default_factory=dict, repr=False)  # more connections
    token_ttl: float = 3600.0
    latency: float = 0.0  # seconds added to every API request
    bulk_latency: float = 0.0  # added to bulk asset PATCH
    max_concurrency: int = 4  # per connection (client_id); 0 = unlimited. Akeneo documents 4
    max_concurrency_instance: int = 0  # all connections together; 0 = unlimited (Akeneo: 10)
    reject_early: bool = False  # also 429 requests sent before our Retry-After elapsed
    error_rate_5xx: float = 0.0
    error_rate_429: float = 0.0
    slow_rate: float = 0.0  # share of responses delayed by slow_seconds (after the write)
    slow_seconds: float = 0.0
    retry_after: int = 1  # seconds sent in Retry-After
    seed: int | None = None
    locales: list[str] = field(default_factory=lambda: ["en_US", "fr_FR", "de_DE"])
    channels: list[str] = field(default_factory=lambda: ["ecommerce"])
    page_size: int = 100  # asset and asset family pages (Akeneo: 100)
    default_attributes: bool = True  # like Akeneo: new families get `label` and `media`
    log_size: int = 20_000
    # Refusals of one asset each (tests of per-line and per-deletion failures): a bulk line
    # for a code in `refuse_codes` gets 422, a DELETE of a code in `forbid_delete_codes` 403.
    refuse_codes: list[str] = field(default_factory=list)
    forbid_delete_codes: list[str] = field(default_factory=list)
    # Answers of the next asset DELETEs, one status each, then normal again: 429 (with
    # Retry-After) and 5xx are transient faults, 403/405/422 refusals (Akeneo's spec lists
    # only 204/401/404 for this call: these are injected faults, like error_rate_5xx).
    delete_errors: list[int] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """The settings without the secrets (for GET/POST /_sandbox/settings answers)."""
        data = dataclasses.asdict(self)
        data["secret"] = "********"
        data["password"] = "********"
        data["extra_clients"] = sorted(self.extra_clients)
        return data


@dataclass
class _Token:
    client_id: str
    expires_at: float
    refresh_token: str


@dataclass
class _Call:
    """What the request log keeps about one API call."""

    t: float
    method: str
    path: str
    template: str
    client: str | None = None
    status: int = 0
    items: int | None = None
    early: bool = False
    injected: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "method": self.method,
            "path": self.path,
            "template": self.template,
            "status": self.status,
            "client": self.client,
            "items": self.items,
            "early": self.early,
            "injected": self.injected,
        }


def _rules() -> list[Rule]:
    """Routes, with the spec's path templates as rule strings (counters are keyed by them)."""
    fam = f"{API}/asset-families/<asset_family_code>"
    return [
        Rule("/api/oauth/v1/token", endpoint="token", methods=["POST"]),
        Rule(f"{API}/asset-families", endpoint="families", methods=["GET"]),
        Rule(f"{API}/asset-families/<code>", endpoint="family", methods=["GET", "PATCH"]),
        Rule(f"{fam}/attributes", endpoint="attributes", methods=["GET"]),
        Rule(f"{fam}/attributes/<code>", endpoint="attribute", methods=["GET", "PATCH"]),
        Rule(f"{fam}/attributes/<attribute_code>/options", endpoint="options", methods=["GET"]),
        Rule(
            f"{fam}/attributes/<attribute_code>/options/<code>",
            endpoint="option",
            methods=["GET", "PATCH"],
        ),
        Rule(f"{fam}/assets", endpoint="assets", methods=["GET", "PATCH"]),
        Rule(f"{fam}/assets/<code>", endpoint="asset", methods=["GET", "PATCH", "DELETE"]),
        Rule(f"{API}/asset-media-files", endpoint="media_upload", methods=["POST"]),
        Rule(f"{API}/asset-media-files/<path:code>", endpoint="media", methods=["GET"]),
        Rule(f"{API}/products", endpoint="products", methods=["GET", "PATCH"]),
        Rule(f"{API}/products/<code>", endpoint="product", methods=["GET"]),
    ]


_TEMPLATE_RE = re.compile(r"<(?:\w+:)?(\w+)>")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/json"
    )


def _error(exc: ApiError, headers: dict[str, str] | None = None) -> Response:
    return _json(exc.body(), exc.status, headers)


def _unsupported_type(given: str, expected: str) -> ApiError:
    return ApiError(
        415,
        f"\u2018{given or 'none'}\u2019 in \u2018Content-type\u2019 header is not valid.  "
        f"Only \u2018{expected}\u2019 is allowed.",
    )


def _updated_test(operator: str, moment: float) -> Callable[[Asset], bool]:
    if operator == ">":
        return lambda asset: asset.updated > moment
    return lambda asset: asset.updated < moment


_DELETE_MESSAGES = {
    403: "You are not allowed to delete this asset.",
    405: "Method Not Allowed.",
    422: "The asset cannot be deleted.",
    429: "You have exceeded the limit of API requests per second.",
    500: "Internal server error.",
    502: "Bad gateway.",
    503: "Service temporarily unavailable.",
}


def injected_delete_error(status: int, retry_after: int) -> Response:
    """An injected answer to an asset DELETE (`delete_errors`): `{code, message}`, and a
    Retry-After on 429/503."""
    headers = {"Retry-After": str(max(0, int(retry_after)))} if status in (429, 503) else None
    return _json({"code": status, "message": _DELETE_MESSAGES[status]}, status, headers)


def _code_test(inside: bool, codes: frozenset[str]) -> Callable[[Asset], bool]:
    return lambda asset: (asset.code in codes) == inside


_NUMBERS = frozenset(
    {
        "token_ttl",
        "latency",
        "bulk_latency",
        "error_rate_5xx",
        "error_rate_429",
        "slow_rate",
        "slow_seconds",
    }
)
_INTEGERS = frozenset(
    {"max_concurrency", "max_concurrency_instance", "retry_after", "page_size", "log_size"}
)
_TEXTS = frozenset({"client_id", "secret", "username", "password"})
_DELETE_ERRORS = frozenset({403, 405, 422, 429, 500, 502, 503})
_FLAGS = frozenset({"reject_early", "default_attributes"})


def _checked_setting(name: str, value: Any) -> Any:
    """Refuse a setting of the wrong type before it can break a request thread."""
    if name in _NUMBERS:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        expected = "a number >= 0"
    elif name in _INTEGERS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        expected = "an integer >= 0"
    elif name in _TEXTS:
        ok, expected = isinstance(value, str) and bool(value), "a non-empty string"
    elif name in _FLAGS:
        ok, expected = isinstance(value, bool), "true or false"
    elif name in ("locales", "channels", "refuse_codes", "forbid_delete_codes"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        expected = "a list of codes"
    elif name == "delete_errors":
        ok = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) and v in _DELETE_ERRORS for v in value
        )
        expected = f"a list of statuses among {sorted(_DELETE_ERRORS)}"
    elif name == "extra_clients":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
        expected = "an object client_id -> secret"
    else:  # seed
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
        expected = "an integer or null"
    if not ok:
        raise ValueError(f"sandbox setting {name} should be {expected}, got {value!r}")
    return value


class PimSandbox(ServedSandbox):
    """The sandbox PIM: a WSGI app (`.app`) holding all its state in memory."""

    def __init__(self, settings: PimSandboxSettings | None = None) -> None:
        self.settings = settings or PimSandboxSettings()
        self.store = PimStore(
            self.settings.locales, self.settings.channels, self.settings.default_attributes
        )
        self._meta = threading.Lock()  # tokens, counters, log, concurrency, random
        self._rng = random.Random(self.settings.seed)
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, tuple[str, float]] = {}  # refresh token → client, expiry
        self._log: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=self.settings.log_size
        )
        self._inflight: collections.Counter[str] = collections.Counter()
        self._inflight_total = 0
        self._blocked_until: dict[str, float] = {}
        self._counters = self._fresh_counters()
        self.connections = ConnectionCounter()  # filled by the servers this sandbox runs on
        self._url_map = Map(_rules(), strict_slashes=False)

    # --- public helpers (in-process use) ---------------------------------------------------

    @property
    def app(self) -> Callable[..., Any]:
        return self._wsgi

    def update_settings(self, **changes: Any) -> PimSandboxSettings:
        """Change knobs at runtime (same rules as POST /_sandbox/settings)."""
        known = {f.name for f in dataclasses.fields(PimSandboxSettings)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        changes = {name: _checked_setting(name, v) for name, v in changes.items()}
        with self._meta:
            self.settings = dataclasses.replace(self.settings, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.settings.seed)
            if "log_size" in changes:
                self._log = collections.deque(self._log, maxlen=self.settings.log_size)
        self.store.configure(
            self.settings.locales, self.settings.channels, self.settings.default_attributes
        )
        return self.settings

    def reset(self) -> None:
        """Forget all data, counters and the log (tokens stay valid)."""
        self.store.clear()
        with self._meta:
            self._log.clear()
            self._counters = self._fresh_counters()
            self._blocked_until.clear()
        self.connections.reset()

    def expire_tokens(self) -> int:
        """Make every access token expired (refresh tokens keep working)."""
        with self._meta:
            for token in self._tokens.values():
                token.expires_at = 0.0
            return len(self._tokens)

    def revoke_tokens(self) -> int:
        """Forget all access and refresh tokens: clients must grant again with the password."""
        with self._meta:
            count = len(self._tokens)
            self._tokens.clear()
            self._refresh.clear()
            return count

    def counters(self) -> dict[str, Any]:
        with self._meta:
            data: dict[str, Any] = json.loads(json.dumps(self._counters))
        data["assets_stored"] = self.store.count_assets()
        data.update(self.connections.snapshot())
        return data

    def log(self, since: float | None = None) -> list[dict[str, Any]]:
        with self._meta:
            records = list(self._log)
        if since is not None:
            records = [r for r in records if r["t"] > since]
        return records

    def dump_assets(self, family: str) -> list[dict[str, Any]]:
        return self.store.dump_assets(family)

    def seed_family(
        self,
        code: str,
        family: dict[str, Any] | None = None,
        attributes: Iterable[dict[str, Any]] = (),
        options: dict[str, Iterable[str]] | None = None,
    ) -> None:
        """Create a family, its attributes and options without HTTP (test setup)."""
        family = dict(family or {})
        rules = family.pop("product_link_rules", None)
        main_media = family.pop("attribute_as_main_media", None)
        self.store.upsert_family(code, family)
        for attribute in attributes:
            self.store.upsert_attribute(code, attribute["code"], attribute)
        for attribute_code, option_codes in (options or {}).items():
            for option in option_codes:
                self.store.upsert_option(code, attribute_code, option, {"code": option})
        late = {}
        if rules is not None:
            late["product_link_rules"] = rules
        if main_media is not None:
            late["attribute_as_main_media"] = main_media
        if late:
            self.store.upsert_family(code, late)

    # --- WSGI ------------------------------------------------------------------------------

    @staticmethod
    def _fresh_counters() -> dict[str, Any]:
        return {
            "requests": {},
            "status_429": 0,
            "concurrency_429": 0,
            "injected_429": 0,
            "injected_5xx": 0,
            "slow_responses": 0,
            "early_requests": 0,
            "early_by_client": {},
            "max_concurrent": 0,
            "max_concurrent_by_client": {},
            "bulk_asset_requests": 0,
            "bulk_assets_total": 0,
            "bulk_asset_sizes": {},
            "max_assets_per_bulk": 0,
            "product_bulk_requests": 0,
            "option_writes": 0,
            "media_uploads": 0,
            "token_grants": 0,
            "token_refreshes": 0,
            "token_failures": 0,
            "unauthorized": 0,
            "sandbox_errors": 0,
        }

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = StreamingRequest(environ)  # an upload is hashed, not held (sandbox/uploads.py)
        if request.path.startswith("/_sandbox/"):
            return self._admin(request)(environ, start_response)
        return self._api(request)(environ, start_response)

    def _api(self, request: Request) -> Response:
        call = _Call(t=time.time(), method=request.method, path=request.path, template=request.path)
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            rule, args = adapter.match(return_rule=True)
        except NotFound:
            call.status = 404
            self._finish(call)
            return _json(
                {"code": 404, "message": f'No route found for "{request.method} {request.path}"'},
                404,
            )
        except MethodNotAllowed:
            call.status = 405
            self._finish(call)
            return _json(
                {
                    "code": 405,
                    "message": f"Method {request.method} is not allowed on {request.path}.",
                },
                405,
            )
        call.template = _TEMPLATE_RE.sub(r"{\1}", rule.rule)
        endpoint = str(rule.endpoint)
        try:
            client = self._authenticate(request, endpoint)
        except ApiError as exc:
            call.status = exc.status
            self._finish(call)
            return _error(exc)
        call.client = client
        response = self._guarded(request, call, endpoint, dict(args))
        call.status = response.status_code
        self._finish(call)
        return response

    def _authenticate(self, request: Request, endpoint: str) -> str:
        """The client_id behind the call (Basic for the token endpoint, Bearer elsewhere)."""
        if endpoint == "token":
            return self._basic_client(request) or "anonymous"
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            with self._meta:
                self._counters["unauthorized"] += 1
            raise ApiError(401, "Authentication is required")
        value = header[7:].strip()
        with self._meta:
            token = self._tokens.get(value)
            if token is None:
                self._counters["unauthorized"] += 1
                raise ApiError(401, "The access token provided is invalid.")
            if token.expires_at <= time.time():
                self._counters["unauthorized"] += 1
                raise ApiError(401, "The access token provided has expired.")
            return token.client_id

    def _guarded(
        self, request: Request, call: _Call, endpoint: str, args: dict[str, str]
    ) -> Response:
        """Concurrency limit, Retry-After bookkeeping, injected faults and latency."""
        client = call.client or "anonymous"
        settings = self.settings
        with self._meta:
            counters = self._counters
            blocked = self._blocked_until.get(client)
            if blocked is not None and call.t < blocked:
                call.early = True
                counters["early_requests"] += 1
                counters["early_by_client"][client] = counters["early_by_client"].get(client, 0) + 1
            self._inflight[client] += 1
            self._inflight_total += 1
            counters["max_concurrent"] = max(counters["max_concurrent"], self._inflight_total)
            by_client = counters["max_concurrent_by_client"]
            by_client[client] = max(by_client.get(client, 0), self._inflight[client])
            over = (
                settings.max_concurrency > 0 and self._inflight[client] > settings.max_concurrency
            ) or (
                settings.max_concurrency_instance > 0
                and self._inflight_total > settings.max_concurrency_instance
            )
            inject_429 = inject_5xx = slow = False
            if endpoint != "token":
                inject_429 = self._rng.random() < settings.error_rate_429
                inject_5xx = self._rng.random() < settings.error_rate_5xx
                slow = self._rng.random() < settings.slow_rate
            status_5xx = self._rng.choice((500, 502, 503))
        try:
            if over or inject_429 or (call.early and settings.reject_early):
                kind = "concurrency" if over else ("injected" if inject_429 else "early")
                call.injected = f"429-{kind}"
                return self._too_many(client, kind)
            if inject_5xx:
                call.injected = str(status_5xx)
                with self._meta:
                    self._counters["injected_5xx"] += 1
                return self._server_error(status_5xx)
            delay = settings.latency
            if endpoint == "assets" and request.method == "PATCH":
                delay += settings.bulk_latency
            if delay > 0:
                time.sleep(delay)
            try:
                response = self._dispatch(request, call, endpoint, args)
            except ApiError as exc:
                response = _error(exc)
            except Exception as exc:  # a sandbox bug: say so, never pass it off as a PIM fault
                log.exception("sandbox PIM failed on %s %s", request.method, request.path)
                with self._meta:
                    self._counters["sandbox_errors"] += 1
                response = _json({"code": 500, "message": f"Sandbox bug: {exc!r}"}, 500)
            if slow and settings.slow_seconds > 0:
                call.injected = "slow"
                with self._meta:
                    self._counters["slow_responses"] += 1
                time.sleep(settings.slow_seconds)
            return response
        finally:
            with self._meta:
                self._inflight[client] -= 1
                self._inflight_total -= 1

    def _too_many(self, client: str, kind: str) -> Response:
        retry_after = max(0, int(self.settings.retry_after))
        with self._meta:
            self._counters["status_429"] += 1
            if kind == "concurrency":
                self._counters["concurrency_429"] += 1
            elif kind == "injected":
                self._counters["injected_429"] += 1
            until = time.time() + retry_after
            self._blocked_until[client] = max(self._blocked_until.get(client, 0.0), until)
        return _json(
            {"code": 429, "message": "You have exceeded the limit of API requests per second."},
            429,
            {"Retry-After": str(retry_after)},
        )

    @staticmethod
    def _server_error(status: int) -> Response:
        if status == 502:  # what a gateway in front of the PIM sends: not JSON
            return Response(
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
                status=502,
                content_type="text/html",
            )
        message = {500: "Internal server error.", 503: "Service temporarily unavailable."}[status]
        return _json({"code": status, "message": message}, status)

    def _finish(self, call: _Call) -> None:
        key = f"{call.method} {call.template} {call.status}"
        with self._meta:
            requests = self._counters["requests"]
            requests[key] = requests.get(key, 0) + 1
            self._log.append(call.record())

    # --- endpoints -------------------------------------------------------------------------

    def _dispatch(
        self, request: Request, call: _Call, endpoint: str, args: dict[str, str]
    ) -> Response:
        method = request.method
        store = self.store
        base = request.host_url.rstrip("/")
        if endpoint == "token":
            return self._token(request)
        if endpoint == "families":
            return self._page(
                request,
                lambda after, size: store.list_families(after, size),
                lambda item: f"{base}{API}/asset-families/{item['code']}",
            )
        if endpoint == "family":
            if method == "GET":
                return _json(store.get_family(args["code"]))
            status = store.upsert_family(args["code"], self._json_body(request))
            return self._written(status, f"{base}{API}/asset-families/{args['code']}")
        family = args.get("asset_family_code", "")
        family_url = f"{base}{API}/asset-families/{family}"
        if endpoint == "attributes":
            return _json(store.list_attributes(family))
        if endpoint == "attribute":
            if method == "GET":
                return _json(store.get_attribute(family, args["code"]))
            status = store.upsert_attribute(family, args["code"], self._json_body(request))
            return self._written(status, f"{family_url}/attributes/{args['code']}")
        if endpoint == "options":
            return _json(store.list_options(family, args["attribute_code"]))
        if endpoint == "option":
            attribute = args["attribute_code"]
            if method == "GET":
                return _json(store.get_option(family, attribute, args["code"]))
            with self._meta:
                self._counters["option_writes"] += 1
            status = store.upsert_option(family, attribute, args["code"], self._json_body(request))
            return self._written(
                status, f"{family_url}/attributes/{attribute}/options/{args['code']}"
            )
        if endpoint == "assets":
            if method == "PATCH":
                return self._bulk_assets(request, call, family)
            keep = self._asset_filter(request)
            return self._page(
                request,
                lambda after, size: store.list_assets(family, after, size, keep, base),
                lambda item: f"{family_url}/assets/{item['code']}",
            )
        if endpoint == "asset":
            code = args["code"]
            if method == "GET":
                return _json(store.get_asset(family, code, base))
            if method == "DELETE":
                if code in self.settings.forbid_delete_codes:
                    raise ApiError(403, "You are not allowed to delete this asset.")
                injected = self._next_delete_error()
                if injected is not None:
                    call.injected = f"delete-{injected}"
                    return injected_delete_error(injected, self.settings.retry_after)
                store.delete_asset(family, code)
                return Response(status=204)
            status = store.upsert_asset(family, self._json_body(request), url_code=code)
            return self._written(status, f"{family_url}/assets/{code}")
        if endpoint == "media_upload":
            return self._upload(request, base)
        if endpoint == "media":
            media = store.get_media(args["code"])
            if media.content is None:
                raise ApiError(501, f"The sandbox kept only the size ({media.size} bytes) and "
                                    f"sha256 of this media file (over {KEEP_BYTES} bytes).")
            return Response(
                media.content,
                status=200,
                content_type=media.mime_type,
                headers={"Content-Disposition": f'attachment; filename="{media.filename}"'},
            )
        if endpoint == "products":
            if method == "PATCH":
                return self._bulk_products(request, call)
            return self._list_products(request, base)
        if endpoint == "product":
            return _json(store.get_product(args["code"]))
        raise ApiError(404, "Unknown endpoint.")  # pragma: no cover - every rule is handled

    def _next_delete_error(self) -> int | None:
        """The status queued for this DELETE in `delete_errors` (consumed), or None."""
        with self._meta:
            queued = self.settings.delete_errors
            if not queued:
                return None
            self.settings = dataclasses.replace(self.settings, delete_errors=queued[1:])
            return queued[0]

    @staticmethod
    def _written(status: int, location: str) -> Response:
        return Response(status=status, headers={"Location": location})

    @staticmethod
    def _json_body(request: Request, content_type: str = "application/json") -> Any:
        if request.mimetype != content_type:
            raise _unsupported_type(request.mimetype, content_type)
        try:
            return json.loads(request.get_data(cache=True))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "Invalid JSON message received") from exc

    def _page(
        self,
        request: Request,
        fetch: Callable[[str | None, int], Any],
        self_link: Callable[[dict[str, Any]], str],
    ) -> Response:
        after = request.args.get("search_after") or None
        page = fetch(after, max(1, int(self.settings.page_size)))
        base_url = request.base_url
        params = {k: v for k, v in request.args.items() if k != "search_after"}
        first = base_url + ("?" + urlencode(params) if params else "")
        links: dict[str, Any] = {"self": {"href": request.url}, "first": {"href": first}}
        if page.next_cursor is not None:
            links["next"] = {
                "href": base_url + "?" + urlencode({**params, "search_after": page.next_cursor})
            }
        items = [{"_links": {"self": {"href": self_link(item)}}, **item} for item in page.items]
        return _json({"_links": links, "_embedded": {"items": items}})

    @staticmethod
    def _asset_filter(request: Request) -> Callable[[Asset], bool] | None:
        """`search={"updated":[{"operator":">","value":"…"}],"code":[{"operator":"IN",…}]}`."""
        raw = request.args.get("search")
        if not raw:
            return None
        try:
            search = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "Search query parameter should be valid JSON.") from exc
        if not isinstance(search, dict):
            raise ApiError(422, "Search query parameter should be a JSON object.")
        tests: list[Callable[[Asset], bool]] = []
        for prop, conditions in search.items():
            if not isinstance(conditions, list):
                raise ApiError(422, f'Filter "{prop}" should be an array of conditions.')
            for condition in conditions:
                if not isinstance(condition, dict):
                    raise ApiError(422, f'Each "{prop}" condition should be an object.')
                operator, value = condition.get("operator"), condition.get("value")
                if prop == "updated" and operator in (">", "<"):
                    try:
                        moment = parse_time(str(value))
                    except ValueError as exc:
                        raise ApiError(
                            422, f'"{value}" is not a valid ISO 8601 date for the filter "updated".'
                        ) from exc
                    tests.append(_updated_test(str(operator), moment))
                elif prop == "code" and operator in ("IN", "NOT IN") and isinstance(value, list):
                    tests.append(_code_test(operator == "IN", frozenset(str(v) for v in value)))
                else:
                    raise ApiError(
                        422,
                        f'The filter "{prop}" with operator "{operator}" is not supported.',
                    )
        return lambda asset: all(test(asset) for test in tests)

    def _bulk_assets(self, request: Request, call: _Call, family: str) -> Response:
        if request.mimetype != "application/json":
            raise _unsupported_type(request.mimetype, "application/json")
        self.store.get_family(family)  # 404 for the whole request
        body = self._json_body(request)
        if not isinstance(body, list):
            raise ApiError(422, "The request body should be a JSON array of assets.")
        call.items = len(body)
        with self._meta:
            counters = self._counters
            counters["bulk_asset_requests"] += 1
            counters["bulk_assets_total"] += len(body)
            sizes = counters["bulk_asset_sizes"]
            sizes[str(len(body))] = sizes.get(str(len(body)), 0) + 1
            counters["max_assets_per_bulk"] = max(counters["max_assets_per_bulk"], len(body))
        if len(body) > MAX_BULK_ITEMS:
            raise ApiError(413, TOO_MANY)
        results: list[dict[str, Any]] = []
        for item in body:
            code = item.get("code") if isinstance(item, dict) else None
            line: dict[str, Any] = {"code": code if isinstance(code, str) else ""}
            try:
                if line["code"] and line["code"] in self.settings.refuse_codes:
                    raise ApiError(
                        422,
                        "Property \"values\" contains errors.",
                        [{"property": "values", "message": "This value is refused (sandbox)."}],
                    )
                line["status_code"] = self.store.upsert_asset(family, item)
            except ApiError as exc:
                line["status_code"] = exc.status
                line["message"] = exc.message
                if exc.errors:
                    line["errors"] = exc.errors
            results.append(line)
        return _json(results)

    def _upload(self, request: Request, base: str) -> Response:
        if request.mimetype != "multipart/form-data":
            raise _unsupported_type(request.mimetype, "multipart/form-data")
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(422, 'Property "file" is required.')
        sink = upload.stream
        if not isinstance(sink, DigestSink):  # pragma: no cover - StreamingRequest made it
            raise ApiError(500, "the upload was not streamed into a DigestSink")
        code = self.store.add_media(upload.filename or "file", sink.content,
                                    upload.mimetype or None, size=sink.size,
                                    sha256=sink.sha256.hexdigest())
        with self._meta:
            self._counters["media_uploads"] += 1
        return Response(
            status=201,
            headers={
                "Asset-media-file-code": code,
                "Location": f"{base}{API}/asset-media-files/{code}",
            },
        )

    def _bulk_products(self, request: Request, call: _Call) -> Response:
        if request.mimetype != COLLECTION_JSON:
            raise _unsupported_type(request.mimetype, COLLECTION_JSON)
        text = request.get_data(cache=True).decode("utf-8", errors="replace")
        lines = [line for line in text.split("\n") if line.strip()]
        call.items = len(lines)
        with self._meta:
            self._counters["product_bulk_requests"] += 1
        if len(lines) > MAX_BULK_ITEMS:
            raise ApiError(413, TOO_MANY)
        if any(len(line) > MAX_LINE_LENGTH for line in lines):
            raise ApiError(413, f"Line is too long (max {MAX_LINE_LENGTH} characters).")
        out: list[str] = []
        for number, line in enumerate(lines, start=1):
            result: dict[str, Any] = {"line": number}
            try:
                product = json.loads(line)
            except ValueError:
                result.update({"status_code": 400, "message": "Invalid json message received"})
                out.append(json.dumps(result))
                continue
            identifier = product.get("identifier") if isinstance(product, dict) else None
            if isinstance(identifier, str):
                result["identifier"] = identifier
            try:
                _, status = self.store.upsert_product(product)
                result["status_code"] = status
            except ApiError as exc:
                result["status_code"] = exc.status
                result["message"] = exc.message
                if exc.errors:
                    result["errors"] = exc.errors
            out.append(json.dumps(result))
        return Response("\n".join(out), status=200, content_type=COLLECTION_JSON)

    def _list_products(self, request: Request, base: str) -> Response:
        identifiers: list[str] | None = None
        raw = request.args.get("search")
        if raw:
            try:
                search = json.loads(raw)
            except ValueError as exc:
                raise ApiError(400, "Search query parameter should be valid JSON.") from exc
            if not isinstance(search, dict) or set(search) - {"identifier"}:
                raise ApiError(422, 'Only the "identifier" filter is supported by the sandbox.')
            for condition in search.get("identifier", []):
                operator, value = condition.get("operator"), condition.get("value")
                if operator == "IN" and isinstance(value, list):
                    identifiers = [str(v) for v in value]
                elif operator == "=" and isinstance(value, str):
                    identifiers = [value]
                else:
                    raise ApiError(422, f'Operator "{operator}" is not supported for "identifier".')
        try:
            limit = int(request.args.get("limit", "10"))
            page = int(request.args.get("page", "1"))
        except ValueError as exc:
            raise ApiError(422, "limit and page should be integers.") from exc
        if not 1 <= limit <= 100:
            raise ApiError(422, "You cannot request more than 100 items.")
        if page < 1:
            raise ApiError(422, "The page should be 1 or more.")
        products = self.store.find_products(identifiers)
        chosen = products[(page - 1) * limit : page * limit]
        params = {k: v for k, v in request.args.items() if k != "page"}
        base_url = request.base_url

        def link(number: int) -> dict[str, str]:
            return {"href": base_url + "?" + urlencode({**params, "page": number, "limit": limit})}

        links: dict[str, Any] = {"self": link(page), "first": link(1)}
        if page > 1:
            links["previous"] = link(page - 1)
        if page * limit < len(products):
            links["next"] = link(page + 1)
        items = [
            {"_links": {"self": {"href": f"{base}{API}/products/{p['identifier']}"}}, **p}
            for p in chosen
        ]
        return _json({"_links": links, "current_page": page, "_embedded": {"items": items}})

    # --- token endpoint --------------------------------------------------------------------

    def _basic_client(self, request: Request) -> str | None:
        """The client_id of a valid Basic header, or None."""
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, _, secret = decoded.partition(":")
        settings = self.settings
        accepted = {settings.client_id: settings.secret, **settings.extra_clients}
        expected = accepted.get(client_id)
        if expected is None or not secrets.compare_digest(expected.encode(), secret.encode()):
            return None
        return client_id

    def _token(self, request: Request) -> Response:
        client_id = self._basic_client(request)
        if request.mimetype == "application/json":
            try:
                body = json.loads(request.get_data(cache=True))
            except (ValueError, UnicodeDecodeError):
                return self._token_error(ApiError(400, "Invalid JSON message received"))
        elif request.mimetype == "application/x-www-form-urlencoded":
            body = request.form.to_dict()
        else:
            return self._token_error(_unsupported_type(request.mimetype, "application/json"))
        if client_id is None:
            return self._token_error(
                ApiError(
                    422,
                    'Parameter "client_id" is missing or does not match any client, or secret '
                    "is invalid",
                )
            )
        if not isinstance(body, dict):
            return self._token_error(
                ApiError(422, "Invalid grant_type parameter or parameter missing")
            )
        grant = body.get("grant_type")
        settings = self.settings
        with self._meta:
            if grant == "password":
                username, password = body.get("username"), body.get("password")
                if not isinstance(username, str) or not isinstance(password, str) or not username:
                    self._counters["token_failures"] += 1
                    return _error(
                        ApiError(
                            422,
                            'Parameter "grant_type", "username" or "password" is missing, empty '
                            "or invalid",
                        )
                    )
                if username != settings.username or not secrets.compare_digest(
                    password.encode(), settings.password.encode()
                ):
                    self._counters["token_failures"] += 1
                    return _error(
                        ApiError(422, "No user found for the given username and password")
                    )
                self._counters["token_grants"] += 1
            elif grant == "refresh_token":
                given = body.get("refresh_token")
                known = self._refresh.pop(given, None) if isinstance(given, str) else None
                if known is None or known[0] != client_id or known[1] <= time.time():
                    self._counters["token_failures"] += 1
                    return _error(ApiError(422, "Refresh token is invalid or has expired"))
                self._counters["token_refreshes"] += 1
            else:
                self._counters["token_failures"] += 1
                return _error(ApiError(422, "Invalid grant_type parameter or parameter missing"))
            access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            stamp = time.time()
            self._tokens[access] = _Token(client_id, stamp + settings.token_ttl, refresh)
            self._refresh[refresh] = (client_id, stamp + REFRESH_TOKEN_TTL)
        return _json(
            {
                "access_token": access,
                "expires_in": math.ceil(settings.token_ttl),
                "token_type": "bearer",
                "scope": None,
                "refresh_token": refresh,
            }
        )

    def _token_error(self, exc: ApiError) -> Response:
        with self._meta:
            self._counters["token_failures"] += 1
        return _error(exc)

    # --- admin -----------------------------------------------------------------------------

    def _admin(self, request: Request) -> Response:
        path = request.path[len("/_sandbox/") :].strip("/")
        method = request.method
        try:
            if path == "log" and method == "GET":
                since = request.args.get("since")
                records = self.log(float(since) if since else None)
                limit = request.args.get("limit")
                return _json(records[-int(limit) :] if limit else records)
            if path == "counters" and method == "GET":
                return _json(self.counters())
            if path == "settings" and method == "GET":
                return _json(self.settings.public())
            if path == "settings" and method == "POST":
                changes = self._admin_body(request)
                try:
                    self.update_settings(**changes)
                except (ValueError, TypeError) as exc:
                    return _json({"code": 400, "message": str(exc)}, 400)
                return _json(self.settings.public())
            if path == "reset" and method == "POST":
                self.reset()
                return _json({"reset": True})
            if path == "tokens/expire" and method == "POST":
                return _json({"expired": self.expire_tokens()})
            if path == "tokens/revoke" and method == "POST":
                return _json({"revoked": self.revoke_tokens()})
            if path == "credentials" and method == "POST":
                changes = self._admin_body(request)
                allowed = {"client_id", "secret", "username", "password"}
                if not changes or set(changes) - allowed:
                    return _json(
                        {"code": 400, "message": f"expected some of: {', '.join(sorted(allowed))}"},
                        400,
                    )
                self.update_settings(**changes)
                return _json({"changed": sorted(changes)})
            if path.startswith("assets/") and method == "GET":
                return _json(self.dump_assets(path[len("assets/") :]))
            if path.startswith("updated/") and method == "GET":
                return _json(self.store.update_times(path[len("updated/") :]))
            if path == "products" and method == "GET":
                return _json(self.store.find_products(None))
        except ApiError as exc:
            return _error(exc)
        return _json(
            {"code": 404, "message": f"No sandbox admin route {method} /_sandbox/{path}"}, 404
        )

    @staticmethod
    def _admin_body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(request.get_data(cache=True) or b"{}")
        except ValueError as exc:
            raise ApiError(400, "Invalid JSON message received") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "A JSON object is expected.")
        return body


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8081,
    settings: PimSandboxSettings | None = None,
    *,
    tls: bool = False,
    ca: SandboxCA | None = None,
) -> None:
    """Run the sandbox PIM in the foreground (the CLI's `sandbox pim` command)."""
    sandbox = PimSandbox(settings)
    sandbox.server(host, port, tls=tls, ca=ca).serve_forever()
