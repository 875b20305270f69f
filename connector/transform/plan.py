"""A record's transform as a plan: the asset, its content hash, and the writes still to do.

Apart from the transformer because dry runs, `explain` and the pipeline's staging read plans
and hashes without running a transform: `PlannedAsset` lists the options to create and the
files to upload (`effects`), `content_hash` is what "unchanged" is decided on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connector.dam.base import DamAsset
from connector.transform.converters import PendingMedia, PendingOption
from connector.transform.result import TransformedAsset


def content_hash(
    family: str,
    code: str,
    values: dict[str, list[dict[str, Any]]],
    product_identifiers: Sequence[str] = (),
) -> str:
    """sha256 of canonical JSON (sorted keys, compact) of family + code + values: the same
    asset gives the same hash in every process, so unchanged assets can be skipped.

    The products an asset links to are part of its content: a changed product reference
    must not be skipped as "unchanged", or the asset would never move to its new product.
    They are added only when there are some, so hashes of unlinked assets stay as they were.
    """
    body: dict[str, Any] = {"family": family, "code": code, "values": values}
    if product_identifiers:
        body["products"] = sorted(product_identifiers)
    canonical = json.dumps(
        body,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class MediaSlot:
    """Where a planned media file's code goes: attribute, locale, channel."""

    attribute: str
    locale: str | None
    channel: str | None
    pending: PendingMedia


@dataclass
class PlannedAsset:
    """A record's transform, planned: the asset (a media value still waiting for its
    upload holds `PendingMedia.placeholder`, never sent to the PIM) and the side effects
    the real run carries out before staging it (`Transformer.execute`)."""

    asset: TransformedAsset
    options: list[PendingOption] = field(default_factory=list)
    media: list[MediaSlot] = field(default_factory=list)
    dam_asset: DamAsset | None = None

    def effects(self) -> list[dict[str, Any]]:
        """The planned writes, one dict each, with a `text` for people."""
        out: list[dict[str, Any]] = []
        dam_id, family = self.asset.dam_id, self.asset.family
        for option in self.options:
            out.append({
                "effect": "create_option", "dam_id": dam_id, "family": option.family,
                "attribute": option.attribute, "code": option.code, "label": option.label,
                "text": f"would create option `{option.attribute}.{option.code}`",
            })
        for slot in self.media:
            p = slot.pending
            if not p.needs_upload:
                continue
            out.append({
                "effect": "upload_media", "dam_id": dam_id, "family": family,
                "attribute": p.attribute, "filename": p.filename, "sha256": p.sha256,
                "size": p.size,
                "text": f"would upload `{p.filename}` "
                        f"(sha256 {(p.sha256 or '')[:12]}…, {human_size(p.size or 0)})",
            })
        return out

    def close(self) -> None:
        """Release downloads kept for the upload (a plan that is not executed)."""
        for slot in self.media:
            slot.pending.close()


def human_size(size: int) -> str:
    """Bytes for people, in decimal units: 520 B, 14.2 kB, 2.1 MB."""
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB"):
        size_f = size / 1000
        if size_f < 1000 or unit == "GB":
            return f"{size_f:.1f} {unit}"
        size = int(size_f)
    return f"{size} B"  # pragma: no cover
