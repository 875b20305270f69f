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
from connector.config.schemas.sync import ScheduleSchema
from connector.rules import (
    MAX_SOURCE_PREFIX_LENGTH,
    SOURCE_PREFIX_PATTERN,
    SOURCE_PREFIX_SEPARATOR,
)


class SourceSchema(StrictSchema):
    type = Choice(("rest", "folder"), required=True)
    rest = Nested(RestSourceSchema)
    folder = Nested(FolderSourceSchema)
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
        if kind not in ("rest", "folder"):
            return
        other = "folder" if kind == "rest" else "rest"
        errors: dict[str, list[str]] = {}
        if kind not in original_data:
            errors[kind] = [f"required when type is {kind}"]
        if other in original_data:
            errors[other] = [f"only used when type is {other}"]
        if errors:
            raise ValidationError(errors)


def load_source(name: str, raw: Any) -> SourceConfig:
    """One `sources.<name>` entry."""
    data = SourceSchema().load(raw)
    return SourceConfig(name=name, **data)
