"""S3 event notifications (as S3 sends them to SQS, or wrapped by SNS) → change events.

The document is S3's own: `{"Records": [{"eventName": "ObjectCreated:Put", "eventTime":
…, "s3": {"bucket": {"name": …}, "object": {"key": <URL-encoded>, "sequencer": …}}}]}`;
the `s3:TestEvent` S3 sends when a notification is configured carries no record and is
ignored. Keys arrive URL-encoded with `+` for spaces (`unquote_plus` gives the object key,
the asset id of connector/dam/s3.py). Which event is which action:

* `ObjectCreated:*`, `ObjectRestore:Completed`, `ObjectTagging:*` → upsert (a tag edit does
  not move LastModified, so only this event carries it);
* `ObjectRemoved:*` (Delete, DeleteMarkerCreated), `LifecycleExpiration:*` → delete;
* everything else (ACL, lifecycle transitions, replication, …) → ignored.

Records of one message are applied in `eventTime` / `sequencer` order, so a create then a
delete of one key in the same message ends as a delete. Keys outside the source's prefix
and directory markers are left out; a record for another bucket makes the message
malformed (the notification is wired to the wrong queue, and it must be seen).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from connector.config.model import EventAction
from connector.intake.events import Event, MalformedEvent

EXPECTED = 'an S3 event notification ({"Records": [{"eventName": …, "s3": {…}}]})'


def action_of(event_name: str) -> EventAction:
    """What an S3 event name means for the asset of its key."""
    family = event_name.split(":", 1)[0]
    if family in ("ObjectCreated", "ObjectTagging"):
        return "upsert"
    if event_name == "ObjectRestore:Completed":
        return "upsert"
    if family in ("ObjectRemoved", "LifecycleExpiration"):
        return "delete"
    return "ignore"


def unwrap(doc: Any) -> Any:
    """The S3 document inside an SNS notification (S3 → SNS → SQS fan-out), else `doc`."""
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and "Message" in doc:
        message = doc["Message"]
        if not isinstance(message, str):
            raise MalformedEvent("SNS notification whose Message is not a string")
        try:
            return json.loads(message)
        except ValueError as exc:
            raise MalformedEvent(f"SNS Message is not JSON: {exc}") from None
    return doc


def parse_s3_events(doc: Any, bucket: str, prefix: str = "") -> list[Event]:
    """The upserts/deletes in one S3 notification for `bucket` under `prefix`.

    [] for the test event and for records that are ignored; MalformedEvent (with what was
    expected) for anything that is not an S3 notification of this bucket."""
    doc = unwrap(doc)
    if not isinstance(doc, dict):
        raise MalformedEvent(f"expected {EXPECTED}, got {type(doc).__name__}")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent(f"expected {EXPECTED}: no Records list")
    parsed: list[tuple[str, str, int, Event]] = []
    for n, record in enumerate(records):
        where = f"Records[{n}]"
        if not isinstance(record, dict):
            raise MalformedEvent(f"{where}: expected an object, got {type(record).__name__}")
        name = record.get("eventName")
        if not isinstance(name, str) or not name:
            raise MalformedEvent(f"{where}: no eventName")
        s3 = record.get("s3")
        if not isinstance(s3, dict):
            raise MalformedEvent(f"{where}: no s3 object")
        bucket_name = _get(s3, "bucket", "name")
        if bucket_name != bucket:
            raise MalformedEvent(
                f"{where}: event for bucket {bucket_name!r}, but this source reads {bucket!r}"
            )
        raw_key = _get(s3, "object", "key")
        if not isinstance(raw_key, str) or not raw_key:
            raise MalformedEvent(f"{where}: no s3.object.key")
        action = action_of(name)
        key = unquote_plus(raw_key)
        if action == "ignore" or not key.startswith(prefix) or key.endswith("/"):
            continue
        if len(key) > 1024:  # S3's own limit: anything longer is not a key
            raise MalformedEvent(f"{where}: s3.object.key longer than 1024 bytes")
        event_time = record.get("eventTime")
        sequencer = _get(s3, "object", "sequencer")
        parsed.append((
            event_time if isinstance(event_time, str) else "",
            # sequencers of one key compare as hex strings of equal length, padded
            sequencer.rjust(32, "0") if isinstance(sequencer, str) else "",
            n,
            Event(action, key, name),
        ))
    parsed.sort(key=lambda item: item[:3])
    return [event for *_, event in parsed]


def _get(obj: dict[str, Any], *path: str) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
