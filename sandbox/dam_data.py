"""Deterministic, lazily generated asset data for the sandbox DAM.

Nothing is stored per base asset: record `i` is regenerated from `(seed, i)` whenever it
is needed, and its id encodes `i` reversibly, so 100 000 assets cost almost no memory.
Base assets are modified one minute apart, in index order, from BASE_TIME on; every
later change gets a strictly later timestamp, which keeps "sorted by (updated, id)" the
same as "index order, then mutation order".
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BASE_TIME_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
STEP_MS = 60_000
_MASK = (1 << 48) - 1
_MULT = 0x5DEECE66D  # odd: invertible modulo 2**48
_INV = pow(_MULT, -1, 1 << 48)

FIRST_NAMES = [
    "allie", "braga", "cody", "dana", "elio", "fara", "gaia", "hugo", "iris", "jade",
    "kai", "lena", "milo", "nora", "otto", "pia", "quinn", "rosa", "sven", "tess",
]
PRODUCT_NOUNS = [
    "jean", "shirt", "jacket", "sneaker", "dress", "coat", "scarf", "boot", "bag", "cap",
    "lamp", "chair", "kettle", "blender", "watch",
]
VIEWS = ["model-picture", "front", "back", "detail", "side", "packshot"]
COLORS = ["red", "blue", "green", "black", "white", "yellow", "grey", "pink"]
SEASONS = ["summer", "winter", "spring", "autumn"]
DISCLAIMERS = ["Photo non contractuelle", "Colours may vary", "Illustration only"]
LOCALES = ["en_US", "fr_FR", "de_DE"]
CAMPAIGNS = ["black-friday", "spring-sale", "newsletter", "brand-story", "social"]

BAD_KINDS = (
    # kind, field, level: "adapter" (BadRecord in the Page) or "transform" (quarantine)
    ("missing_id", "id", "adapter"),
    ("bad_date", "dateModified", "adapter"),
    ("unknown_language", "language", "transform"),
    ("non_numeric_duration", "duration", "transform"),
    ("long_description", "description", "transform"),
    ("broken_original", "original", "transform"),
)

MEDIA_HEADERS = {
    "pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
    "mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
    "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01",
}
ASSET_TYPES = {
    "products/packshots": "packshot",
    "products/user-guides": "user_guide",
    "products/videos": "video",
}
CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "pdf": "application/pdf",
    "mp4": "video/mp4",
}


def iso_ms(ms: int) -> str:
    """`2026-01-01T00:00:00Z`, with milliseconds only when there are some."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def product_sku(p: int) -> str:
    """A readable, unique product identifier for product number `p`."""
    first = FIRST_NAMES[p % len(FIRST_NAMES)]
    noun = PRODUCT_NOUNS[(p // len(FIRST_NAMES)) % len(PRODUCT_NOUNS)]
    series = p // (len(FIRST_NAMES) * len(PRODUCT_NOUNS))
    return f"{first}-{noun}" + (f"-{series + 1}" if series else "")


@dataclass(frozen=True)
class BadSpec:
    index: int
    kind: str
    field: str
    level: str


class Catalog:
    """Base assets 0..count-1, generated on demand."""

    def __init__(self, count: int, seed: int = 1, bad: bool = True) -> None:
        self.count = count
        self.seed = seed
        self._salt = int.from_bytes(hashlib.sha256(f"salt:{seed}".encode()).digest()[:6], "big")
        self.products = max(5, count // 6)
        self.bad: dict[int, BadSpec] = {}
        if bad and count >= 20:
            for k, (kind, field, level) in enumerate(BAD_KINDS):
                index = (k + 1) * count // (len(BAD_KINDS) + 1) + 1
                self.bad[index] = BadSpec(index, kind, field, level)

    # ------------------------------------------------------------ ids

    def id_of(self, i: int) -> str:
        h = hashlib.sha1(f"{self.seed}:{i}".encode()).hexdigest().upper()
        tail = (i * _MULT + self._salt) & _MASK
        return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{tail:012X}"

    def index_of(self, asset_id: str) -> int | None:
        """The index an id encodes (any index, base or added), or None."""
        parts = asset_id.split("-")
        if len(parts) != 5 or len(parts[4]) != 12:
            return None
        try:
            tail = int(parts[4], 16)
        except ValueError:
            return None
        i = ((tail - self._salt) * _INV) & _MASK
        if i > 10**9 or self.id_of(i) != asset_id:
            return None
        return i

    def base_updated_ms(self, i: int) -> int:
        return BASE_TIME_MS + i * STEP_MS

    # ------------------------------------------------------------ records

    def record(self, i: int) -> dict[str, Any]:
        """The canonical ("bynder") record of base asset `i`, `original` left to render."""
        rng = random.Random(self.seed * 1_000_003 + i)
        asset_id = self.id_of(i)
        spec = self.bad.get(i)
        roll = rng.random()
        family = (
            "marketing" if roll < 0.05
            else "packshot" if roll < 0.62
            else "user_guide" if roll < 0.82
            else "video"
        )
        if spec is not None and spec.kind == "unknown_language":
            family = "user_guide"
        elif spec is not None and spec.kind == "non_numeric_duration":
            family = "video"
        elif spec is not None and family == "marketing":
            family = "packshot"
        sku = product_sku(rng.randrange(self.products))
        title = sku.replace("-", " ").title()
        modified = self.base_updated_ms(i)
        created = modified - rng.randrange(0, 30 * 24 * 3600) * 1000
        season = rng.choice(SEASONS)
        rec: dict[str, Any] = {
            "id": asset_id,
            "dateCreated": iso_ms(created - created % 1000),
            "dateModified": iso_ms(modified),
            "duration": None,
            "language": None,
            "width": None,
            "height": None,
            "original": None,
        }
        if family == "packshot":
            n = rng.randint(1, 4)
            view = rng.choice(VIEWS)
            stem = f"{sku}_{n}_{view}"
            width = rng.choice([800, 1200, 1600, 2000])
            rec.update(
                name=stem, filename=f"{stem}.png", extension="png", type="image",
                folder="products/packshots", tags=["product", season],
                description=f"{title}, {view.replace('-', ' ')}",
                width=width, height=width * 4 // 3,
                property_colors=",".join(rng.sample(COLORS, rng.randint(1, 3))),
                property_sku=sku, property_disclaimer=rng.choice(DISCLAIMERS),
                property_product_asset=True,
            )
        elif family == "user_guide":
            locale = rng.choice(LOCALES)
            if spec is not None and spec.kind == "unknown_language":
                locale = "xx_XX"
            stem = f"{sku}_user_guide_{locale}"
            rec.update(
                name=stem, filename=f"{stem}.pdf", extension="pdf", type="document",
                folder="products/user-guides", tags=["product", "manual"],
                description=f"{title}, user guide", language=locale,
                property_colors="", property_sku=sku, property_disclaimer="",
                property_product_asset=True,
            )
        elif family == "video":
            stem = f"{sku}_presentation"
            duration: Any = round(rng.uniform(5, 180), 1)
            if spec is not None and spec.kind == "non_numeric_duration":
                duration = "about two minutes"
            rec.update(
                name=stem, filename=f"{stem}.mp4", extension="mp4", type="video",
                folder="products/videos", tags=["product", "video"],
                description=f"{title}, presentation video", duration=duration,
                width=1920, height=1080,
                property_colors="", property_sku=sku, property_disclaimer="",
                property_product_asset=True,
            )
        else:
            campaign = rng.choice(CAMPAIGNS)
            stem = f"{campaign}_banner_{rng.randint(1, 99)}"
            rec.update(
                name=stem, filename=f"{stem}.jpg", extension="jpg", type="image",
                folder=f"marketing/{campaign}", tags=["marketing", season],
                description=f"{campaign.replace('-', ' ').title()} banner",
                width=1920, height=600,
                property_colors="", property_sku=None, property_disclaimer="",
                property_product_asset=False,
            )
        rec["fileSize"] = media_size(asset_id)
        if spec is not None:
            if spec.kind == "bad_date":
                rec["dateModified"] = "not-a-date"
            elif spec.kind == "long_description":
                rec["description"] = ("Extremely long description. " * 200).strip()
            elif spec.kind == "broken_original":
                rec["original"] = f"://broken-url/{rec['filename']}"
        return rec


# ---------------------------------------------------------------- binaries


def media_size(asset_id: str) -> int:
    """Bytes of an asset's binary (stable per asset, 0.5 to 8 KiB)."""
    return 512 + int(hashlib.sha1(asset_id.encode()).hexdigest()[:6], 16) % 7680


def media_bytes(asset_id: str, version_ms: int, extension: str, size: int) -> bytes:
    """Deterministic content per asset version, with a header that looks like the type."""
    if extension == "png":
        header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + struct.pack(">II", 1200, 1600)
    else:
        header = MEDIA_HEADERS.get(extension, b"")
    body = hashlib.shake_256(f"{asset_id}:{version_ms}".encode()).digest(
        max(0, size - len(header))
    )
    return header + body


# ---------------------------------------------------------------- shapes


def render_bynder(rec: dict[str, Any], host_url: str, hide_id: bool = False) -> dict[str, Any]:
    """The canonical shape (`Catalog.record`, Bynder-like), `original` pointing at this server."""
    out = dict(rec)
    if out.get("original") is None:
        out["original"] = f"{host_url.rstrip('/')}/media/{rec['id']}/{rec['filename']}"
    if hide_id:
        out.pop("id", None)
    return out


def render_cloudinary(rec: dict[str, Any], host_url: str, hide_id: bool = False) -> dict[str, Any]:
    """A Cloudinary Admin API resource; custom metadata under `context.custom` (colours
    separated by "|", `asset_type` from the folder, `caption` = description). Public ids
    end in a suffix, as an upload with `unique_filename` gives them: names repeat across
    assets, public ids never do."""
    b = render_bynder(rec, host_url)
    folder = str(b.get("folder") or "")
    custom = {
        "asset_type": ASSET_TYPES.get(folder, "marketing"),
        "sku": b.get("property_sku"),
        "colors": str(b.get("property_colors") or "").replace(",", "|"),
        "caption": b.get("description"),
        "disclaimer": b.get("property_disclaimer"),
        "description": b.get("description"),
        "language": b.get("language"),
        "product_asset": "true" if b.get("property_product_asset") else "false",
    }
    out: dict[str, Any] = {
        "asset_id": b.get("id"),
        "public_id": f"{b.get('folder')}/{b.get('name')}_{_suffix(str(rec.get('id')))}",
        "format": b.get("extension"),
        "resource_type": "video" if b.get("type") == "video" else "image",
        "type": "upload",
        "created_at": b.get("dateCreated"),
        "updated_at": b.get("dateModified"),
        "bytes": b.get("fileSize"),
        "width": b.get("width"),
        "height": b.get("height"),
        "duration": b.get("duration"),
        "asset_folder": b.get("folder"),
        "display_name": b.get("name"),
        "filename": b.get("filename"),
        "tags": list(b.get("tags") or []),
        "secure_url": b.get("original"),
        "url": b.get("original"),
        "context": {"custom": {k: v for k, v in custom.items() if v not in (None, "")}},
    }
    if hide_id:
        out.pop("asset_id")
    return out


def render_nested(rec: dict[str, Any], host_url: str, hide_id: bool = False) -> dict[str, Any]:
    """A DAM shaped unlike the examples (docs/quickstart.md): a dotted id, the product facts
    under `metadata.fields` (colours as a JSON list), the file under `file` with a URL
    relative to the server's root (`media/<id>/<name>`, no leading slash)."""
    b = render_bynder(rec, host_url)
    original = rec.get("original")  # set only for a broken record: kept as it is
    url = original if original is not None else f"media/{rec['id']}/{rec['filename']}"
    fields = {
        "sku": b.get("property_sku"),
        "title": b.get("description"),
        "colors": [c for c in str(b.get("property_colors") or "").split(",") if c],
        "language": b.get("language"),
        "duration": b.get("duration"),
        "product_asset": bool(b.get("property_product_asset")),
    }
    out: dict[str, Any] = {
        "id": f"assets.{str(rec['id']).lower()}",
        "kind": b.get("type"),
        "name": b.get("name"),
        "created_at": b.get("dateCreated"),
        "modified_at": b.get("dateModified"),
        "folder": b.get("folder"),
        "tags": list(b.get("tags") or []),
        "file": {"name": b.get("filename"), "url": url, "size": b.get("fileSize"),
                 "width": b.get("width"), "height": b.get("height")},
        "metadata": {"fields": {k: v for k, v in fields.items() if v not in (None, "", [])}},
    }
    if hide_id:
        out.pop("id")
    return out


def render_graphql(rec: dict[str, Any], host_url: str, hide_id: bool = False) -> dict[str, Any]:
    """A GraphQL `Asset` node, Frontify/Contentful-like (sandbox/dam_graphql.py): camelCase
    fields, the product facts under `metadata` (colours as a list), the file's absolute
    `downloadUrl`."""
    b = render_bynder(rec, host_url)
    metadata = {
        "sku": b.get("property_sku"),
        "colors": [c for c in str(b.get("property_colors") or "").split(",") if c],
        "language": b.get("language"),
        "disclaimer": b.get("property_disclaimer") or None,
        "productAsset": bool(b.get("property_product_asset")),
    }
    out: dict[str, Any] = {
        "id": rec["id"],
        "type": str(b.get("type") or "").upper() or None,
        "title": b.get("name"),
        "description": b.get("description"),
        "filename": b.get("filename"),
        "extension": b.get("extension"),
        "size": b.get("fileSize"),
        "width": b.get("width"),
        "height": b.get("height"),
        "duration": b.get("duration"),
        "createdAt": b.get("dateCreated"),
        "modifiedAt": b.get("dateModified"),
        "folder": b.get("folder"),
        "tags": list(b.get("tags") or []),
        "downloadUrl": b.get("original"),
        "metadata": metadata,
    }
    if hide_id:
        out["id"] = None  # GraphQL answers every selected field: a missing id is null
    return out


def _suffix(asset_id: str) -> str:
    """Ten hex digits derived from the id: unique across any sandbox's assets in practice."""
    return hashlib.sha1(asset_id.encode()).hexdigest()[:10]
