"""One raw item of a REST DAM's listing → `DamAsset`, or `BadRecord` with the reason.

Apart from the REST adapter because normalisation is pure (no request, no budget): the
adapter's request loop and paging stay in `connector.dam.rest`, what a record means is here.
It never raises: one broken record never stops a sync.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from connector.config.model import RestSourceConfig
from connector.dam.base import BadRecord, DamAsset
from connector.dam.dates import parse_datetime
from connector.dam.paths import MISSING, get_path


def normalise_record(
    source: str, config: RestSourceConfig, base_url: str, item: Any
) -> DamAsset | BadRecord:
    """One raw item of `source` → DamAsset, or BadRecord with the reason (never raises);
    a relative media URL is resolved against `base_url`."""
    endpoint = config.list
    if not isinstance(item, dict):
        return BadRecord(source, item, f"record is a {type(item).__name__}, not an object")
    raw_id = get_path(item, endpoint.id_field)
    if (
        raw_id is None
        or isinstance(raw_id, bool | dict | list)
        or not str(raw_id).strip()
    ):
        return BadRecord(
            source, item, f"missing id (field {endpoint.id_field!r})", endpoint.id_field
        )
    asset_id = str(raw_id).strip()
    updated: datetime | None = None
    raw_updated = get_path(item, endpoint.updated_field, MISSING)
    if raw_updated is not MISSING and raw_updated is not None:
        try:
            updated = parse_datetime(raw_updated)
        except ValueError:
            return BadRecord(
                source,
                item,
                f"unparsable date in {endpoint.updated_field!r}: {str(raw_updated)[:60]!r}",
                endpoint.updated_field,
                asset_id,
            )
    media_url = _text(get_path(item, config.media_url_field)) if config.media_url_field else None
    if media_url:
        media_url = urljoin(base_url + "/", media_url)
    filename = _text(get_path(item, config.filename_field)) if config.filename_field else None
    if filename is None and media_url:
        filename = urlsplit(media_url).path.rsplit("/", 1)[-1] or None
    folder = _folder(get_path(item, config.folder_field)) if config.folder_field else None
    tags = _tags(get_path(item, config.tags_field)) if config.tags_field else ()
    return DamAsset(
        id=asset_id,
        source=source,
        properties=item,
        updated=updated,
        filename=filename,
        folder=folder,
        tags=tags,
        media_url=media_url,
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()
    return text or None


def _folder(value: Any) -> str | None:
    if isinstance(value, list):
        value = "/".join(str(v).strip("/") for v in value if v not in (None, ""))
    text = _text(value)
    return (text.strip("/") or None) if text else None


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list | tuple):
        return tuple(str(t).strip() for t in value if t is not None and str(t).strip())
    return ()
