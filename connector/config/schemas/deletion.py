"""A source's `deletion_policy`: what to do with assets gone from the DAM, and the guard."""

from __future__ import annotations

from typing import Any

from marshmallow import post_load, validates_schema

from connector.config.fields import Choice, Code, Float, Int, Nested, Raw
from connector.config.model import DeletionPolicy, MaxDeletions
from connector.config.schemas.base import StrictSchema, Variants, check_type_keys


class MaxDeletionsSchema(StrictSchema):
    count = Int(minimum=0)
    percent = Float(minimum=0, maximum=100)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> MaxDeletions:
        return MaxDeletions(**data)


DELETION_VARIANTS: Variants = (
    "action",
    "ignore",
    {"ignore": (set(), set()), "delete": (set(), set()), "flag": ({"attribute"}, {"value"})},
    "deletion action",
)


class DeletionPolicySchema(StrictSchema):
    action = Choice(("ignore", "delete", "flag"))
    attribute = Code(allow_none=True)
    value = Raw(allow_none=True)
    max_deletions = Nested(MaxDeletionsSchema)

    variants = DELETION_VARIANTS

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _action_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, *DELETION_VARIANTS)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> DeletionPolicy:
        return DeletionPolicy(**data)
