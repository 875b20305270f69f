"""The sandbox DAM's Cloudinary Admin and Search APIs, as Cloudinary's own Python SDK
(`cloudinary.api`, `cloudinary.search`) calls them and as Cloudinary documents them:

  GET  /v1_1/<cloud>/resources/<resource_type>[/<type>]  list, by created_at (`direction`,
       default desc), `start_at` (created since), `prefix`, `max_results` (default 10, at
       most 500), `next_cursor`; tags, context, metadata only when asked (`tags=true`, ...)
       https://cloudinary.com/documentation/admin_api#get_resources
  GET  /v1_1/<cloud>/resources/<resource_type>/<type>/<public_id>   one resource
  GET  /v1_1/<cloud>/resources/<asset_id>                           one resource
       https://cloudinary.com/documentation/admin_api#get_details_of_a_single_resource_by_asset_id
  POST /v1_1/<cloud>/resources/search  (JSON body)  and  GET (query: expression,
       sort_by[0][<field>]=asc, with_field[]=..., max_results, next_cursor)
       https://cloudinary.com/documentation/search_method
       Expressions: terms `field:value`, `field=value`, `field>value` (>=, <, <=) and
       `field:[from TO to]`, joined by AND (or spaces) and OR, no parentheses; fields
       resource_type, type, public_id (trailing *), folder/asset_folder, format, tags,
       asset_id, bytes, width, height, created_at, uploaded_at, last_updated (dates as ISO
       text or relative: 1d, 12h, 2w). Default order: created_at desc.

Every answer carries the Admin API's rate-limit headers (X-FeatureRateLimit-Limit,
-Remaining, -Reset); errors are `{"error": {"message": ...}}`, with 420 (or 429) when the
rate limit is hit (https://cloudinary.com/documentation/admin_api#usage_limits).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from sandbox.dam_data import ASSET_TYPES, render_cloudinary

CLOUD_NAME = "demo"
RESOURCE_TYPES = ("image", "video", "raw")
DELIVERY_TYPES = ("upload", "private", "authenticated")
HOURLY_LIMIT = 500        # Admin API calls per hour (free plan)
MAX_RESULTS = 500
OPTIONAL_FIELDS = ("tags", "context", "metadata")
DATE_FIELDS = ("created_at", "uploaded_at", "last_updated")
SORT_FIELDS = (*DATE_FIELDS, "public_id", "bytes")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TERM = re.compile(r"^(?P<field>[a-z_.]+)(?P<op>>=|<=|:|=|>|<)(?P<value>.+)$")
_TOKEN = re.compile(r'(?:[^\s"\[]+|"[^"]*"|\[[^\]]*\])+')


class CldError(Exception):
    """An answer Cloudinary gives as {"error": {"message": ...}} with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> Response:
    return Response(
        json.dumps({"error": {"message": message}}), status, content_type="application/json"
    )


