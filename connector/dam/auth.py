"""DAM authentication schemes, chosen by `AuthConfig.type`.

Each scheme hands out the headers for one request. Secrets stay inside `Secret` until
the moment a header is built, and no error message ever contains them. OAuth2 client
credentials keep the token in-process (one DAM reader per run) and renew it shortly
before it expires, or at once when the DAM answers 401.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from urllib.parse import urljoin

import requests

from connector.config.model import AuthConfig
from connector.dam.base import DamError, TransientDamError
from connector.http_session import PooledSession
from connector.retry import is_transient_status
from connector.settings import Secret


class DamAuthError(DamError):
    """The DAM refused our credentials (or they are not configured): not worth retrying."""


class DamAuth:
    """No authentication; the base of every scheme."""

    kind = "none"

    def headers(self) -> dict[str, str]:
        """Headers to add to the next request."""
        return {}

    def on_unauthorized(self) -> bool:
        """The DAM answered 401. True when a retry may succeed (a new token was dropped)."""
        return False


def _reveal(secret: Secret | None, what: str) -> str:
    if secret is None or not secret.reveal():
        raise DamAuthError(f"{what} is not configured")
    return secret.reveal()


class BearerAuth(DamAuth):
    kind = "bearer"

    def __init__(self, token: Secret) -> None:
        self._token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + _reveal(self._token, "auth.token")}


class BasicAuth(DamAuth):
    kind = "basic"

    def __init__(self, username: str, password: Secret) -> None:
        self._username = username
        self._password = password

    def headers(self) -> dict[str, str]:
        raw = f"{self._username}:{_reveal(self._password, 'auth.password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


class ApiKeyAuth(DamAuth):
    kind = "api_key"

    def __init__(self, header: str, value: Secret) -> None:
        self._header = header
        self._value = value

    def headers(self) -> dict[str, str]:
        return {self._header: _reveal(self._value, "auth.value")}


class OAuth2ClientCredentials(DamAuth):
    """RFC 6749 §4.4: client id/secret in HTTP Basic, `grant_type=client_credentials`."""

    kind = "oauth2_client_credentials"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: Secret,
        scope: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = 60.0,
    ) -> None:
        self.token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = scope
        self._session = session or PooledSession()
        self._timeout = timeout
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    def headers(self) -> dict[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._fetch()
            assert self._token is not None
            return {"Authorization": "Bearer " + self._token}

    def on_unauthorized(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def _fetch(self) -> None:
        data = {"grant_type": "client_credentials"}
        if self._scope:
            data["scope"] = self._scope
        secret = _reveal(self._client_secret, "auth.client_secret")
        try:
            resp = self._session.post(
                self.token_url,
                data=data,
                auth=(self._client_id, secret),
                headers={"Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise TransientDamError(
                f"OAuth2 token endpoint {self.token_url} unreachable: {type(exc).__name__}"
            ) from None
        if is_transient_status(resp.status_code):
            raise TransientDamError(
                f"OAuth2 token endpoint {self.token_url} answered HTTP {resp.status_code}"
            )
        if resp.status_code != 200:
            raise DamAuthError(
                f"OAuth2 token endpoint {self.token_url} refused the client credentials "
                f"(HTTP {resp.status_code})"
            )
        try:
            body = resp.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError):
            raise DamAuthError(
                f"OAuth2 token endpoint {self.token_url} answered without a usable access_token"
            ) from None
        # Renew a little early so that a token never expires in flight; for very short
        # lifetimes the margin shrinks to a tenth of the lifetime.
        margin = min(self._refresh_margin, expires_in * 0.1)
        self._token = token
        self._renew_at = self._clock() + expires_in - margin
        self.tokens_fetched += 1


def build_auth(
    config: AuthConfig,
    base_url: str = "",
    session: requests.Session | None = None,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> DamAuth:
    """The scheme named by `config.type`; a relative `token_url` is taken from `base_url`."""
    if config.type == "none":
        return DamAuth()
    if config.type == "bearer":
        if config.token is None:
            raise DamAuthError("auth.token is required for bearer auth")
        return BearerAuth(config.token)
    if config.type == "basic":
        if config.username is None or config.password is None:
            raise DamAuthError("auth.username and auth.password are required for basic auth")
        return BasicAuth(config.username, config.password)
    if config.type == "api_key":
        if config.value is None:
            raise DamAuthError("auth.value is required for api_key auth")
        return ApiKeyAuth(config.header, config.value)
    if config.type == "oauth2_client_credentials":
        if not config.token_url or not config.client_id or config.client_secret is None:
            raise DamAuthError(
                "auth.token_url, auth.client_id and auth.client_secret are required for "
                "oauth2_client_credentials"
            )
        token_url = urljoin(base_url.rstrip("/") + "/", config.token_url) if base_url else (
            config.token_url
        )
        return OAuth2ClientCredentials(
            token_url,
            config.client_id,
            config.client_secret,
            scope=config.scope,
            session=session,
            timeout=timeout,
            clock=clock,
        )
    raise DamAuthError(f"unknown auth type {config.type!r}")
