"""`sources.*`: one source, its type block and the blocks of the other sections it nests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, validates_schema

from connector.config.fields import Choice, Code, Nested, Str, StrList
from connector.config.model import SourceConfig
from connector.config.schemas.base import StrictSchema
from connector.config.schemas.dam import FolderSourceSchema, MediaSchema, RestSourceSchema
from connector.config.schemas.deletion import DeletionPolicySchema
from connector.config.schemas.intake import QueueSchema, RealtimeSchema, WebhookSchema
from connector.config.schemas.s3 import S3SourceSchema
from connector.config.schemas.sync import ScheduleSchema
from connector.rules import (
    MAX_SOURCE_PREFIX_LENGTH,
    SOURCE_PREFIX_PATTERN,
    SOURCE_PREFIX_SEPARATOR,
)

SOURCE_TYPES = ("rest", "folder", "s3")  # each names the section that describes it


class SourceSchema(StrictSchema):
    type = Choice(SOURCE_TYPES, required=True)
    rest = Nested(RestSourceSchema)
    folder = Nested(FolderSourceSchema)
    s3 = Nested(S3SourceSchema)
    families = StrList(Code())
    schedule = Nested(ScheduleSchema, allow_none=True)
    reconcile_schedule = Nested(ScheduleSchema, allow_none=True)
    deletion_policy = Nested(DeletionPolicySchema)
    media = Nested(MediaSchema)
    webhook = Nested(WebhookSchema, allow_none=True)
    queue = Nested(QueueSchema, allow_none=True)
    realtime = Nested(RealtimeSchema)
    code_prefix = Str(
        pattern=SOURCE_PREFIX_PATTERN,
        pattern_message=f"must be 1 to {MAX_SOURCE_PREFIX_LENGTH} letters or digits (the "
        f"connector adds the separator {SOURCE_PREFIX_SEPARATOR}, so that prefixed codes "
        "never meet another source's)",
        allow_none=True,
    )

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_block(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("type")
        if kind not in SOURCE_TYPES:
            return
        errors: dict[str, list[str]] = {}
        if kind not in original_data:
            errors[kind] = [f"required when type is {kind}"]
        for other in SOURCE_TYPES:
            if other != kind and other in original_data:
                errors[other] = [f"only used when type is {other}"]
        queue = original_data.get("queue")
        if isinstance(queue, Mapping) and queue.get("transport") == "sqs" and kind != "s3":
            errors["queue"] = ['transport "sqs" reads S3 event notifications: type must be s3']
        if errors:
            raise ValidationError(errors)


def load_source(name: str, raw: Any) -> SourceConfig:
    """One `sources.<name>` entry."""
    data = SourceSchema().load(raw)
    return SourceConfig(name=name, **data)
