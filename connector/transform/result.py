"""What the transform step produces for each DAM record."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TransformedAsset:
    """A PIM-ready asset. `content_hash` covers family + values (not volatile fields)."""

    dam_id: str
    source: str
    family: str
    code: str
    values: dict[str, list[dict[str, Any]]]
    content_hash: str
    product_identifiers: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Skipped:
    """Not a product asset (filtered out by the selection rules): not an error."""

    dam_id: str
    source: str
    reason: str
