"""What the transform step produces for each DAM record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class TransformedAsset:
    """A PIM-ready asset. `content_hash` covers family + values (not volatile fields).

    `updated` is the DAM record's modification time: with `content_hash` it is the DAM
    version a push carries, so that a late push of an older version cannot overwrite a
    newer one (`connector.pipeline.stores.VersionGate`). None: the DAM gives no time.
    """

    dam_id: str
    source: str
    family: str
    code: str
    values: dict[str, list[dict[str, Any]]]
    content_hash: str
    product_identifiers: tuple[str, ...] = ()
    updated: datetime | None = None

    def payload(self) -> dict[str, Any]:
        """The body item of a bulk PATCH."""
        return {"code": self.code, "values": self.values}

    def to_dict(self) -> dict[str, Any]:
        return {
            "dam_id": self.dam_id,
            "source": self.source,
            "family": self.family,
            "code": self.code,
            "values": self.values,
            "content_hash": self.content_hash,
            "product_identifiers": list(self.product_identifiers),
            "updated": self.updated.isoformat() if self.updated else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformedAsset:
        return cls(
            dam_id=d["dam_id"],
            source=d["source"],
            family=d["family"],
            code=d["code"],
            values=d["values"],
            content_hash=d["content_hash"],
            product_identifiers=tuple(d.get("product_identifiers") or ()),
            updated=datetime.fromisoformat(d["updated"]) if d.get("updated") else None,
        )


@dataclass(frozen=True)
class Quarantined:
    """A record that could not be transformed, with the field and the reason."""

    dam_id: str | None
    source: str
    reason: str
    field: str | None = None
    family: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dam_id": self.dam_id,
            "source": self.source,
            "reason": self.reason,
            "field": self.field,
            "family": self.family,
            "details": self.details,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Quarantined:
        return cls(
            dam_id=d.get("dam_id"),
            source=d["source"],
            reason=d["reason"],
            field=d.get("field"),
            family=d.get("family"),
            details=dict(d.get("details") or {}),
        )


@dataclass(frozen=True)
class Skipped:
    """Not a product asset (filtered out by the selection rules): not an error."""

    dam_id: str
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"dam_id": self.dam_id, "source": self.source, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Skipped:
        return cls(dam_id=d["dam_id"], source=d["source"], reason=d["reason"])


@dataclass
class TransformOutcome:
    """Everything one page (or chunk) of DAM records turned into."""

    assets: list[TransformedAsset] = dataclasses.field(default_factory=list)
    quarantined: list[Quarantined] = dataclasses.field(default_factory=list)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)

    def add(self, result: TransformedAsset | Quarantined | Skipped) -> None:
        if isinstance(result, TransformedAsset):
            self.assets.append(result)
        elif isinstance(result, Quarantined):
            self.quarantined.append(result)
        else:
            self.skipped.append(result)

    def by_family(self) -> dict[str, list[TransformedAsset]]:
        """Transformed assets grouped by family, in order (one bulk PATCH per family)."""
        groups: dict[str, list[TransformedAsset]] = {}
        for asset in self.assets:
            groups.setdefault(asset.family, []).append(asset)
        return groups

    def to_dict(self) -> dict[str, Any]:
        return {
            "assets": [a.to_dict() for a in self.assets],
            "quarantined": [q.to_dict() for q in self.quarantined],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TransformOutcome:
        return cls(
            assets=[TransformedAsset.from_dict(a) for a in d.get("assets") or ()],
            quarantined=[Quarantined.from_dict(q) for q in d.get("quarantined") or ()],
            skipped=[Skipped.from_dict(s) for s in d.get("skipped") or ()],
        )
