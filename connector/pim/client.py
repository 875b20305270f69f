"""Typed access to the Akeneo PIM REST API (Asset Manager, media files, products).

Every call: takes a slot from the fleet-wide Redis budget (concurrency, rate, option-write
rate, Retry-After gate), carries the shared access token, has a timeout, and is classified
in one place (`connector.pim.http`). A 401 triggers one token renewal and one retry. Those
steps are the transport (`connector.pim.transport`); this module is the endpoints.

The client does not loop on transient errors — the pipeline retries with backoff. The only
waiting it does is inside the budget (which also honours a 429's `Retry-After` for every
process). Thread-safe: one client may be shared by the threads of a process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit

from connector import metrics
from connector.config.model import PimConfig
from connector.pim.errors import (
    AssetResult,
    PermanentPimError,
    PimAuthError,
    PimError,
    TransientPimError,
)
from connector.pim.http import classify_status
from connector.pim.multipart import MultipartFile
from connector.pim.transport import API, PimTransport
from connector.redis_conn import Keys, get_redis
from connector.settings import PimCredentials

BULK_LIMIT = 100  # Akeneo refuses more than 100 items per bulk request (413)
COLLECTION_JSON = "application/vnd.akeneo.collection+json"
MEDIA_CODE_HEADER = "Asset-media-file-code"
_COPY_CHUNK = 1024 * 1024


def _seg(value: str) -> str:
    """One URL path segment (codes are `[A-Za-z0-9_]`, but never trust input in a URL)."""
    return quote(value, safe="")


def _media_seg(code: str) -> str:
    """A media-file code keeps its slashes (`a/b/c/d/<sha1>_name`), as Akeneo's clients do."""
    return quote(code, safe="/")


