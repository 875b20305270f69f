"""The pipeline's collaborators, built once per process from config + environment.

Tasks call `get_services()` on every invocation; the clients behind it (PIM session and
token, DAM sessions, structure cache, transformers) are built lazily on first use and then
reused, so a worker does not rebuild an HTTP client per task. A forked child builds its own
(the cache is keyed by pid). Tests build a `Services` with fakes and `set_services()` it.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import redis

from connector.config.model import Config, SourceConfig
from connector.pipeline.errors import UnknownSourceError
from connector.pipeline.runs import RunStore, SyncRedis
from connector.pipeline.stores import AssetStateStore, DeadLetterStore
from connector.redis_conn import Keys, get_redis

if TYPE_CHECKING:
    from connector.dam.base import DamSource
    from connector.pim.structure import AssetFamilyStructure

DEFAULT_ENQUEUER = "tasks.pipeline:enqueuer"


class Enqueuer(Protocol):
    """How the application layer hands work to the task queue (implemented in tasks/).

    Only ids travel: the work itself waits in Redis under the run's keys.
    """

    def fetch(self, source: str, run_id: str) -> None:
        """Run the fetch step of `run_id` (queue `fetch`)."""

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        """Transform one stored chunk (queue `transform`, or `media` for media families)."""

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        """Push one batch, after `countdown` seconds (queue `push`)."""


class PimClientLike(Protocol):
    """The slice of `AkeneoClient` the pipeline calls (lets tests pass a fake)."""

    def upsert_assets(self, family: str, assets: Any) -> Any: ...
    def get_asset(self, family: str, code: str) -> dict[str, Any] | None: ...
    def list_assets(self, family: str, updated_after: Any = None) -> Any: ...
    def delete_asset(self, family: str, code: str) -> bool: ...
    def get_product(self, identifier: str) -> dict[str, Any] | None: ...

    def get_products(self, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]: ...
    def patch_products(self, products: Any) -> list[dict[str, Any]]: ...
    def upsert_option(
        self, family: str, attribute: str, code: str, body: dict[str, Any]
    ) -> int: ...
    def upload_media_file(self, path_or_fileobj: Any, filename: str) -> str: ...


class StructureCacheLike(Protocol):
    def family(self, code: str) -> AssetFamilyStructure: ...
    def invalidate(self, code: str | None = None) -> None: ...
    def note_option(self, family: str, attribute: str, option_code: str) -> None: ...


def load_enqueuer(spec: str | None = None) -> Enqueuer:
    """`module:attribute` (env CONNECTOR_ENQUEUER); imported at run time so that the
    connector package itself never imports Celery."""
    spec = spec or os.environ.get("CONNECTOR_ENQUEUER") or DEFAULT_ENQUEUER
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    found: Enqueuer = getattr(module, attr or "enqueuer")
    return found


class Services:
    """Config, Redis, stores and lazily built clients for one process."""

    def __init__(
        self,
        config: Config,
        redis_client: redis.Redis | None = None,
        keys: Keys | None = None,
        *,
        client: PimClientLike | None = None,
        cache: StructureCacheLike | None = None,
        sources: dict[str, DamSource] | None = None,
        enqueuer: Enqueuer | None = None,
        transformer_factory: Callable[[Services, SourceConfig], Any] | None = None,
        quarantine: Any = None,
    ) -> None:
        self.config = config
        self.redis: SyncRedis = redis_client if redis_client is not None else get_redis()
        self.keys = keys or Keys()
        self.runs = RunStore(self.redis, self.keys)
        self.assets = AssetStateStore(self.redis, self.keys)
        self.dead_letters = DeadLetterStore(self.redis, self.keys)
        self._client = client
        self._cache = cache
        self._sources: dict[str, DamSource] = dict(sources or {})
        self._enqueuer = enqueuer
        self._transformer_factory = transformer_factory or _default_transformer
        self._transformers: dict[str, Any] = {}
        self._quarantine = quarantine
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ config

    @property
    def sync(self) -> Any:
        return self.config.sync

    def source_config(self, name: str) -> SourceConfig:
        try:
            return self.config.source(name)
        except KeyError:
            known = ", ".join(s.name for s in self.config.sources) or "none"
            raise UnknownSourceError(f"unknown source {name!r} (configured: {known})") from None

    # ------------------------------------------------------------------ lazy parts

    @property
    def client(self) -> PimClientLike:
        with self._lock:
            if self._client is None:
                from connector.pim.client import AkeneoClient
                from connector.settings import PimCredentials

                self._client = AkeneoClient(
                    PimCredentials.from_env(), self.config.pim, self.redis, self.keys
                )
            return self._client

    @property
    def cache(self) -> StructureCacheLike:
        with self._lock:
            if self._cache is None:
                from connector.pim.cache import StructureCache

                self._cache = StructureCache(
                    self.client,  # type: ignore[arg-type]
                    self.redis,
                    self.keys,
                    ttl=self.config.pim.structure_cache_ttl,
                )
            return self._cache

    def source(self, name: str) -> DamSource:
        with self._lock:
            found = self._sources.get(name)
            if found is None:
                from connector.dam.factory import build_source

                # the DAM's request budget is fleet-wide: held in this Redis
                found = build_source(self.source_config(name), self.redis, self.keys)
                self._sources[name] = found
            return found

    def transformer(self, name: str) -> Any:
        with self._lock:
            found = self._transformers.get(name)
            if found is None:
                found = self._transformer_factory(self, self.source_config(name))
                self._transformers[name] = found
            return found

    @property
    def quarantine(self) -> Any:
        with self._lock:
            if self._quarantine is None:
                from connector.transform.quarantine import QuarantineStore

                self._quarantine = QuarantineStore(self.redis, self.keys)
            return self._quarantine

    @property
    def enqueuer(self) -> Enqueuer:
        with self._lock:
            if self._enqueuer is None:
                self._enqueuer = load_enqueuer()
            return self._enqueuer

    def option_writer(self, family: str, attribute: str, option_code: str, label: str) -> None:
        """Creates a missing option in the PIM (the client rate-limits option writes)."""
        locale = self.config.pim.locales[0] if self.config.pim.locales else "en_US"
        self.client.upsert_option(
            family, attribute, option_code, {"code": option_code, "labels": {locale: label}}
        )
        self.cache.note_option(family, attribute, option_code)

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
        close = getattr(self._client, "close", None)
        if callable(close):
            close()


def _default_transformer(services: Services, source: SourceConfig) -> Any:
    from connector.transform.media import MediaFileHandler
    from connector.transform.transformer import Transformer

    media = MediaFileHandler(
        services.source(source.name),
        services.client,
        services.redis,
        services.keys,
        max_bytes=source.media.max_bytes,
    )
    return Transformer(
        services.config,
        source,
        services.cache.family,
        options=services.option_writer,
        media=media,
    )


_current: tuple[int, Services] | None = None
_current_lock = threading.Lock()


def get_services() -> Services:
    """This process's Services, from $CONNECTOR_CONFIG and the environment (built once)."""
    global _current
    with _current_lock:
        if _current is None or _current[0] != os.getpid():
            from connector.config import load_config

            _current = (os.getpid(), Services(load_config()))
        return _current[1]


def set_services(services: Services | None) -> None:
    """Install (or with None, forget) this process's Services (tests, the CLI)."""
    global _current
    with _current_lock:
        _current = (os.getpid(), services) if services is not None else None
