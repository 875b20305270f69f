"""Reading change events out of a webhook body or a queue message.

The DAM's shape is configuration (`EventFieldsConfig`): dotted paths to the event type, the
asset id(s), the delivery id and an optional full record. A path segment `[]` maps over a
list, so Cloudinary's `resources[].public_id` yields every id of a bulk delete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from connector.config.model import EventAction, EventFieldsConfig

_MISSING = object()


class MalformedEvent(ValueError):
    """The message cannot be read as configured; `reason` is short and specific."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Event:
    """One change of one asset, as recorded: what to do with which id."""

    action: EventAction
    asset_id: str
    event_type: str | None = None
    record: dict[str, Any] | None = None


def extract(obj: Any, path: str) -> Any:
    """The value at dotted `path` in `obj` (`_MISSING` sentinel → returns None when absent).

    `a.b` walks objects, a numeric segment indexes a list, `a[].b` collects `b` from every
    element of the list `a` (a list comes back).
    """
    value = _walk(obj, path.split(".") if path else [])
    return None if value is _MISSING else value


def _walk(obj: Any, parts: list[str]) -> Any:
    for i, part in enumerate(parts):
        if part.endswith("[]"):
            name = part[:-2]
            seq = obj if not name else _child(obj, name)
            if not isinstance(seq, list):
                return _MISSING
            out: list[Any] = []
            for item in seq:
                value = _walk(item, parts[i + 1 :])
                if value is _MISSING:
                    continue
                out.extend(value if isinstance(value, list) else [value])
            return out
        obj = _child(obj, part)
        if obj is _MISSING:
            return _MISSING
    return obj


def _child(obj: Any, part: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(part, _MISSING)
    if isinstance(obj, list) and part.isdigit():
        idx = int(part)
        return obj[idx] if idx < len(obj) else _MISSING
    return _MISSING


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`; MalformedEvent("invalid JSON: …") otherwise."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedEvent(f"invalid JSON: {exc}") from None


def action_of(event_type: str | None, fields: EventFieldsConfig) -> EventAction:
    if event_type is None:
        return fields.default_action
    return fields.actions.get(event_type, fields.default_action)


def parse_events(doc: Any, fields: EventFieldsConfig) -> list[Event]:
    """Every event in `doc` (an object or a list of objects) that is not ignored.

    Raises MalformedEvent when an event that matters (upsert/delete) has no usable id, or
    when `doc` is neither an object nor a list of objects: the sender must hear about it.
    """
    items = doc if isinstance(doc, list) else [doc]
    events: list[Event] = []
    for n, item in enumerate(items):
        where = f"event {n}: " if isinstance(doc, list) else ""
        if not isinstance(item, dict):
            raise MalformedEvent(f"{where}expected a JSON object, got {type(item).__name__}")
        event_type: str | None = None
        if fields.event_type:
            raw_type = extract(item, fields.event_type)
            if raw_type is not None and not isinstance(raw_type, (str, int)):
                raise MalformedEvent(f"{where}{fields.event_type} is not a string")
            event_type = None if raw_type is None else str(raw_type)
        action = action_of(event_type, fields)
        if action == "ignore":
            continue
        paths = (fields.asset_id,) if isinstance(fields.asset_id, str) else fields.asset_id
        ids: list[str] = []
        for path in paths:  # the first path holding an id wins
            ids = _ids(extract(item, path))
            if ids:
                break
        if not ids:
            shown = " or ".join(repr(p) for p in paths)
            raise MalformedEvent(f"{where}no asset id at {shown}")
        record = None
        if fields.record and action == "upsert":
            found = extract(item, fields.record)
            record = found if isinstance(found, dict) else None
        for asset_id in ids:
            # a record belongs to one asset: only kept when the event names exactly one
            events.append(
                Event(action, asset_id, event_type, record if len(ids) == 1 else None)
            )
    return events


def _ids(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            continue
        text = str(v).strip()
        if text and len(text) <= 512:
            out.append(text)
    return out


def delivery_id_of(doc: Any, fields: EventFieldsConfig) -> str | None:
    """The sender's delivery id from the body, when configured and present."""
    if not fields.delivery_id:
        return None
    items = doc if isinstance(doc, list) else [doc]
    value = extract(items[0], fields.delivery_id) if items else None
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:512] or None
