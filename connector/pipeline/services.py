"""The pipeline's collaborators, built once per process from config + environment.

Tasks call `get_services()` on every invocation; the clients behind it (PIM session and
token, DAM sessions, structure cache, transformers) are built lazily on first use and then
reused, so a worker does not rebuild an HTTP client per task. A forked child builds its own
(the cache is keyed by pid). Tests build a `Services` with fakes and `set_services()` it.

The task queue is not found here: the process's entry point (tasks/, the composition root)
`wire()`s the enqueuer and the intake flush scheduler in, so this package never imports
Celery. A Services built without an enqueuer uses the wired one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import redis

from connector.config.model import Config, SourceConfig, SyncConfig
from connector.pipeline.errors import UnknownSourceError
from connector.pipeline.runs import RunStore, SyncRedis
from connector.pipeline.stores import AssetStateStore, DeadLetterStore
from connector.redis_conn import Keys, get_redis

if TYPE_CHECKING:
    from connector.alerts import Alerts
    from connector.dam.base import DamAsset, DamSource
    from connector.intake.flush import FlushScheduler
    from connector.pim.structure import AssetFamilyStructure
    from connector.transform.plan import PlannedAsset
    from connector.transform.result import Quarantined, Skipped, TransformedAsset

class Enqueuer(Protocol):
    """How the application layer hands work to the task queue (implemented in tasks/).

    Only ids travel: the work itself waits in Redis under the run's keys.
    """

    def fetch(self, source: str, run_id: str, part: int = 0) -> None:
        """Run part `part` of the fetch step of `run_id` (on the fetch queue); parts after
        the first go on where the previous one stopped (steps/slices.py)."""

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        """Transform one stored chunk (media families have a queue of their own)."""

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        """Push one batch, after `countdown` seconds (on the push queue)."""


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


class TransformerLike(Protocol):
    """The slice of `Transformer` the pipeline calls (tests pass their own)."""

    def transform(self, asset: DamAsset) -> TransformedAsset | Quarantined | Skipped: ...
    def plan(
        self, asset: DamAsset, keep_binaries: bool = False
    ) -> PlannedAsset | Quarantined | Skipped: ...


class QuarantineLike(Protocol):
    """The slice of `QuarantineStore` the pipeline calls (tests pass their own)."""

    def add_many(
        self, source: str, items: Sequence[Quarantined], run_id: str | None = None
    ) -> list[str]: ...
    def remove_many(self, source: str, dam_ids: Sequence[str]) -> int: ...
    def count(self, source: str) -> int: ...
    def get(self, source: str, dam_id: str) -> dict[str, Any] | None: ...
    def list(self, source: str, limit: int | None = None) -> list[dict[str, Any]]: ...


class NotWiredError(RuntimeError):
    """The process's entry point installed no task queue (see `wire`)."""


@dataclass(frozen=True)
class Wiring:
    """What the process's entry point plugs in (tasks/wiring.py: Celery)."""

    enqueuer: Enqueuer | None = None
    flush_scheduler: FlushScheduler | None = None


_wiring = Wiring()


def wire(
    *, enqueuer: Enqueuer | None = None, flush_scheduler: FlushScheduler | None = None
) -> None:
    """Install this process's task queue (entry points only; None leaves a part unwired)."""
    global _wiring
    _wiring = Wiring(enqueuer, flush_scheduler)


