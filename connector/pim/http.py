"""Turning HTTP outcomes into PIM errors — the one place where statuses are classified.

Transient (408, 425, 429, 5xx, timeouts, connection errors) → `TransientPimError`, carrying
the PIM's `Retry-After` (seconds or HTTP-date) when it sent one. 401 → `PimAuthError` (the
client refreshes the token and retries once *before* it gets here). Everything else that is
not 2xx (400, 403, 404, 413, 415, 422, …) → `PermanentPimError`, keeping Akeneo's `message`
and `errors[]` for the dead-letter store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests

from connector.pim.errors import (
    PermanentPimError,
    PimAuthError,
    PimError,
    TransientPimError,
)
from connector.retry import is_transient_status, parse_retry_after

_MAX_MESSAGE = 500


def error_details(body: Any, text: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Akeneo's `message` and `errors[]` from an error body (falls back to the raw text)."""
    if isinstance(body, Mapping):
        message = body.get("message")
        errors = body.get("errors")
        clean_errors = (
            [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        )
        if isinstance(message, str) and message:
            return message, clean_errors
        if clean_errors:
            return "validation failed", clean_errors
    snippet = text.strip()[:_MAX_MESSAGE]
    return (snippet or "no error message in the response"), []


def classify_status(
    status: int,
    body: Any = None,
    *,
    text: str = "",
    headers: Mapping[str, str] | None = None,
    method: str | None = None,
    path: str | None = None,
) -> PimError | None:
    """The error for a non-success status, or None for 1xx/2xx/3xx-not-modified successes.

    `headers` must be case-insensitive for `Retry-After` lookup (requests' headers are).
    """
    if 200 <= status < 300 or status == 304:
        return None
    message, errors = error_details(body, text)
    where: dict[str, Any] = {"status": status, "errors": errors, "method": method, "path": path}
    if is_transient_status(status):
        retry_after = parse_retry_after(headers.get("Retry-After")) if headers else None
        return TransientPimError(message, retry_after=retry_after, **where)
    if status == 401:
        return PimAuthError(message, **where)
    return PermanentPimError(message, **where)


def classify_exception(
    exc: BaseException, *, method: str | None = None, path: str | None = None
) -> PimError:
    """A transport failure as a PIM error; only the exception class is kept (no URLs)."""
    if isinstance(exc, requests.Timeout):
        return TransientPimError(f"timeout ({type(exc).__name__})", method=method, path=path)
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return TransientPimError(
            f"connection error ({type(exc).__name__})", method=method, path=path
        )
    return PermanentPimError(f"request failed ({type(exc).__name__})", method=method, path=path)


def response_error(response: requests.Response, *, method: str, path: str) -> PimError | None:
    """`classify_status` applied to a requests response (parses its JSON body when it has one)."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    text = ""
    body: Any = None
    try:
        text = response.text
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    return classify_status(
        status, body, text=text, headers=response.headers, method=method, path=path
    )
