"""One Redis connection pool per process, and the key naming rule.

Every key the connector writes goes through `Keys`, so that deployments (and tests) that
share one Redis server never see each other's state.
"""

from __future__ import annotations

import threading

import redis

from connector import settings

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def get_redis(url: str | None = None) -> redis.Redis:
    """A process-wide client (pooled, thread-safe) for `url` or `REDIS_URL`."""
    url = url or settings.redis_url()
    with _lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(
                url, decode_responses=False, health_check_interval=30, socket_timeout=30
            )
            _clients[url] = client
        return client


class Keys:
    """Builds namespaced Redis keys.

    `Keys("connector").of("token", "pim")` → `connector:token:pim`.
    """

    def __init__(self, namespace: str | None = None) -> None:
        self.namespace = namespace or settings.key_namespace()

    def of(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))
