"""`families.*` and `product_asset`: selectors, the attribute mapping, locale and product links."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields, post_load, validates_schema

from connector.config.fields import (
    CODE_MESSAGE,
    Bool,
    Choice,
    Code,
    Expression,
    Locale,
    NamedMap,
    Nested,
    PropertyPath,
    Raw,
    Regex,
    Str,
    StrDict,
    compile_regex,
    merge_errors_typed,
)
from connector.config.interpolate import kind_of, shown
from connector.config.model import (
    AttributeMapping,
    FamilyConfig,
    LocaleRule,
    ProductLinkConfig,
    Selector,
    ValueSource,
)
from connector.config.schemas.base import (
    StrictSchema,
    Variants,
    check_type_keys,
    given_keys,
)
from connector.pim.structure import ATTRIBUTE_TYPES
from connector.rules import CODE_PATTERN

SELECTOR_KINDS = ("property", "folder", "tag", "filename_regex", "expression", "always")


class SelectorSchema(StrictSchema):
    property = PropertyPath()
    equals = Raw(allow_none=True)
    in_ = fields.List(Raw(allow_none=True), data_key="in", error_messages={
        "invalid": "must be a list", "null": "must have a value"})
    folder = Str()
    tag = Str()
    filename_regex = Regex()
    expression = Expression()
    always = Bool()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        given = given_keys(original_data, *SELECTOR_KINDS)
        wanted = "give exactly one of " + ", ".join(SELECTOR_KINDS)
        errors: dict[str, list[str]] = {}
        if not given:
            errors["_schema"] = [wanted]
        elif len(given) > 1:
            errors["_schema"] = [f"{wanted} (got {', '.join(given)})"]
        for key in ("equals", "in"):
            if key in original_data and "property" not in original_data:
                errors[key] = ["only used with property"]
        if "equals" in original_data and "in" in original_data:
            errors.setdefault("in", []).append("give either equals or in, not both")
        if original_data.get("always") is False and len(given) == 1:
            errors["always"] = ["must be true (leave it out otherwise)"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Selector:
        if data.get("in_") is not None:
            data["in_"] = tuple(data["in_"])
        return Selector(**data)


class MappingEntrySchema(StrictSchema):
    """The object form of one `families.X.mapping` entry (the key is the attribute)."""

    property = PropertyPath()
    constant = Raw()
    regex = Str()
    group = Raw()
    expected_type = Str(data_key="type")
    separator = Str()
    locale = Locale(allow_none=True)
    channel = Code(allow_none=True)
    option_map = StrDict(Code())
    auto_create_options = Bool(allow_none=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _value_source(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        errors: dict[str, list[str]] = {}
        has = {k: k in original_data for k in ("property", "constant", "regex", "group")}
        if not (has["property"] or has["constant"] or has["regex"]):
            errors["_schema"] = [
                "give property, constant or regex (with property or on the filename)"
            ]
        if has["group"] and not has["regex"]:
            errors["group"] = ["only used with regex"]
        group = original_data.get("group", 1)
        if has["group"] and (isinstance(group, bool) or not isinstance(group, str | int)):
            errors["group"] = ["must be a group name or number"]
        regex = original_data.get("regex")
        if isinstance(regex, str) and regex and "regex" in data:
            try:
                pattern = compile_regex(regex)
            except ValidationError as exc:
                errors["regex"] = list(exc.messages)
            else:
                # without `group`, a pattern with no groups keeps its whole match
                message = _group_problem(pattern, group) if has["group"] else None
                if message and not errors.get("group"):
                    errors["group"] = [message]
        if errors:
            raise ValidationError(errors)


def _group_problem(pattern: re.Pattern[str], group: Any) -> str | None:
    if isinstance(group, bool):
        return None
    if isinstance(group, str) and not group.isdigit():
        if group not in pattern.groupindex:
            return f'the regex has no group named "{group}"'
        return None
    if isinstance(group, int | str):
        number = int(group)
        if number > pattern.groups:
            return f"the regex has no group {number} (it has {pattern.groups})"
    return None


def _load_mapping_entry(attribute: str, raw: Any) -> AttributeMapping:
    if isinstance(raw, str):
        prop = PropertyPath().deserialize(raw)
        return AttributeMapping(attribute=attribute, source=ValueSource(property=prop))
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "must be a property path (string) or a mapping with property, constant or regex"
            f", got {kind_of(raw)}"
        )
    type_error: list[str] = []
    kind = raw.get("type")
    if isinstance(kind, str) and kind not in ATTRIBUTE_TYPES:
        type_error = [
            f"unknown attribute type {shown(kind)} (known types: "
            + ", ".join(sorted(ATTRIBUTE_TYPES)) + ")"
        ]
    try:
        data = MappingEntrySchema().load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        if type_error:
            messages = merge_errors_typed(type_error, messages)
        raise ValidationError(messages) from None
    if type_error:
        raise ValidationError(type_error)
    source = ValueSource(
        property=data.pop("property", None),
        constant=data.pop("constant", None),
        regex=data.pop("regex", None),
    )
    if "group" in data:
        group = data.pop("group")
        source = ValueSource(
            property=source.property,
            constant=source.constant,
            regex=source.regex,
            group=int(group) if isinstance(group, str) and group.isdigit() else group,
        )
    return AttributeMapping(attribute=attribute, source=source, **data)


class LocaleRuleSchema(StrictSchema):
    property = PropertyPath(allow_none=True)
    filename_regex = Regex(group="locale", allow_none=True)
    default = Locale(allow_none=True)
    map = StrDict(Locale())

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> LocaleRule:
        return LocaleRule(**data)


PRODUCT_LINK_VARIANTS: Variants = (
    "mode",
    "none",
    {
        "none": (set(), set()),
        "rules": (set(), {"identifier_property", "identifier_regex"}),
        "direct": (
            {"product_attribute"},
            {"identifier_property", "identifier_regex", "unlink_previous"},
        ),
    },
    "product link mode",
)


class ProductLinkSchema(StrictSchema):
    mode = Choice(("none", "rules", "direct"))
    identifier_property = PropertyPath(allow_none=True)
    identifier_regex = Regex(group="identifier", allow_none=True)
    product_attribute = Code(allow_none=True)
    unlink_previous = Bool()

    variants = PRODUCT_LINK_VARIANTS

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _mode_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, *PRODUCT_LINK_VARIANTS)
        if (
            isinstance(original_data, Mapping)
            and original_data.get("mode") == "direct"
            and not given_keys(original_data, "identifier_property", "identifier_regex")
        ):
            raise ValidationError(
                'mode "direct" needs identifier_property or identifier_regex'
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ProductLinkConfig:
        return ProductLinkConfig(**data)


class FamilySchema(StrictSchema):
    match = Nested(SelectorSchema, required=True)
    mapping = NamedMap(
        _load_mapping_entry,
        what="mapping",
        name_pattern=CODE_PATTERN,
        name_message="(the PIM attribute code) " + CODE_MESSAGE,
        required=True,
    )
    locale = Nested(LocaleRuleSchema)
    channel = Code(allow_none=True)
    auto_create_options = Bool()
    product_asset = Nested(SelectorSchema)
    product_link = Nested(ProductLinkSchema)


def load_family(name: str, raw: Any) -> FamilyConfig:
    """One `families.<name>` entry (the name is the PIM asset family code)."""
    data = FamilySchema().load(raw)
    return FamilyConfig(name=name, **data)
