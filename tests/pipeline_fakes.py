"""Small in-process stand-ins for the pipeline's collaborators (unit tests only).

The run bookkeeping under test is real (real Redis); these fakes replace the DAM, the
PIM client, the transformer and the task queue so that tests can replay, reorder and
duplicate tasks at will.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from connector import pipeline as steps
from connector.config.model import (
    Config,
    DeletionPolicy,
    FamilyConfig,
    ProductLinkConfig,
    Selector,
    SourceConfig,
    SyncConfig,
)
from connector.dam.base import DamAsset, DamError, DamSource, Page
from connector.pim.errors import AssetResult, PermanentPimError, TransientPimError
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.transform.codes import asset_code
from connector.transform.result import Quarantined, Skipped, TransformedAsset

FAMILIES = ("packshots", "user_guides", "videos")


def make_config(
    *,
    chunk_size: int = 50,
    batch_size: int = 100,
    max_retries: int = 4,
    deletion: DeletionPolicy | None = None,
    link_direct: bool = False,
) -> Config:
    families = tuple(
        FamilyConfig(
            name=name,
            match=Selector(property="family", equals=name),
            mapping=(),
            product_link=ProductLinkConfig(mode="direct", product_attribute="assets")
            if link_direct and name == "packshots"
            else ProductLinkConfig(),
        )
        for name in FAMILIES
    )
    source = SourceConfig(
        name="dam", type="rest", families=FAMILIES,
        deletion_policy=deletion or DeletionPolicy(action="delete"),
    )
    return Config(
        families=families,
        sources=(source,),
        sync=SyncConfig(chunk_size=chunk_size, push_batch_size=batch_size,
                        max_retries=max_retries, backoff_base=0.01, backoff_max=0.05,
                        watermark_overlap=60),
    )


def make_asset(i: int, family: str = "packshots", product: bool = True, **extra: Any) -> DamAsset:
    props = {"family": family, "product": product, "label": f"asset {i}", **extra}
    return DamAsset(
        id=f"A{i:05d}-X", source="dam", properties=props,
        updated=datetime(2026, 1, 1, tzinfo=UTC),
    )


class FakeDam(DamSource):
    """An in-memory DAM: `changed_since` pages through assets updated after `since`."""

    def __init__(self, assets: list[DamAsset], page_size: int = 37) -> None:
        self.name = "dam"
        self.assets = {a.id: a for a in assets}
        self.page_size = page_size
        self.deleted: dict[str, datetime] = {}
        self.down = False
        self.calls: list[datetime | None] = []

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        self.calls.append(since)
        if self.down:
            raise DamError("DAM unreachable: connection refused")
        items = [a for a in self.assets.values()
                 if since is None or a.updated is None or a.updated > since]
        for i in range(0, len(items), self.page_size):
            yield Page(assets=items[i : i + self.page_size])

    def get(self, asset_id: str) -> DamAsset | None:
        if self.down:
            raise DamError("DAM unreachable")
        return self.assets.get(asset_id)

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        raise NotImplementedError

    def deleted_since(self, since: datetime | None) -> Iterator[str]:
        return iter([d for d, at in self.deleted.items() if since is None or at > since])

    def edit(self, dam_id: str, **props: Any) -> None:
        old = self.assets[dam_id]
        self.assets[dam_id] = DamAsset(
            id=old.id, source=old.source, properties={**old.properties, **props},
            updated=datetime.now(UTC),
        )

    def delete(self, dam_id: str) -> None:
        del self.assets[dam_id]
        self.deleted[dam_id] = datetime.now(UTC)


class FakeTransformer:
    """family = properties.family; product = properties.product; `bad` → quarantined."""

    def __init__(self, families: tuple[str, ...] = FAMILIES, code_prefix: str | None = None
                 ) -> None:
        self.families = families
        self.code_prefix = code_prefix
        self.calls = 0

    def transform(self, asset: DamAsset) -> TransformedAsset | Quarantined | Skipped:
        self.calls += 1
        props = asset.properties
        if not props.get("product"):
            return Skipped(asset.id, asset.source, "not a product asset")
        if props.get("bad"):
            return Quarantined(asset.id, asset.source, "label too long", field="label")
        values = {"label": [{"locale": None, "channel": None, "data": props["label"]}]}
        family = props["family"]
        code = asset_code(asset.id, self.code_prefix)
        digest = hashlib.sha256(json.dumps([family, code, values]).encode()).hexdigest()
        return TransformedAsset(
            dam_id=asset.id, source=asset.source, family=family, code=code, values=values,
            content_hash=digest, product_identifiers=tuple(props.get("products") or ()),
            updated=asset.updated,
        )

    def plan(self, asset: DamAsset) -> TransformedAsset | Quarantined | Skipped:
        """Planning mode (dry runs): this fake has no side effects to plan."""
        return self.transform(asset)


@dataclass
class FakePim:
    """Asset storage per family, with failure injection."""

    assets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, int]] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)        # code → 422 message
    transient_lines: dict[str, int] = field(default_factory=dict)  # code → times to 429
    transient_requests: int = 0                                  # whole requests to 503
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    product_patches: list[list[dict[str, Any]]] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)

    def upsert_assets(self, family: str, assets: Any) -> list[AssetResult]:
        items = list(assets)
        assert len(items) <= 100, "more than 100 assets in one request"
        self.requests.append((family, len(items)))
        if family not in FAMILIES:
            raise PermanentPimError("Asset family not found", status=404)
        if self.transient_requests > 0:
            self.transient_requests -= 1
            raise TransientPimError("Service Unavailable", status=503, retry_after=0.01)
        out = []
        store = self.assets.setdefault(family, {})
        for item in items:
            code = item["code"]
            if code in self.reject:
                errors = [{"property": "values.label", "message": self.reject[code]}]
                out.append(AssetResult(code, 422, "Validation failed.", errors))
                continue
            if self.transient_lines.get(code, 0) > 0:
                self.transient_lines[code] -= 1
                out.append(AssetResult(code, 429, "Too many requests", retry_after=0.01))
                continue
            created = code not in store
            merged = dict(store.get(code, {}).get("values", {}))
            merged.update(item.get("values") or {})
            store[code] = {"code": code, "values": merged}
            out.append(AssetResult(code, 201 if created else 204))
        return out

    def get_asset(self, family: str, code: str) -> dict[str, Any] | None:
        return self.assets.get(family, {}).get(code)

    def list_assets(self, family: str, updated_after: Any = None) -> Iterator[dict[str, Any]]:
        return iter(list(self.assets.get(family, {}).values()))

    def delete_asset(self, family: str, code: str) -> bool:
        self.deleted.append((family, code))
        return self.assets.get(family, {}).pop(code, None) is not None

    def get_product(self, identifier: str) -> dict[str, Any] | None:
        return self.products.get(identifier)

    def get_products(self, identifiers: Any) -> dict[str, dict[str, Any]]:
        return {i: self.products[i] for i in identifiers if i in self.products}

    def patch_products(self, products: Any) -> list[dict[str, Any]]:
        lines = list(products)
        self.product_patches.append(lines)
        out = []
        for n, line in enumerate(lines, 1):
            self.products[line["identifier"]].setdefault("values", {}).update(line["values"])
            out.append({"line": n, "identifier": line["identifier"], "status_code": 204})
        return out

    def upsert_option(self, family: str, attribute: str, code: str, body: dict[str, Any]) -> int:
        return 201

    def upload_media_file(self, path_or_fileobj: Any, filename: str) -> str:
        return "media"

    def total(self) -> int:
        return sum(len(v) for v in self.assets.values())


class FakeCache:
    def __init__(self) -> None:
        self.invalidated: list[str | None] = []

    def family(self, code: str) -> AssetFamilyStructure:
        return AssetFamilyStructure(code=code, attributes={"label": Attribute("label", "text")})

    def invalidate(self, code: str | None = None) -> None:
        self.invalidated.append(code)

    def note_option(self, family: str, attribute: str, option_code: str) -> None:
        pass


class FakeQuarantine:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add_many(
        self, source: str, items: list[Quarantined], run_id: str | None = None
    ) -> list[str]:
        for q in items:
            self.entries[q.dam_id or "?"] = dict(q.to_dict(), run_id=run_id)
        return [q.dam_id or "?" for q in items]

    def remove_many(self, source: str, dam_ids: list[str]) -> int:
        return sum(1 for d in dam_ids if self.entries.pop(d, None) is not None)

    def count(self, source: str) -> int:
        return len(self.entries)

    def get(self, source: str, dam_id: str) -> dict[str, Any] | None:
        return self.entries.get(dam_id)

    def list(self, source: str, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self.entries.values())[:limit]


class QueueEnqueuer:
    """Records messages; `drain()` runs them in order, shuffled, and/or duplicated."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.services: Services | None = None

    def fetch(self, source: str, run_id: str, part: int = 0) -> None:
        self._put("fetch", (run_id, part))

    def transform(self, run_id: str, chunk_id: str, media: bool = False) -> None:
        self._put("transform", (run_id, chunk_id))

    def push(self, run_id: str, batch_id: str, countdown: float = 0.0) -> None:
        self._put("push", (run_id, batch_id))

    def _put(self, kind: str, args: tuple[Any, ...]) -> None:
        self.queue.append((kind, args))
        self.sent.append((kind, args))

    def run_one(self, kind: str, args: tuple[Any, ...]) -> None:
        assert self.services is not None
        if kind == "fetch":
            run_id, part = args
            steps.fetch(run_id, part=part, services=self.services)
        elif kind == "transform":
            steps.transform(*args, services=self.services)
        else:
            steps.push(*args, services=self.services)

    def drain(self, rng: random.Random | None = None, duplicate: float = 0.0,
              limit: int = 100_000) -> int:
        """Run queued work until none is left; with `rng`, in random order, and each
        message delivered twice with probability `duplicate` (acks_late redelivery)."""
        done = 0
        while self.queue:
            if rng is not None:
                index = rng.randrange(len(self.queue))
                self.queue.rotate(-index)
            kind, args = self.queue.popleft()
            self.run_one(kind, args)
            if rng is not None and rng.random() < duplicate:
                self.run_one(kind, args)
            done += 1
            assert done < limit, "work never ends"
        return done


def make_services(
    config: Config, dam: FakeDam, pim: FakePim, *, namespace: str | None = None
) -> tuple[Services, QueueEnqueuer]:
    enqueuer = QueueEnqueuer()
    transformer = FakeTransformer(code_prefix=config.sources[0].code_prefix)
    services = Services(
        config, get_redis(), Keys(namespace), client=pim, cache=FakeCache(),
        sources={"dam": dam}, enqueuer=enqueuer,
        transformer_factory=lambda s, src: transformer, quarantine=FakeQuarantine(),
    )
    enqueuer.services = services
    return services, enqueuer