def rate_headers(used_this_hour: int, now: float) -> dict[str, str]:
    """X-FeatureRateLimit-*: the hourly budget, what is left, when it resets (HTTP date)."""
    reset = (int(now) // 3600 + 1) * 3600
    return {
        "X-FeatureRateLimit-Limit": str(HOURLY_LIMIT),
        "X-FeatureRateLimit-Remaining": str(max(0, HOURLY_LIMIT - used_this_hour)),
        "X-FeatureRateLimit-Reset": email.utils.formatdate(reset, usegmt=True),
    }


def date_ms(value: Any) -> int | None:
    """An ISO date of a record (or None when absent or unparsable)."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def resource(
    rec: dict[str, Any], host: str, hidden: bool, include: frozenset[str] | set[str]
) -> dict[str, Any]:
    """A resource as the Admin and Search APIs return it; the optional fields (tags,
    context, metadata) only when in `include`."""
    out = render_cloudinary(rec, host, hidden)
    out.pop("updated_at", None)  # not a Cloudinary field: last_updated.updated_at is
    created = out.get("created_at")
    out["uploaded_at"] = created
    ms = date_ms(created)
    out["version"] = ms // 1000 if ms is not None else 1
    out["folder"] = out.get("asset_folder")
    out["last_updated"] = {"updated_at": rec.get("dateModified")}
    sku = rec.get("property_sku")
    out["metadata"] = {
        "sku": sku,
        "asset_type": ASSET_TYPES.get(str(rec.get("folder") or ""), "marketing"),
    } if sku else {}
    for name in OPTIONAL_FIELDS:
        if name not in include:
            out.pop(name, None)
    return out


def flags(args: Mapping[str, Any]) -> frozenset[str]:
    """The optional fields an Admin API listing asks for (`tags=true`, ...)."""
    return frozenset(n for n in OPTIONAL_FIELDS if str(args.get(n, "")).lower() == "true")


# ---------------------------------------------------------------- search requests


def search_request(method: str, args: MultiDict[str, str], body: bytes) -> dict[str, Any]:
    """The search parameters of a POST (JSON body, as the SDK sends) or a GET (query)."""
    if method == "POST":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise CldError(400, "Invalid JSON body") from None
        if not isinstance(data, dict):
            raise CldError(400, "Invalid JSON body")
        return data
    query: dict[str, Any] = {}
    sort_by: list[dict[str, str]] = []
    with_field: list[str] = []
    for key, value in args.items(multi=True):
        sort = re.fullmatch(r"sort_by\[\d*\]\[([a-z_.]+)\]", key)
        if sort:
            sort_by.append({sort.group(1): value})
        elif re.fullmatch(r"with_field(\[\d*\])?", key):
            with_field.extend(v for v in value.split(",") if v)
        else:
            query[key] = value
    if sort_by:
        query["sort_by"] = sort_by
    if with_field:
        query["with_field"] = with_field
    return query


def _date_value(text: str, now_ms: int) -> int:
    relative = re.fullmatch(r"(\d+)([smhdw])", text)
    if relative:
        return now_ms - int(relative.group(1)) * _UNITS[relative.group(2)] * 1000
    ms = date_ms(text if "T" in text else text + "T00:00:00Z")
    if ms is None:
        raise CldError(400, f"Invalid date {text!r} in search expression")
    return ms


def _compare(actual: Any, op: str, value: str, field: str, now_ms: int) -> bool:
    if field in DATE_FIELDS or field in ("bytes", "width", "height"):
        if actual is None:
            return False
        if value.startswith("[") and value.endswith("]") and op == ":":
            low, sep, high = value[1:-1].partition(" TO ")
            if not sep:
                raise CldError(400, f"Invalid range {value!r} in search expression")
            bounds = [_number(b.strip().strip('"'), field, now_ms) for b in (low, high)]
            return bool(min(bounds) <= actual <= max(bounds))
        number = _number(value, field, now_ms)
        return bool({
            ">": actual > number, ">=": actual >= number, "<": actual < number,
            "<=": actual <= number, ":": actual == number, "=": actual == number,
        }[op])
    if op not in (":", "="):
        raise CldError(400, f"Operator {op!r} is not supported for {field}")
    candidates = actual if isinstance(actual, list) else [actual]
    texts = [str(c) for c in candidates if c is not None]
    if value.endswith("*"):
        return any(t.startswith(value[:-1]) for t in texts)
    return value in texts


def _number(text: str, field: str, now_ms: int) -> float:
    if field in DATE_FIELDS:
        return _date_value(text, now_ms)
    try:
        return float(text)
    except ValueError:
        raise CldError(400, f"Invalid number {text!r} for {field}") from None


Predicate = Callable[[dict[str, Any]], bool]


def parse_expression(expression: str, now_ms: int) -> Predicate:
    """An expression (the subset listed in the module docstring) → predicate over the
    `search_fields` of one resource. An unsupported term is a 400, never ignored."""
    groups: list[list[tuple[str, str, str]]] = [[]]
    for token in _TOKEN.findall(expression or ""):
        if token == "AND":
            continue
        if token == "OR":
            groups.append([])
            continue
        match = _TERM.match(token)
        field = match.group("field") if match else ""
        field = {"tag": "tags", "asset_folder": "folder", "last_updated.updated_at":
                 "last_updated"}.get(field, field)
        if match is None or field not in _SEARCHABLE:
            raise CldError(400, f"Unsupported search expression term {token!r}")
        value = match.group("value")
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        groups[-1].append((field, match.group("op"), value))
    groups = [g for g in groups if g]

    def predicate(fields_: dict[str, Any]) -> bool:
        return not groups or any(
            all(_compare(fields_.get(f), op, v, f, now_ms) for f, op, v in group)
            for group in groups
        )

    # fail fast on bad values (dates, numbers), before any listing
    probe = dict.fromkeys(_SEARCHABLE, None)
    for group in groups:
        for f, op, v in group:
            if f in DATE_FIELDS or f in ("bytes", "width", "height"):
                _compare(0, op, v, f, now_ms)
            else:
                _compare(probe.get(f), op, v, f, now_ms)
    return predicate


_SEARCHABLE = (
    "resource_type", "type", "public_id", "folder", "format", "tags", "asset_id", "bytes",
    "width", "height", *DATE_FIELDS,
)


def search_fields(res: dict[str, Any], updated_ms: int) -> dict[str, Any]:
    """What expressions and sort_by read of one (fully rendered) resource."""
    return {
        "resource_type": res.get("resource_type"), "type": res.get("type"),
        "public_id": res.get("public_id"), "folder": res.get("asset_folder"),
        "format": res.get("format"), "tags": res.get("tags") or [],
        "asset_id": res.get("asset_id"), "bytes": res.get("bytes"),
        "width": res.get("width"), "height": res.get("height"),
        "created_at": date_ms(res.get("created_at")),
        "uploaded_at": date_ms(res.get("uploaded_at")),
        "last_updated": updated_ms,
    }


def sort_spec(sort_by: Any) -> tuple[str, bool]:
    """(field, descending) of a sort_by list such as [{"last_updated": "asc"}]; one field."""
    if not sort_by:
        return "created_at", True
    if not isinstance(sort_by, list) or len(sort_by) != 1 or not isinstance(sort_by[0], dict) \
            or len(sort_by[0]) != 1:
        raise CldError(400, "sort_by must be a list with one {field: direction}")
    (field, direction), = sort_by[0].items()
    if field not in SORT_FIELDS:
        raise CldError(400, f"Unsupported sort_by field {field!r}")
    if direction not in ("asc", "desc"):
        raise CldError(400, f"sort_by direction must be asc or desc, got {direction!r}")
    return field, direction == "desc"


# ---------------------------------------------------------------- cursors


def encode_cursor(key: Any, index: int) -> str:
    raw = json.dumps([key, index]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        key, index = json.loads(raw)
        return key, int(index)
    except (ValueError, TypeError, binascii.Error):
        raise CldError(400, f"Invalid next_cursor {token[:40]!r}") from None


def page(
    rows: list[tuple[Any, int]], descending: bool, limit: int, cursor: str | None,
    repeat_cursor: bool,
) -> tuple[list[int], str | None]:
    """Keyset paging over (key, index) rows: the indices of one page and the next cursor.
    `rows` must be sorted in the answer's order; a null key sorts first."""
    start = 0
    if cursor:
        after = _sortable(decode_cursor(cursor))
        start = len(rows)
        for pos, row in enumerate(rows):
            key = _sortable(row)
            if (key < after) if descending else (key > after):
                start = pos
                break
    chosen = rows[start:start + limit]
    token = None
    if start + limit < len(rows) and chosen:
        anchor = rows[min(limit, len(rows)) - 1] if repeat_cursor else chosen[-1]
        token = encode_cursor(*anchor)
    return [i for _, i in chosen], token


def _sortable(row: tuple[Any, int]) -> tuple[int, Any, int]:
    key, index = row
    return (0, 0, index) if key is None else (1, key, index)


def sort_rows(rows: list[tuple[Any, int]], descending: bool) -> list[tuple[Any, int]]:
    return sorted(rows, key=_sortable, reverse=descending)


def limit_of(value: Any, default: int) -> int:
    try:
        number = int(value if value is not None else default)
    except (TypeError, ValueError):
        raise CldError(400, f"max_results must be an integer, got {value!r}") from None
    if not 1 <= number <= MAX_RESULTS:
        raise CldError(400, f"max_results must be between 1 and {MAX_RESULTS}, got {number}")
    return number


def now_ms() -> int:
    return int(time.time() * 1000)
