"""Secrets and connection settings, read from the environment only.

Secrets never live in the config file or in task arguments: every process reads them from
its own environment. `Secret` wraps a value so that it cannot end up in a log line or a
repr by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class SettingsError(Exception):
    """A required environment variable is missing or malformed."""


@dataclass(frozen=True)
class PimCredentials:
    url: str
    client_id: str
    client_secret: Secret = field(repr=False)
    username: str
    password: Secret = field(repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> PimCredentials:
        env = dict(os.environ) if env is None else env
        names = (
            "AKENEO_URL",
            "AKENEO_CLIENT_ID",
            "AKENEO_CLIENT_SECRET",
            "AKENEO_USERNAME",
            "AKENEO_PASSWORD",
        )
        missing = [n for n in names if not env.get(n)]
        if missing:
            raise SettingsError("missing environment variable(s): " + ", ".join(missing))
        return cls._read(env, names[1:])

    @classmethod
    def media_from_env(cls, env: dict[str, str] | None = None) -> PimCredentials | None:
        """A second Akeneo connection for media-file uploads, or None when none is set.

        Why: Akeneo limits concurrent calls per connection (4), not only per instance (10).
        On one connection every upload takes a slot the bulk PATCHes need; uploads on a
        connection of their own leave those slots to the PATCHes. All four AKENEO_MEDIA_*
        variables, or none (AKENEO_URL is shared)."""
        env = dict(os.environ) if env is None else env
        names = MEDIA_CONNECTION_ENV
        given = [n for n in names if env.get(n)]
        if not given:
            return None
        missing = [n for n in (*names, "AKENEO_URL") if not env.get(n)]
        if missing:
            raise SettingsError(
                "a media connection needs all of " + ", ".join(names)
                + "; missing environment variable(s): " + ", ".join(missing)
            )
        return cls._read(env, names)

    @classmethod
    def _read(cls, env: dict[str, str], names: tuple[str, ...]) -> PimCredentials:
        """AKENEO_URL and the (client id, secret, username, password) variables `names`."""
        client_id, secret, username, password = names
        return cls(url=env["AKENEO_URL"].rstrip("/"), client_id=env[client_id],
                   client_secret=Secret(env[secret]), username=env[username],
                   password=Secret(env[password]))


#: the optional second Akeneo connection for media uploads (`PimCredentials.media_from_env`)
MEDIA_CONNECTION_ENV = (
    "AKENEO_MEDIA_CLIENT_ID",
    "AKENEO_MEDIA_CLIENT_SECRET",
    "AKENEO_MEDIA_USERNAME",
    "AKENEO_MEDIA_PASSWORD",
)


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url(env: Mapping[str, str] | None = None) -> str:
    source = os.environ if env is None else env  # one lookup, not a copy of the environment
    return source.get("REDIS_URL") or DEFAULT_REDIS_URL


def key_namespace(env: Mapping[str, str] | None = None) -> str:
    """Prefix of every Redis key the connector writes (tests use one per test). Read on
    every `Keys()` (per downloaded file, for the metrics): one lookup, never a copy."""
    source = os.environ if env is None else env
    return source.get("CONNECTOR_NAMESPACE") or "connector"
