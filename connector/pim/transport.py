"""The PIM's transport: budget slot, shared token, timeout, one classification of failures.

Apart from `connector.pim.client` (the endpoints) because every endpoint goes through the
same few steps: take a slot from the fleet-wide Redis budget (concurrency, rate,
option-write rate, Retry-After gate), carry the shared access token (one renewal and one
retry on a 401), classify the answer in one place (`connector.pim.http`), count it.
`AkeneoClient` is this class plus the Akeneo REST endpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import redis
import requests

from connector import metrics
from connector.config.model import PimConfig
from connector.http_session import PooledSession
from connector.metrics import endpoint_template
from connector.pim.auth import TokenManager
from connector.pim.budget import RequestBudget
from connector.pim.errors import PermanentPimError, PimAuthError, TransientPimError
from connector.pim.http import classify_exception, response_error
from connector.redis_conn import Keys, get_redis
from connector.settings import PimCredentials

log = logging.getLogger(__name__)

API = "/api/rest/v1"
TOKEN_PATH = "/api/oauth/v1/token"

#: Builds the `files=` argument of one attempt (a file must be re-read on a retry).
FilesFactory = Callable[[], dict[str, Any]]
#: Builds the streamed body of one attempt and its headers (a stream must restart on a
#: retry): `(data, headers)`, e.g. a `connector.pim.multipart.MultipartFile`.
BodyFactory = Callable[[], tuple[Any, dict[str, str]]]


class PimTransport:
    """Budgeted, authenticated, classified HTTP to one PIM; thread-safe (see module doc)."""

    def __init__(
        self,
        credentials: PimCredentials,
        config: PimConfig | None = None,
        redis: redis.Redis | None = None,
        keys: Keys | None = None,
        *,
        budget: RequestBudget | None = None,
        connection: str = "",
    ) -> None:
        self.credentials = credentials
        self.config = config or PimConfig()
        self.base_url = credentials.url.rstrip("/")
        self._redis = redis if redis is not None else get_redis()
        self._keys = keys or Keys()
        #: "" for the main Akeneo connection, "media" for the uploads' own (if configured)
        self.connection = connection
        self.budget = budget or RequestBudget.from_config(self._redis, self._keys, self.config,
                                                          connection=connection)
        self.tokens = TokenManager(
            credentials,
            self._token_grant,
            self._redis,
            self._keys,
            refresh_margin=self.config.token_refresh_margin,
            lock_ttl=2 * self.config.timeout + 5,
            wait_timeout=3 * self.config.timeout + 10,
            connection=connection,
        )
        # one keep-alive pool for every request of this process (connector.http_session)
        self._session = PooledSession(pool_maxsize=self.budget.max_in_flight)
        self._session.headers["Accept"] = "application/json"
        self._stats_lock = threading.Lock()
        self._stats: dict[str, float] = defaultdict(float)

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    # ------------------------------------------------------------------ observability

    def stats(self) -> dict[str, float]:
        """Counters for the pipeline: requests, status_<code>, transport_errors, auth_retries,
        budget waits (`budget_waits`, `budget_wait_seconds`) and token grants."""
        with self._stats_lock:
            out = dict(self._stats)
        budget = self.budget.stats()
        out["budget_waits"] = budget["waits"]
        out["budget_wait_seconds"] = budget["wait_seconds"]
        for name, value in self.tokens.stats().items():
            out[f"token_{name}"] = value
        return out

    def _count(self, name: str, amount: float = 1) -> None:
        with self._stats_lock:
            self._stats[name] += amount

    # ------------------------------------------------------------------ transport

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + path_or_url

    def _send(
        self,
        method: str,
        url: str,
        *,
        token: str | None,
        option_write: bool = False,
        files: FilesFactory | None = None,
        body: BodyFactory | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP exchange inside a budget slot; records a Retry-After for every process."""
        path = urlsplit(url).path
        headers = dict(kwargs.pop("headers", None) or {})
        if body is not None:
            kwargs["data"], more = body()
            headers.update(more)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        with self.budget.slot(option_write=option_write):
            started = time.monotonic()
            try:
                response = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self.config.timeout,
                    files=files() if files is not None else None,
                    allow_redirects=False,
                    **kwargs,
                )
            except requests.RequestException as exc:
                self._count("requests")
                metrics.add("pim_requests", method, endpoint_template(path), "error",
                            keys=self._keys)
                self._count("transport_errors")
                failure = classify_exception(exc, method=method, path=path)
                log.info("PIM %s %s failed: %s", method, path, failure.message)
                raise failure from None
            elapsed = time.monotonic() - started
            if response.status_code in (429, 503):
                # Close the gate before giving the slot back: a process waiting for this
                # slot must find the gate closed, not send in between.
                error = response_error(response, method=method, path=path)
                retry_after = getattr(error, "retry_after", None)
                if response.status_code == 429:
                    metrics.add("pim_throttled", endpoint_template(path), keys=self._keys)
                metrics.add("pim_retry_after", endpoint_template(path), by=retry_after or 0,
                            keys=self._keys)
                if retry_after:
                    self.budget.block_for(retry_after)
        self._count("requests")
        self._count(f"status_{response.status_code}")
        metrics.add("pim_requests", method, endpoint_template(path), str(response.status_code),
                    keys=self._keys)
        log.debug("PIM %s %s → %s (%.3f s)", method, path, response.status_code, elapsed)
        return response

    def _request(self, method: str, path_or_url: str, **kwargs: Any) -> requests.Response:
        """`_send` with the shared token; on 401 renew the token once and retry once."""
        url = self._url(path_or_url)
        token = self.tokens.get_token()
        response = self._send(method, url, token=token, **kwargs)
        if response.status_code != 401:
            return response
        self._count("auth_retries")
        log.info("PIM %s %s → 401; renewing the token, retrying once", method, urlsplit(url).path)
        token = self.tokens.get_token(stale=token)
        response = self._send(method, url, token=token, **kwargs)
        if response.status_code == 401:
            error = response_error(response, method=method, path=urlsplit(url).path)
            raise PimAuthError(
                f"PIM rejected a freshly renewed token: {error.message if error else ''}",
                status=401,
                method=method,
                path=urlsplit(url).path,
            )
        return response

    def _check(self, response: requests.Response, method: str) -> requests.Response:
        error = response_error(response, method=method, path=urlsplit(response.url).path)
        if error is not None:
            raise error
        return response

    def _json(self, response: requests.Response, method: str) -> Any:
        self._check(response, method)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientPimError(
                "PIM answered with a body that is not JSON",
                status=response.status_code,
                method=method,
                path=urlsplit(response.url).path,
            ) from None

    def _get_or_none(self, path: str) -> Any:
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        return self._json(response, "GET")

    def _patch_status(self, path: str, body: dict[str, Any], *, option_write: bool = False) -> int:
        response = self._request("PATCH", path, json=body, option_write=option_write)
        self._check(response, "PATCH")
        return response.status_code

    def _paginate(
        self, path: str, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Follow `_links.next` (search_after cursors) page by page; never loads everything."""
        url: str | None = path
        first = True
        while url is not None:
            response = self._request("GET", url, params=params if first else None)
            first = False
            page = self._json(response, "GET") or {}
            embedded = page.get("_embedded") or {}
            # The spec's examples say `_items`; the real API says `items`.
            items = embedded.get("items", embedded.get("_items", []))
            yield from items
            href = ((page.get("_links") or {}).get("next") or {}).get("href")
            url = urljoin(self.base_url + "/", href) if href and items else None

    def _token_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST the token endpoint (Basic client auth); used by the TokenManager."""
        response = self._send(
            "POST",
            self._url(TOKEN_PATH),
            token=None,
            json=body,
            auth=(self.credentials.client_id, self.credentials.client_secret.reveal()),
        )
        self._count("token_requests")
        data = self._json(response, "POST")
        if not isinstance(data, dict):
            raise PermanentPimError("token endpoint answered with a non-object", method="POST",
                                    path=TOKEN_PATH)
        return data