def wiring() -> Wiring:
    """What `wire` installed in this process."""
    return _wiring


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
        transformer_factory: Callable[[Services, SourceConfig], TransformerLike] | None = None,
        quarantine: QuarantineLike | None = None,
        media_client: PimClientLike | None = None,
    ) -> None:
        self.config = config
        self.redis: SyncRedis = redis_client if redis_client is not None else get_redis()
        self.keys = keys or Keys()
        self.runs = RunStore(self.redis, self.keys)
        self.assets = AssetStateStore(self.redis, self.keys)
        self.dead_letters = DeadLetterStore(self.redis, self.keys)
        self._alerts: Alerts | None = None
        if config.alerts.webhooks:  # count new dead letters for the alerts
            self.dead_letters.on_new = lambda source: self.alerts.note_dead_letter(source)
        self._client = client
        self._client_given = client is not None
        self._media_client = media_client
        self._cache = cache
        self._sources: dict[str, DamSource] = dict(sources or {})
        self._enqueuer = enqueuer
        self._transformer_factory = transformer_factory or _default_transformer
        self._transformers: dict[str, TransformerLike] = {}
        self._quarantine = quarantine
        self._lock = threading.RLock()
        self._config_hash: str | None = None

    # ------------------------------------------------------------------ config

    @property
    def sync(self) -> SyncConfig:
        """The run settings (batch sizes, retries, lock TTL, watermark overlap)."""
        return self.config.sync

    @property
    def config_hash(self) -> str:
        """The fingerprint of this process's config (runs record it, workers compare it)."""
        with self._lock:
            if self._config_hash is None:
                from connector.config.fingerprint import config_fingerprint

                self._config_hash = config_fingerprint(self.config)
            return self._config_hash

    def source_config(self, name: str) -> SourceConfig:
        try:
            return self.config.source(name)
        except KeyError:
            known = ", ".join(s.name for s in self.config.sources) or "none"
            raise UnknownSourceError(f"unknown source {name!r} (configured: {known})") from None

    # ------------------------------------------------------------------ lazy parts

    @property
    def alerts(self) -> Alerts:
        """The `alerts:` webhooks (connector/alerts.py); sends nothing when none is set."""
        with self._lock:
            if self._alerts is None:
                from connector.alerts import alerts_for

                self._alerts = alerts_for(self.config, self.redis, self.keys)
            return self._alerts

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
    def media_client(self) -> PimClientLike:
        """Who uploads media files: a client of the second Akeneo connection when
        AKENEO_MEDIA_* are set (its own in-flight slots, `pim.media_max_in_flight`), else
        `client`. A client passed in (tests) is used for both unless one is given."""
        with self._lock:
            if self._media_client is None:
                from connector.settings import PimCredentials

                credentials = None if self._client_given else PimCredentials.media_from_env()
                if credentials is None:
                    self._media_client = self.client
                else:
                    from connector.pim.budget import MEDIA_CONNECTION
                    from connector.pim.client import AkeneoClient

                    self._media_client = AkeneoClient(
                        credentials, self.config.pim, self.redis, self.keys,
                        connection=MEDIA_CONNECTION,
                    )
            return self._media_client

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

    def transformer(self, name: str) -> TransformerLike:
        """The source's transformer, built once per process."""
        with self._lock:
            found = self._transformers.get(name)
            if found is None:
                found = self._transformer_factory(self, self.source_config(name))
                self._transformers[name] = found
            return found

    @property
    def quarantine(self) -> QuarantineLike:
        """Bad DAM records, per source."""
        with self._lock:
            if self._quarantine is None:
                from connector.transform.quarantine import QuarantineStore

                self._quarantine = QuarantineStore(self.redis, self.keys)
            return self._quarantine

    @property
    def enqueuer(self) -> Enqueuer:
        with self._lock:
            if self._enqueuer is None:
                self._enqueuer = _wiring.enqueuer
            if self._enqueuer is None:
                raise NotWiredError(
                    "no task queue in this process: start it through tasks/ (the `connector` "
                    "command, `celery -A tasks`), or give Services an enqueuer"
                )
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
        for client in {id(c): c for c in (self._client, self._media_client)}.values():
            close = getattr(client, "close", None)
            if callable(close):
                close()


def _default_transformer(services: Services, source: SourceConfig) -> TransformerLike:
    from connector.transform.media import MediaFileHandler
    from connector.transform.transformer import Transformer

    media = MediaFileHandler(
        services.source(source.name),
        services.media_client,
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
