"""The port the pipeline talks to. Each DAM is an adapter behind it."""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any


class DamError(Exception):
    """The DAM could not be read (after retries); carries a reason for the run report.

    `key` is the config path the message tells the user to change, when there is one
    (`sources.dam.rest.list.id_field`): `connector check` files its finding under it."""

    key: str | None = None

    def __init__(self, *args: object, key: str | None = None) -> None:
        super().__init__(*args)
        if key is not None:
            self.key = key


class TransientDamError(DamError):
    """Worth retrying later (timeouts, 5xx, 429 after the retry budget)."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after      # seconds the DAM asked us to wait, when it said


class NoSingleGetError(DamError):
    """The source cannot read one asset by id (a REST DAM without `get_path`): callers
    may look the id up in the listing instead (`connector explain --scan`)."""


class PaginationLoopError(DamError):
    """The DAM handed out the same page token twice: following it would never end."""


@dataclass(frozen=True)
class DamAsset:
    """One DAM record, normalised just enough for the transform step.

    `properties` is the record as the DAM returned it (JSON-compatible), so that mappings
    can address any field by dotted path. `filename`, `folder`, `tags` and `media_url` are
    lifted out by the adapter's configuration because selectors use them.
    """

    id: str
    source: str
    properties: dict[str, Any]
    updated: datetime | None = None
    filename: str | None = None
    folder: str | None = None               # "a/b/c" style path
    tags: tuple[str, ...] = ()
    media_url: str | None = None            # where the binary lives (REST) or a file path

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "properties": self.properties,
            "updated": self.updated.isoformat() if self.updated else None,
            "filename": self.filename,
            "folder": self.folder,
            "tags": list(self.tags),
            "media_url": self.media_url,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DamAsset:
        upd = d.get("updated")
        return cls(
            id=d["id"],
            source=d["source"],
            properties=d.get("properties") or {},
            updated=datetime.fromisoformat(upd) if upd else None,
            filename=d.get("filename"),
            folder=d.get("folder"),
            tags=tuple(d.get("tags") or ()),
            media_url=d.get("media_url"),
        )


@dataclass(frozen=True)
class BadRecord:
    """A record the adapter could not even normalise (e.g. no id); quarantined upstream."""

    source: str
    raw: Any
    reason: str
    field: str | None = None
    record_id: str | None = None


@dataclass
class Page:
    """One page of a listing: normalised assets plus records that failed normalisation."""

    assets: list[DamAsset] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)

    def add(self, result: DamAsset | BadRecord) -> None:
        """A normalised record, on the side it belongs to (every adapter sorts this way)."""
        if isinstance(result, BadRecord):
            self.bad.append(result)
        else:
            self.assets.append(result)


class DamSource(abc.ABC):
    """Read-only view of one DAM."""

    name: str
    #: how many `get` calls a caller may run at once, in threads (1: one after another).
    #: An adapter whose client is thread-safe and budgeted raises it: a webhook batch of
    #: 100 ids then waits for 100 / n DAM round trips, not 100.
    concurrent_gets: int = 1

    @abc.abstractmethod
    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        """Stream pages of assets changed after `since` (all when None). Never a full list."""

    @abc.abstractmethod
    def get(self, asset_id: str) -> DamAsset | None:
        """The current record of one asset; None when it no longer exists."""

    @abc.abstractmethod
    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        """The asset's binary as a readable stream (caller enforces size caps)."""

    def changed_pages(
        self, since: datetime | None, resume: str | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """`changed_since`'s pages, each with a resume token: `changed_pages(since, token)`
        continues right after that page (a fetch that stops after a time slice and goes on
        in another task). The token is None after the last page; it is plain data (a page
        number, a cursor, a next URL, a last key), never a credential.

        Default: the number of pages read, so resuming re-reads and skips them; correct
        for a listing whose order is stable, and adapters with a real position override it.
        """
        skip = int(json.loads(resume)["pages"]) if resume else 0
        pages = iter(self.changed_since(since))
        read = 0
        page = next(pages, None)
        while page is not None:
            following = next(pages, None)  # one page ahead: is this the last one?
            read += 1
            if read > skip:
                yield page, (json.dumps({"pages": read}) if following is not None else None)
            page = following

    def deleted_since(self, since: datetime | None) -> Iterator[str]:
        """Ids deleted after `since`, where the DAM exposes deletions; default: none."""
        return iter(())

    def all_ids(self) -> Iterator[str]:
        """Every asset id the DAM has (for reconciliation); default: a full listing.

        Records that failed normalisation but carry an id are included: they still exist
        in the DAM and must never look deleted."""
        for page in self.changed_since(None):
            for asset in page.assets:
                yield asset.id
            for bad in page.bad:
                if bad.record_id:
                    yield bad.record_id

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
