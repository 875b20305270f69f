"""The PIM access token, shared by every process through Redis.

N workers must not each hammer `/api/oauth/v1/token`: the token lives under
`Keys.of("pim", "token")` and one process at a time renews it (single-flight, under a short
Redis lock); the others wait for the new token to appear. Renewal happens `refresh_margin`
seconds before expiry and when the PIM answers 401 (the caller passes the rejected token as
`stale`). A refresh-token grant is tried first; when it fails, a full password grant.

Expiry is kept in the Redis server's clock, so machines with skewed clocks agree. Tokens are
wrapped so that they never print (repr, logs, exceptions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from connector import metrics
from connector.pim.errors import PermanentPimError, PimAuthError, PimError, TransientPimError
from connector.redis_conn import Keys
from connector.settings import PimCredentials

log = logging.getLogger(__name__)

#: token counters that are grants, as the `grant` label of connector_pim_token_grants_total
_GRANTS = {"password_grants": "password", "refresh_grants": "refresh",
           "refresh_failures": "refresh_refused"}

#: POSTs a token-endpoint body and returns the decoded JSON answer; raises PimError.
GrantFunction = Callable[[dict[str, Any]], dict[str, Any]]

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class TokenSet:
    """An access/refresh token pair with its expiry in Redis-server seconds."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float
    lifetime: float
    fingerprint: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_at": self.expires_at,
                "lifetime": self.lifetime,
                "fingerprint": self.fingerprint,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> TokenSet | None:
        try:
            data = json.loads(raw)
            return cls(
                access_token=str(data["access_token"]),
                refresh_token=data.get("refresh_token"),
                expires_at=float(data["expires_at"]),
                lifetime=float(data.get("lifetime") or 0),
                fingerprint=str(data.get("fingerprint") or ""),
            )
        except (ValueError, KeyError, TypeError):
            return None