def _uploaded_bytes(fileobj: IO[bytes], start: int) -> int:
    """What an upload sent (for the metrics): the file's size from `start`; 0 when it
    cannot be told."""
    try:
        return max(0, fileobj.seek(0, os.SEEK_END) - start)
    except (OSError, ValueError):
        return 0


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _utc_z(moment: datetime) -> str:
    """Akeneo's search date format; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def media_code_from_headers(headers: Any) -> str | None:
    """The media-file code: `Asset-media-file-code` (any case), else from `Location`.

    Akeneo's codes contain slashes (`1/2/3/4/<sha1>_name.png`), so from `Location` we take
    everything after `/asset-media-files/`, and only the last segment for any other URL.
    """
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    code = lowered.get(MEDIA_CODE_HEADER.lower(), "").strip()
    if code:
        return code
    path = urlsplit(lowered.get("location", "").strip()).path.rstrip("/")
    if not path:
        return None
    marker = "/asset-media-files/"
    code = path.split(marker, 1)[1] if marker in path else path.rsplit("/", 1)[-1]
    return unquote(code) or None


class AkeneoClient(PimTransport):
    """The PIM operations the connector needs (docs/akeneo.md), budgeted and classified."""

    @classmethod
    def from_env(cls, config: PimConfig | None = None) -> AkeneoClient:
        """Credentials from AKENEO_*, Redis from REDIS_URL, keys from CONNECTOR_NAMESPACE."""
        return cls(PimCredentials.from_env(), config or PimConfig(), get_redis(), Keys())

    def __repr__(self) -> str:
        return f"AkeneoClient(url={self.base_url!r}, client_id={self.credentials.client_id!r})"

    def __enter__(self) -> AkeneoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ asset families

    def list_asset_families(self) -> Iterator[dict[str, Any]]:
        return self._paginate(f"{API}/asset-families")

    def get_asset_family(self, code: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._get_or_none(f"{API}/asset-families/{_seg(code)}")
        return result

    def upsert_asset_family(self, code: str, body: dict[str, Any]) -> int:
        """201 created / 204 updated."""
        return self._patch_status(f"{API}/asset-families/{_seg(code)}", {**body, "code": code})

    def get_attributes(self, family: str) -> list[dict[str, Any]]:
        response = self._request("GET", f"{API}/asset-families/{_seg(family)}/attributes")
        return list(self._json(response, "GET") or [])

    def get_attribute(self, family: str, code: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._get_or_none(
            f"{API}/asset-families/{_seg(family)}/attributes/{_seg(code)}"
        )
        return result

    def upsert_attribute(self, family: str, code: str, body: dict[str, Any]) -> int:
        return self._patch_status(
            f"{API}/asset-families/{_seg(family)}/attributes/{_seg(code)}", {**body, "code": code}
        )

    def get_options(self, family: str, attribute: str) -> list[dict[str, Any]]:
        response = self._request(
            "GET", f"{API}/asset-families/{_seg(family)}/attributes/{_seg(attribute)}/options"
        )
        return list(self._json(response, "GET") or [])

    def upsert_option(self, family: str, attribute: str, code: str, body: dict[str, Any]) -> int:
        """Counts against the fleet-wide option-write rate (3/s by default)."""
        return self._patch_status(
            f"{API}/asset-families/{_seg(family)}/attributes/{_seg(attribute)}/options/{_seg(code)}",
            {**body, "code": code},
            option_write=True,
        )

    # ------------------------------------------------------------------ assets

    def upsert_assets(self, family: str, assets: Iterable[dict[str, Any]]) -> list[AssetResult]:
        """Bulk upsert, ≤100 per request; one AssetResult per input asset, in input order.

        Per-asset failures (422 …) come back as results. A whole-request failure (unknown
        family → PermanentPimError 404, 429/5xx/timeout → TransientPimError) raises; requests
        for earlier chunks have already been applied, which is harmless because an upsert is
        idempotent — retry the whole call. An asset without a string `code` is not sent and
        gets a 422 result of its own.
        """
        items = list(assets)
        results: list[AssetResult | None] = [None] * len(items)
        sendable: list[tuple[int, dict[str, Any]]] = []
        for index, asset in enumerate(items):
            code = asset.get("code") if isinstance(asset, dict) else None
            if isinstance(code, str) and code:
                sendable.append((index, asset))
            else:
                results[index] = AssetResult(
                    code=str(code or ""), status_code=422,
                    message="asset has no code; it was not sent to the PIM",
                )
        path = f"{API}/asset-families/{_seg(family)}/assets"
        for chunk in _chunks(sendable, BULK_LIMIT):
            response = self._request("PATCH", path, json=[asset for _, asset in chunk])
            lines = self._json(response, "PATCH")
            if not isinstance(lines, list):
                raise TransientPimError(
                    "bulk asset response is not a list", status=response.status_code,
                    method="PATCH", path=path,
                )
            by_code: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
            for line in lines:
                if isinstance(line, dict):
                    by_code[str(line.get("code"))].append(line)
            for index, asset in chunk:
                found = by_code[asset["code"]]
                line = found.popleft() if found else None
                results[index] = self._asset_result(asset["code"], line)
        self._count("assets_upserted", sum(1 for r in results if r is not None and r.ok))
        return [r for r in results if r is not None]

    @staticmethod
    def _asset_result(code: str, line: dict[str, Any] | None) -> AssetResult:
        if line is None:
            return AssetResult(code=code, status_code=502,
                               message="the PIM response has no line for this asset")
        try:
            status = int(line.get("status_code") or 0)
        except (TypeError, ValueError):
            status = 0
        errors = line.get("errors")
        return AssetResult(
            code=code,
            status_code=status or 502,
            message=line.get("message") if isinstance(line.get("message"), str) else None,
            errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
        )

    def get_asset(self, family: str, code: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._get_or_none(
            f"{API}/asset-families/{_seg(family)}/assets/{_seg(code)}"
        )
        return result

    def list_assets(
        self, family: str, updated_after: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Assets page by page; `updated_after` is floored to the whole second (Akeneo's grain),
        so a few extra assets may come back, but none updated after it is missed."""
        params = None
        if updated_after is not None:
            search = {"updated": [{"operator": ">", "value": _utc_z(updated_after)}]}
            params = {"search": json.dumps(search, separators=(",", ":"))}
        return self._paginate(f"{API}/asset-families/{_seg(family)}/assets", params)

    def delete_asset(self, family: str, code: str) -> bool:
        """True when deleted, False when it was already gone (404)."""
        path = f"{API}/asset-families/{_seg(family)}/assets/{_seg(code)}"
        response = self._request("DELETE", path)
        if response.status_code == 404:
            return False
        self._check(response, "DELETE")
        return True

    # ------------------------------------------------------------------ media files

    def upload_media_file(self, path_or_fileobj: str | os.PathLike[str] | IO[bytes],
                          filename: str) -> str:
        """multipart `file`; returns the media-file code from `Asset-media-file-code`
        (case-insensitive) or, failing that, the last segment of `Location`.

        The body is streamed (`connector.pim.multipart`): memory stays flat for any file
        size. An open file is sent from where it stands; a retry sends it from there again.
        """
        if isinstance(path_or_fileobj, str | os.PathLike):
            source = Path(path_or_fileobj)
            if not source.is_file():
                raise FileNotFoundError(f"media file to upload does not exist: {source}")
            with source.open("rb") as handle:
                return self._upload_stream(handle, 0, filename)
        fileobj = path_or_fileobj
        if fileobj.seekable():
            return self._upload_stream(fileobj, fileobj.tell(), filename)
        with tempfile.TemporaryFile() as copy:  # a pipe: kept on disk, so a retry can resend
            shutil.copyfileobj(fileobj, copy, _COPY_CHUNK)
            return self._upload_stream(copy, 0, filename)

    def _upload_stream(self, fileobj: IO[bytes], start: int, filename: str) -> str:
        def body() -> tuple[MultipartFile, dict[str, str]]:
            part = MultipartFile("file", filename, fileobj, start)
            return part, {"Content-Type": part.content_type}

        path = f"{API}/asset-media-files"
        response = self._check(self._request("POST", path, body=body), "POST")
        code = media_code_from_headers(response.headers)
        if not code:
            raise PermanentPimError(
                "media upload answered without Asset-media-file-code or Location header",
                status=response.status_code, method="POST", path=path,
            )
        self._count("media_uploads")
        metrics.add("media_uploaded", by=_uploaded_bytes(fileobj, start), keys=self._keys)
        return code

    def download_media_file(self, code: str) -> bytes:
        response = self._request("GET", f"{API}/asset-media-files/{_media_seg(code)}")
        return self._check(response, "GET").content

    # ------------------------------------------------------------------ products

    def get_product(self, identifier: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._get_or_none(f"{API}/products/{_seg(identifier)}")
        return result

    def get_products(self, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Products by identifier, ≤100 per request (`search` identifier IN); absent ones
        are simply missing from the result. One request per 100, not one per product."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(dict.fromkeys(identifiers)), BULK_LIMIT):
            search = {"identifier": [{"operator": "IN", "value": chunk}]}
            params = {
                "search": json.dumps(search, separators=(",", ":")),
                "limit": str(BULK_LIMIT),
            }
            for product in self._paginate(f"{API}/products", params):
                identifier = product.get("identifier")
                if isinstance(identifier, str):
                    found[identifier] = product
        return found

    def patch_products(self, products: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Bulk product PATCH as NDJSON, ≤100 lines per request; one result per line.

        `line` in the results counts over the whole input (1-based), not per request.
        Whole-request failures raise, as in `upsert_assets`.
        """
        items = list(products)
        path = f"{API}/products"
        results: list[dict[str, Any]] = []
        for offset, chunk in enumerate(_chunks(items, BULK_LIMIT)):
            body = "\n".join(json.dumps(p, separators=(",", ":")) for p in chunk)
            response = self._request(
                "PATCH", path, data=body.encode(), headers={"Content-Type": COLLECTION_JSON}
            )
            self._check(response, "PATCH")
            for raw in response.text.splitlines():
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise TransientPimError("bulk product response line is not JSON",
                                            status=response.status_code, method="PATCH",
                                            path=path) from None
                if isinstance(line, dict):
                    if isinstance(line.get("line"), int):
                        line["line"] += offset * BULK_LIMIT
                    results.append(line)
        return results


__all__ = [
    "AkeneoClient",
    "PermanentPimError",
    "PimAuthError",
    "PimError",
    "TransientPimError",
    "classify_status",
    "media_code_from_headers",
]
