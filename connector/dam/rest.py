"""Generic REST adapter: any JSON DAM API, described by `RestSourceConfig`, no code per DAM.

One listing request at a time, one page in memory at a time. Every request (listing
page, single get, binary download) has a timeout, takes a slot of the DAM's budget
(fleet-wide in Redis when the factory is given one: connector.dam.ratelimit), and is
retried a bounded number of times (`connector.retry.retrying`) on the statuses
`connector.retry.is_transient_status` calls transient (408, 420, 425, 429, 5xx), timeouts and
connection errors: a Retry-After (seconds or HTTP-date) closes the budget's gate for every
process until it expires, otherwise the wait is exponential with jitter (`backoff_base`,
`backoff_max`). Only then does a `TransientDamError` tell the pipeline to try again later.
Records that cannot be normalised come back as `BadRecord`s in the page: one broken record
never stops a sync. What a record means is in `connector.dam.records`, DAM dates in
`connector.dam.dates`, what an answer unlike the config means (with the key to change)
in `connector.dam.diagnose`; this module is the request loop and the paging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests

from connector.config.model import ListEndpointConfig, MediaConfig, RestSourceConfig
from connector.dam.auth import DamAuth, DamAuthError, build_auth
from connector.dam.base import (
    BadRecord,
    DamAsset,
    DamError,
    DamSource,
    NoSingleGetError,
    Page,
    PaginationLoopError,
    TransientDamError,
)
from connector.dam.dates import since_value
from connector.dam.diagnose import auth_keys, check_ids, endpoint_key, not_a_list
from connector.dam.media import MediaError, Resolver, downloader_for, safe_url
from connector.dam.pagination import PageResponse, build_paginator
from connector.dam.paths import MISSING, get_path
from connector.dam.ratelimit import DamThrottle, DamThrottledError, LocalThrottle
from connector.dam.records import normalise_record
from connector.http_session import PooledSession
from connector.retry import (
    backoff_delay,
    is_transient_status,
    parse_retry_after,
    retry_after_of,
    retrying,
)

log = logging.getLogger(__name__)



class _RetryableAnswer(TransientDamError):
    """One attempt of a request failed in a way worth retrying: a transient status
    (`connector.retry.is_transient_status`) or no answer at all (`unreachable`)."""

    def __init__(
        self, reason: str, retry_after: float | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(reason, retry_after=retry_after)
        self.unreachable = unreachable


class BadRecordError(DamError):
    """`get()` found the record but could not normalise it; `.bad` says why."""

    def __init__(self, bad: BadRecord) -> None:
        super().__init__(f"record {bad.record_id!r} of {bad.source}: {bad.reason}")
        self.bad = bad


# ---------------------------------------------------------------- the adapter


class RestSource(DamSource):
    """A `DamSource` over a JSON REST API, configured by `RestSourceConfig`."""

    def __init__(
        self,
        name: str,
        config: RestSourceConfig,
        media: MediaConfig | None = None,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        resolver: Resolver | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        max_retry_after: float = 300.0,
        throttle: DamThrottle | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.media = media or MediaConfig()
        self.base_url = config.base_url.rstrip("/")
        self._own_session = session is None
        # one keep-alive pool for the API, the token and the downloads (connector.http_session)
        self.session = session or PooledSession(pool_maxsize=max(1, config.max_in_flight))
        self._sleep = sleep
        self._backoff_base = config.backoff_base if backoff_base is None else backoff_base
        self._backoff_max = max(
            self._backoff_base, config.backoff_max if backoff_max is None else backoff_max
        )
        self._max_retry_after = max_retry_after
        self.auth: DamAuth = build_auth(
            config.auth, self.base_url, self.session, config.timeout, clock
        )
        # the budget every request of this DAM goes through (fleet-wide when given one)
        self.throttle: DamThrottle = throttle or LocalThrottle(
            config.requests_per_second, max_wait=max_retry_after, clock=clock, sleep=sleep
        )
        self.downloader = downloader_for(
            self.base_url,
            self.media.allowed_hosts,
            self.media.max_bytes,
            self.media.timeout,
            resolver=resolver,
        )
        self._origin = _origin(self.base_url)
        # relative media URLs of records are joined with it (media.base_url, or the API's)
        self.media_base_url = (self.media.base_url or self.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"RestSource(name={self.name!r}, base_url={safe_url(self.base_url)!r})"

    @property
    def concurrent_gets(self) -> int:  # type: ignore[override]
        """Half the DAM's fleet-wide budget (`rest.max_in_flight`), at least 1: a batch
        never takes every slot (the fetch, media downloads and other workers keep theirs),
        and a worker killed mid-batch holds at most half of them until its leases expire.
        The session pools that many connections; the throttle and the auth are
        thread-safe."""
        return max(1, self.config.max_in_flight // 2)

    # ------------------------------------------------------------ DamSource

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        for page, _token in self.changed_pages(since):
            if page.assets or page.bad:
                yield page

    def changed_pages(
        self, since: datetime | None, resume: str | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """The paginator's own position is the token (page number, offset, cursor or the
        next Link URL, which is still held to this DAM's host when followed)."""
        endpoint = self.config.list
        for items, token in self._raw_pages(
            endpoint, self._list_params(endpoint, since), resume=resume
        ):
            page = Page()
            for item in items:
                page.add(self.normalise(item))
            yield page, token

    def get(self, asset_id: str) -> DamAsset | None:
        if not self.config.get_path:
            raise NoSingleGetError(
                f"source {self.name!r} has no single-asset endpoint: set "
                f"sources.{self.name}.rest.get_path (a path with {{id}}, such as /assets/{{id}})",
                key=f"sources.{self.name}.rest.get_path",
            )
        path = self.config.get_path.replace("{id}", quote(str(asset_id), safe=""))
        resp = self._send("GET", self._url(path), None)
        if resp.status_code in (404, 410):
            return None
        self._raise_for_status(resp)
        body = self._json(resp)
        if isinstance(body, list):
            if not body:
                return None
            body = body[0]
        result = self.normalise(body)
        if isinstance(result, BadRecord):
            raise BadRecordError(result)
        return result

    @contextmanager
    def _open(self, asset: DamAsset) -> Iterator[IO[bytes]]:
        if not asset.media_url:
            raise MediaError(f"asset {asset.id!r} of {self.name} has no media URL")
        with self._download(asset.media_url) as stream:
            yield stream

    def _download(self, url: str) -> IO[bytes]:
        """The binary as a file the caller closes (in memory when small: `SafeDownloader.
        open`), with the same budget and bounded retries as every API request. A binary on
        another host (a CDN) is retried the same way, but neither takes this DAM's budget
        nor closes its gate."""
        own = _origin(url) == self._origin

        def attempt() -> IO[bytes]:
            if not own:
                return self.downloader.open(url, self.session, {})
            with self.throttle.slot():
                try:
                    return self.downloader.open(url, self.session, self.auth.headers())
                except TransientDamError as exc:
                    if exc.retry_after is not None:  # close the gate before the slot frees
                        self.throttle.block_for(exc.retry_after)
                    raise

        return retrying(
            attempt,
            # the budget refusing to wait (DamThrottledError) is the step's to retry, later
            retry_if=lambda exc: isinstance(exc, TransientDamError)
            and not isinstance(exc, DamThrottledError),
            wait=lambda n, exc: self._wait(n, str(exc), retry_after_of(exc), gate=own),
            attempts=self.config.max_retries + 1,
            give_up=self._gave_up,
            sleep=self._sleep,
        )

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        """A stream over the binary, downloaded safely (allow-list, size cap) first."""
        return self._open(asset)

    def deleted_since(self, since: datetime | None) -> Iterator[str]:
        endpoint = self.config.deletions
        if endpoint is None:
            return
        for items, _token in self._raw_pages(endpoint, self._list_params(endpoint, since)):
            for item in items:
                raw = item if not isinstance(item, dict) else get_path(item, endpoint.id_field)
                if isinstance(raw, str | int) and not isinstance(raw, bool) and str(raw):
                    yield str(raw)
                else:
                    log.warning("%s: deletion entry without id (%s) skipped", self.name,
                                endpoint.id_field)

    def all_ids(self) -> Iterator[str]:
        """Every id, including records that failed normalisation but have an id: they
        still exist in the DAM and must not look deleted to reconciliation."""
        for page in self.changed_since(None):
            for asset in page.assets:
                yield asset.id
            for bad in page.bad:
                if bad.record_id:
                    yield bad.record_id

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    # ------------------------------------------------------------ normalisation

    def normalise(self, item: Any) -> DamAsset | BadRecord:
        """One raw item → DamAsset, or BadRecord with the reason (never raises)."""
        return normalise_record(self.name, self.config, self.media_base_url, item)

    # ------------------------------------------------------------ HTTP

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + "/" + path.lstrip("/")

    def _list_params(self, endpoint: ListEndpointConfig, since: datetime | None) -> dict[str, str]:
        params = {str(k): str(v) for k, v in endpoint.params.items()}
        if since is not None and endpoint.since_param:
            params[endpoint.since_param] = since_value(
                since, endpoint.since_format, endpoint.since_template
            )
        return params

    def _raw_pages(
        self, endpoint: ListEndpointConfig, params: dict[str, str], resume: str | None = None
    ) -> Iterator[tuple[list[Any], str | None]]:
        """Each page's items and the paginator's position after it (`changed_pages`)."""
        paginator = build_paginator(self.config.pagination)
        if resume is not None:
            paginator.restore(resume)
        first_url = self._url(endpoint.path)
        while not paginator.finished:
            next_url = paginator.next_url()
            if next_url is not None:
                if _origin(next_url) != self._origin:
                    raise DamError(
                        f"{self.name}: refusing to follow a next-page link to another host "
                        f"({safe_url(next_url)})"
                    )
                resp = self._send("GET", next_url, None)
            else:
                resp = self._send("GET", first_url, {**params, **paginator.params()})
            self._raise_for_status(resp, endpoint)
            body = self._json(resp)
            items = get_path(body, endpoint.items_path, MISSING)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise not_a_list(self.name, self._key(endpoint, "items_path"),
                                 endpoint.items_path, body, items, resp.url)
            check_ids(self.name, self._key(endpoint, "id_field"), endpoint.id_field, items,
                      resp.url)
            fingerprint = tuple(_fingerprint(it, endpoint.id_field) for it in items)
            try:
                paginator.advance(
                    PageResponse(resp.url, resp.headers, body, len(items), fingerprint)
                )
            except PaginationLoopError as exc:
                keys = " or ".join(
                    f"sources.{self.name}.rest.pagination.{k}" for k in paginator.loop_keys
                )
                hint = f"; the DAM does not read the paging parameter: check {keys}"
                raise PaginationLoopError(
                    f"{self.name}: {exc}{hint if keys else ''}",
                    key=f"sources.{self.name}.rest.pagination",
                ) from None
            yield items, paginator.position()

    def auth_keys(self) -> str:
        """The config keys holding this DAM's credentials, for messages (never values)."""
        return auth_keys(self.name, self.config)

    def _key(self, endpoint: ListEndpointConfig, name: str) -> str:
        return endpoint_key(self.name, self.config, endpoint, name)

    def _send(
        self, method: str, url: str, params: dict[str, str] | None, json_body: Any = None
    ) -> requests.Response:
        """One request with budget, timeout and bounded retries; returns a final response
        (`json_body`: a JSON request body, as a GraphQL POST sends)."""
        reauthenticated = False  # once per request, whatever the retries in between

        def attempt() -> requests.Response:
            nonlocal reauthenticated
            while True:
                with self.throttle.slot():
                    headers = {"Accept": "application/json", **self.auth.headers()}
                    resp: requests.Response | None = None
                    try:
                        answer = self.session.request(
                            method, url, params=params, headers=headers, json=json_body,
                            timeout=self.config.timeout,
                        )
                    except requests.RequestException as exc:
                        reason = f"{type(exc).__name__} on {safe_url(url)}"
                    else:
                        resp = answer
                        retry_after: float | None = None
                        if is_transient_status(answer.status_code):
                            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
                        # the gate closes while we still hold the slot: with one request in
                        # flight fleet-wide, no other process can send before it is closed
                        if retry_after is not None:
                            self.throttle.block_for(retry_after)
                if resp is None:
                    raise _RetryableAnswer(reason, unreachable=True)
                status = resp.status_code
                if status == 401 and not reauthenticated and self.auth.on_unauthorized():
                    reauthenticated = True
                    resp.close()
                    continue
                if status in (401, 403):
                    resp.close()
                    raise DamAuthError(
                        f"{self.name}: the DAM refused our credentials (HTTP {status}) "
                        f"on {safe_url(url)}: check {self.auth_keys()}",
                        key=f"sources.{self.name}.rest.auth",
                    )
                if is_transient_status(status):
                    resp.close()
                    raise _RetryableAnswer(f"HTTP {status} on {safe_url(url)}", retry_after)
                return resp

        return retrying(
            attempt,
            retry_if=lambda exc: isinstance(exc, _RetryableAnswer),
            wait=lambda n, exc: self._wait(n, str(exc), retry_after_of(exc)),
            attempts=self.config.max_retries + 1,
            give_up=self._gave_up,
            sleep=self._sleep,
        )

    def _gave_up(self, failures: int, exc: BaseException) -> TransientDamError:
        """The error of a request still failing after its last retry."""
        if isinstance(exc, _RetryableAnswer) and exc.unreachable:
            return TransientDamError(
                f"{self.name}: DAM unreachable after {failures} attempts ({exc})"
            )
        return TransientDamError(
            f"{self.name}: {exc}, still failing after {failures} attempts",
            retry_after=retry_after_of(exc),
        )

    def _wait(
        self, failures: int, reason: str, retry_after: float | None, *, gate: bool = True
    ) -> float | None:
        """Seconds to sleep before retry number `failures`. A Retry-After of this DAM is
        already in the budget's gate (every process of the fleet waits it out in its next
        `slot()`: nothing to sleep here); one of another host (`gate=False`) is slept.
        Without one: an exponential backoff with jitter, in this process only. A
        Retry-After longer than we wait in-process ends the retries at once."""
        if retry_after is not None:
            if retry_after > self._max_retry_after:
                raise TransientDamError(
                    f"{self.name}: {reason}, Retry-After {retry_after:.0f}s is longer "
                    f"than we wait in-process",
                    retry_after=retry_after,
                )
            log.info("%s: %s, retry %d after %.2fs (Retry-After)", self.name, reason,
                     failures, retry_after)
            return None if gate else retry_after
        delay = backoff_delay(failures, self._backoff_base, self._backoff_max)
        log.info("%s: %s, retry %d in %.2fs", self.name, reason, failures, delay)
        return delay

    def _raise_for_status(
        self, resp: requests.Response, endpoint: ListEndpointConfig | None = None
    ) -> None:
        """A final non-2xx answer as a DamError; on a listing, with the keys to check."""
        if 200 <= resp.status_code < 300:
            return
        message = f"{self.name}: {safe_url(resp.url)} answered HTTP {resp.status_code}" + (
            f": {self._snippet(resp)}" if resp.status_code < 500 else ""
        )
        key: str | None = None
        if endpoint is not None and resp.status_code in (404, 405, 410):
            key = self._key(endpoint, "path")
            message += f". Check sources.{self.name}.rest.base_url and {key}"
        elif endpoint is not None and resp.status_code in (400, 422):
            key = self._key(endpoint, "params")
            message += (
                f". Check {key}, {self._key(endpoint, 'since_param')}, "
                f"{self._key(endpoint, 'since_format')} and sources.{self.name}.rest."
                "pagination (the parameters this request sent)"
            )
        raise DamError(message, key=key)

    def _snippet(self, resp: requests.Response) -> str:
        """The start of an error body, with any secret we hold blanked out."""
        text = " ".join(resp.text[:200].split()) or "(empty body)"
        auth = self.config.auth
        for secret in (auth.token, auth.password, auth.value, auth.client_secret):
            if secret is not None and secret.reveal():
                text = text.replace(secret.reveal(), "********")
        return text

    def _json(self, resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            key = f"sources.{self.name}.rest"
            content_type = resp.headers.get("Content-Type")
            if "html" in (content_type or "").lower() or resp.content[:256].lstrip()[:1] == b"<":
                # a login or error page (Cloudinary's answer to wrong credentials)
                raise DamError(
                    f"{self.name}: expected JSON from {safe_url(resp.url)}, got an HTML page "
                    f"(Content-Type {content_type!r}): the DAM's answer to wrong "
                    f"credentials or a wrong URL. Check "
                    f"{self.auth_keys()}, {key}.base_url and "
                    f"{key}.list.path",
                    key=f"{key}.base_url",
                ) from None
            raise DamError(
                f"{self.name}: expected JSON from {safe_url(resp.url)}, got Content-Type "
                f"{content_type!r}: check {key}.base_url and {key}.list.path",
                key=f"{key}.base_url",
            ) from None


# ---------------------------------------------------------------- helpers


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme == "https" else 80
    return (parts.scheme, (parts.hostname or "").lower(), port or default)


def _fingerprint(item: Any, id_field: str) -> str:
    value = get_path(item, id_field) if isinstance(item, dict) else item
    return str(value)[:100]


__all__ = [
    "BadRecordError",
    "DamAuthError",
    "RestSource",
    "parse_retry_after",
]