def credentials_fingerprint(credentials: PimCredentials) -> str:
    """Identifies the connection a token belongs to (no secret goes into it)."""
    raw = "\0".join((credentials.url, credentials.client_id, credentials.username))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class TokenManager:
    """Hands out a valid access token; renews it once for the whole fleet."""

    def __init__(
        self,
        credentials: PimCredentials,
        grant: GrantFunction,
        redis_client: redis.Redis,
        keys: Keys,
        *,
        refresh_margin: float = 60.0,
        lock_ttl: float = 30.0,
        wait_timeout: float = 60.0,
        poll_interval: float = 0.02,
        refused_backoff: float = 10.0,
        connection: str = "",
    ) -> None:
        self._credentials = credentials
        self._grant = grant
        self._redis = redis_client
        self._keys = keys
        # one fleet token per Akeneo connection (the main one keeps its historical keys)
        scope = ("pim", "token", connection) if connection else ("pim", "token")
        self.token_key = keys.of(*scope)
        self.lock_key = keys.of(*scope, "lock")
        self.refresh_margin = refresh_margin
        self.lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self._fingerprint = credentials_fingerprint(credentials)
        self._unlock = redis_client.register_script(_UNLOCK)
        self._thread_lock = threading.Lock()
        self._local: TokenSet | None = None
        self._local_deadline = 0.0  # time.monotonic() after which the local token is stale
        # After the PIM refused our credentials, this process answers PimAuthError at once
        # for `refused_backoff` seconds instead of asking again for every batch.
        self.refused_backoff = refused_backoff
        self._refused: PimAuthError | None = None
        self._refused_until = 0.0
        self._stats_lock = threading.Lock()
        self._stats = {"password_grants": 0, "refresh_grants": 0, "refresh_failures": 0,
                       "peer_waits": 0}

    def __repr__(self) -> str:
        creds = self._credentials
        return f"TokenManager(url={creds.url!r}, client_id={creds.client_id!r})"

    # ------------------------------------------------------------------ public

    def get_token(self, stale: str | None = None) -> str:
        """A usable access token; `stale` is one the PIM just rejected (never returned again)."""
        with self._thread_lock:
            if self._refused is not None and time.monotonic() < self._refused_until:
                refused = self._refused
                raise PimAuthError(
                    f"{refused.message} (credentials refused moments ago; not asking the PIM "
                    f"again for {self.refused_backoff:g}s)",
                    status=refused.status, method=refused.method, path=refused.path,
                )
            local = self._local
            if (
                local is not None
                and local.access_token != stale
                and time.monotonic() < self._local_deadline
            ):
                return local.access_token
            return self._obtain(stale)

    def stats(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self._stats)

    # ------------------------------------------------------------------ internals

    def _obtain(self, stale: str | None) -> str:
        deadline = time.monotonic() + self.wait_timeout
        waited = False
        while True:
            try:
                shared = self._read_usable(stale)
                if shared is not None:
                    return shared
                lock_id = uuid.uuid4().hex
                if self._redis.set(self.lock_key, lock_id, nx=True, px=self.lock_ttl_ms):
                    try:
                        # Someone may have finished renewing between our read and our lock.
                        shared = self._read_usable(stale)
                        if shared is not None:
                            return shared
                        return self._renew()
                    finally:
                        self._unlock(keys=[self.lock_key], args=[lock_id])
            except redis.RedisError as exc:
                raise TransientPimError(
                    f"token store unavailable (Redis: {type(exc).__name__})"
                ) from exc
            if not waited:
                waited = True
                self._count("peer_waits")
                log.debug("PIM token: another process is renewing it; waiting")
            if time.monotonic() > deadline:
                raise TransientPimError("timed out waiting for another process to renew the token")
            time.sleep(self.poll_interval)

    def _server_time(self) -> float:
        seconds, micros = cast(tuple[int, int], self._redis.time())
        return int(seconds) + int(micros) / 1_000_000

    def _margin(self, token: TokenSet) -> float:
        # A short-lived token (tests, odd servers) must not be "always about to expire".
        if not token.lifetime:
            return self.refresh_margin
        return min(self.refresh_margin, token.lifetime / 2)

    def _read_shared(self) -> TokenSet | None:
        raw = cast(bytes | None, self._redis.get(self.token_key))
        token = TokenSet.from_json(raw) if raw is not None else None
        if token is None or token.fingerprint != self._fingerprint:
            return None
        return token

    def _read_usable(self, stale: str | None) -> str | None:
        """The shared token when it is neither `stale` nor near expiry; caches it locally."""
        token = self._read_shared()
        if token is None or token.access_token == stale:
            return None
        left = token.expires_at - self._server_time() - self._margin(token)
        if left <= 0:
            return None
        self._keep(token, left)
        return token.access_token

    def _keep(self, token: TokenSet, seconds_left: float) -> None:
        self._local = token
        self._local_deadline = time.monotonic() + seconds_left

    def _renew(self) -> str:
        """Refresh grant when we hold a refresh token, else (or when it fails) password grant."""
        previous = self._read_shared()
        if previous is not None and previous.refresh_token:
            try:
                token = self._request_token(
                    {"grant_type": "refresh_token", "refresh_token": previous.refresh_token},
                    previous.refresh_token,
                )
                self._count("refresh_grants")
                log.info("PIM token: refreshed")
                return self._store(token)
            except PermanentPimError as exc:
                # Refresh token expired or revoked: a full grant is the way out.
                self._count("refresh_failures")
                log.info("PIM token: refresh refused (%s); re-authenticating", exc.status)
        try:
            token = self._request_token(self._password_grant(), None)
        except PimAuthError as exc:
            # Remember the refusal: every batch asking again would be a login storm.
            self._refused, self._local = exc, None
            self._refused_until = time.monotonic() + self.refused_backoff
            raise
        self._refused = None
        self._count("password_grants")
        log.info("PIM token: new grant for client %s", self._credentials.client_id)
        return self._store(token)

    def verify_grant(self) -> None:
        """A password grant that proves the credentials as they are now (`connector
        check`); the fleet's cached token is neither used nor replaced. PimAuthError when
        the PIM refuses them."""
        self._request_token(self._password_grant(), None)

    def _password_grant(self) -> dict[str, Any]:
        return {
            "grant_type": "password",
            "username": self._credentials.username,
            "password": self._credentials.password.reveal(),
        }

    def _request_token(self, body: dict[str, Any], old_refresh: str | None) -> TokenSet:
        issued_at = self._server_time()
        try:
            data = self._grant(body)
        except TransientPimError:
            raise
        except PimError as exc:
            # The body is never echoed; Akeneo's message says what was wrong.
            if body["grant_type"] == "refresh_token":
                raise
            raise PimAuthError(
                f"token grant refused: {exc.message}", status=exc.status, method="POST",
                path="/api/oauth/v1/token",
            ) from None
        access = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(access, str) or not access:
            raise PimAuthError(
                "token endpoint answered without an access_token", method="POST",
                path="/api/oauth/v1/token",
            )
        try:
            lifetime = float(data.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        refresh = data.get("refresh_token")
        return TokenSet(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else old_refresh,
            expires_at=issued_at + lifetime,
            lifetime=lifetime,
            fingerprint=self._fingerprint,
        )

    def _store(self, token: TokenSet) -> str:
        # The refresh token outlives the access token; keep the pair around for a day more.
        ttl = int(token.lifetime) + 86400
        self._redis.set(self.token_key, token.to_json(), ex=ttl)
        left = token.expires_at - self._server_time() - self._margin(token)
        self._keep(token, max(0.0, left))
        return token.access_token

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self._stats[name] += 1
        grant = _GRANTS.get(name)
        if grant is not None:  # fleet-wide metrics (connector.metrics)
            metrics.add("pim_tokens", grant, keys=self._keys)
