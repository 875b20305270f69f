"""The structure file (format in examples/structure.yaml): its model, validation and loading.

Why marshmallow's stock fields here and not the config's (connector/config/fields.py): the
structure file mirrors Akeneo's own JSON bodies, and its messages ("path: message", every
error in one run) are pinned by tests/test_structure_apply.py. The code and locale rules are
the shared ones of connector/rules.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connector.pim.structure import ATTRIBUTE_TYPES
from connector.rules import is_locale, matches_code

# Asset attributes the API can create (asset_collection is a product attribute type).
API_ATTRIBUTE_TYPES = tuple(sorted(ATTRIBUTE_TYPES - {"asset_collection"}))
OPTION_TYPES = frozenset({"single_option", "multiple_options"})
MEDIA_TYPES = frozenset({"media_link", "media_file"})
# Akeneo refuses to change these once the attribute exists.
IMMUTABLE_ATTRIBUTE_FIELDS = ("type", "value_per_locale", "value_per_channel")
TYPE_PROPERTIES: dict[str, frozenset[str]] = {
    "text": frozenset(
        {"max_characters", "is_textarea", "is_rich_text_editor", "validation_rule",
         "validation_regexp"}
    ),
    "number": frozenset({"decimals_allowed", "min_value", "max_value"}),
    "media_link": frozenset({"media_type", "prefix", "suffix"}),
    "media_file": frozenset({"media_type", "allowed_extensions", "max_file_size"}),
    "record": frozenset({"reference_entity"}),
    "boolean": frozenset(),
    "date": frozenset(),
    "single_option": frozenset(),
    "multiple_options": frozenset(),
}
ALL_TYPE_PROPERTIES = frozenset().union(*TYPE_PROPERTIES.values())
FAMILY_FIELDS = (
    "labels",
    "attribute_as_main_media",
    "naming_convention",
    "product_link_rules",
    "transformations",
)


class StructureFileError(Exception):
    """The structure file is unreadable or invalid; `errors` holds every "path: message"."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# ---------------------------------------------------------------- the file's model


@dataclass(frozen=True)
class OptionSpec:
    code: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttributeSpec:
    code: str
    type: str
    # Every attribute field the file states, as Akeneo spells it (labels, flags, type props).
    properties: dict[str, Any]
    options: tuple[OptionSpec, ...] | None = None  # None: the file says nothing of options

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "type": self.type, **self.properties}


@dataclass(frozen=True)
class FamilySpec:
    code: str
    # The family fields the file states (labels, main media, naming convention, rules…).
    properties: dict[str, Any]
    attributes: tuple[AttributeSpec, ...] = ()

    def attribute(self, code: str) -> AttributeSpec | None:
        return next((a for a in self.attributes if a.code == code), None)


@dataclass(frozen=True)
class StructureSpec:
    families: tuple[FamilySpec, ...]
    locales: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


# ---------------------------------------------------------------- validation


def _code(value: Any) -> None:
    if not matches_code(value):
        raise ValidationError("must be a code of letters, digits and underscores")
    if len(value) > 255:
        raise ValidationError("must be at most 255 characters")


def _locale(message: str) -> Callable[[Any], None]:
    """A validator for a locale code (connector/rules.py), failing with `message`."""

    def check(value: Any) -> None:
        if not is_locale(value):
            raise ValidationError(message)

    return check


def _labels() -> fields.Dict:
    return fields.Dict(
        keys=fields.Str(validate=_locale("not a locale code")),
        values=fields.Str(),
    )


class OptionsField(fields.Field):  # type: ignore[type-arg]
    """`[red, blue]` or `{red: {labels: {en_US: Red}}, blue: null}` → list of OptionSpec."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if isinstance(value, list):
            items: list[tuple[Any, Any]] = [(code, None) for code in value]
        elif isinstance(value, Mapping):
            items = list(value.items())
        else:
            raise ValidationError("must be a list of option codes or a mapping code → {labels}")
        errors: dict[Any, Any] = {}
        options: list[OptionSpec] = []
        seen: set[str] = set()
        for index, (code, body) in enumerate(items):
            where = index if isinstance(value, list) else str(code)
            try:
                _code(code)
            except ValidationError as exc:
                errors[where] = exc.messages
                continue
            if code.casefold() in seen:
                errors[where] = [f"duplicate option {code!r}"]
                continue
            seen.add(code.casefold())
            if body is None:
                options.append(OptionSpec(code))
                continue
            try:
                loaded = OptionSchema().load(body)
            except ValidationError as exc:
                errors[where] = exc.messages
                continue
            options.append(OptionSpec(code, dict(loaded.get("labels") or {})))
        if errors:
            raise ValidationError(errors)
        return options


class NumberString(fields.Field):  # type: ignore[type-arg]
    """A number written as YAML number or string → the string Akeneo expects ("12.5")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kw: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValidationError("must be a number")
        text = repr(value) if isinstance(value, float) else str(value).strip()
        try:
            number = float(text)
        except ValueError:
            raise ValidationError(f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValidationError("must be a finite number")
        return text


class OptionSchema(Schema):
    class Meta:
        unknown = RAISE

    labels = _labels()


class AttributeSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.Str(required=True, validate=validate.OneOf(API_ATTRIBUTE_TYPES))
    labels = _labels()
    value_per_locale = fields.Bool()
    value_per_channel = fields.Bool()
    is_required_for_completeness = fields.Bool()
    is_read_only = fields.Bool()
    max_characters = fields.Int(validate=validate.Range(min=1), allow_none=True)
    is_textarea = fields.Bool()
    is_rich_text_editor = fields.Bool()
    validation_rule = fields.Str(
        validate=validate.OneOf(("none", "email", "url", "regexp", "regular_expression"))
    )
    validation_regexp = fields.Str(allow_none=True)
    decimals_allowed = fields.Bool()
    min_value = NumberString(allow_none=True)
    max_value = NumberString(allow_none=True)
    media_type = fields.Str(validate=validate.OneOf(("image", "pdf", "youtube", "vimeo", "other")))
    prefix = fields.Str(allow_none=True)
    suffix = fields.Str(allow_none=True)
    allowed_extensions = fields.List(
        fields.Str(validate=validate.Regexp(r"^[a-zA-Z0-9]+$", error="not a file extension"))
    )
    max_file_size = NumberString(allow_none=True)
    reference_entity = fields.Str()
    options = OptionsField()

    @validates_schema
    def _type_rules(self, data: dict[str, Any], **kw: Any) -> None:
        type_ = data.get("type")
        if type_ not in TYPE_PROPERTIES:
            return
        errors: dict[str, list[str]] = {}
        for name in sorted(ALL_TYPE_PROPERTIES - TYPE_PROPERTIES[type_]):
            if name in data:
                errors[name] = [f"not a property of {type_} attributes"]
        if "options" in data and type_ not in OPTION_TYPES:
            errors["options"] = [f"{type_} attributes have no options"]
        if type_ in MEDIA_TYPES and "media_type" not in data:
            errors["media_type"] = [f"required for {type_} attributes"]
        if type_ == "record" and "reference_entity" not in data:
            errors["reference_entity"] = ["required for record attributes"]
        if data.get("validation_rule") in ("regexp", "regular_expression") and not data.get(
            "validation_regexp"
        ):
            errors["validation_regexp"] = ["required when validation_rule is a regular expression"]
        low, high = data.get("min_value"), data.get("max_value")
        if low is not None and high is not None and float(low) >= float(high):
            errors["min_value"] = ["must be lower than max_value"]
        if errors:
            raise ValidationError(errors)


class ProductSelectionSchema(Schema):
    class Meta:
        unknown = RAISE

    field = fields.Str(required=True)
    operator = fields.Str(required=True)
    value = fields.Raw(required=True)
    locale = fields.Str(allow_none=True)
    channel = fields.Str(allow_none=True)


class AssignmentSchema(Schema):
    class Meta:
        unknown = RAISE

    attribute = fields.Str(required=True)
    mode = fields.Str(required=True, validate=validate.OneOf(("add", "replace")))
    locale = fields.Str(allow_none=True)
    channel = fields.Str(allow_none=True)


class ProductLinkRuleSchema(Schema):
    class Meta:
        unknown = RAISE

    product_selections = fields.List(
        fields.Nested(ProductSelectionSchema), required=True, validate=validate.Length(min=1)
    )
    assign_assets_to = fields.List(
        fields.Nested(AssignmentSchema), required=True, validate=validate.Length(min=1)
    )


class FamilySchema(Schema):
    class Meta:
        unknown = RAISE

    labels = _labels()
    attribute_as_main_media = fields.Str(validate=_code)
    naming_convention = fields.Dict(keys=fields.Str(), values=fields.Raw())
    product_link_rules = fields.List(
        fields.Nested(ProductLinkRuleSchema), validate=validate.Length(max=2)
    )
    transformations = fields.List(fields.Dict(), validate=validate.Length(max=10))
    attributes = fields.Dict(keys=fields.Str(validate=_code), values=fields.Raw())


class StructureFileSchema(Schema):
    class Meta:
        unknown = RAISE

    locales = fields.List(fields.Str(validate=_locale("not a locale")))
    channels = fields.List(fields.Str(validate=_code))
    families = fields.Dict(keys=fields.Str(validate=_code), values=fields.Raw(), required=True)


def _flatten(messages: Any, path: str) -> list[str]:
    """marshmallow's nested error dict → ["families.x.attributes.y.type: message", …]."""
    if isinstance(messages, Mapping):
        out: list[str] = []
        for key, sub in messages.items():
            if key == "_schema":
                out += _flatten(sub, path)
            elif isinstance(key, int):
                out += _flatten(sub, f"{path}[{key}]")
            elif key == "key" and isinstance(sub, list) and path:
                out += [f"{path}: (key) {m}" for m in sub if isinstance(m, str)]
            else:
                out += _flatten(sub, f"{path}.{key}" if path else str(key))
        return out
    if isinstance(messages, list):
        out = []
        for m in messages:
            out += _flatten(m, path) if not isinstance(m, str) else [f"{path or '<file>'}: {m}"]
        return out
    return [f"{path or '<file>'}: {messages}"]


def parse_structure(data: Any) -> StructureSpec:
    """Validate the parsed YAML and build the spec; raises StructureFileError (all errors)."""
    errors: list[str] = []
    if not isinstance(data, Mapping):
        raise StructureFileError(["<file>: must be a mapping with a `families` key"])
    try:
        top = StructureFileSchema().load(data)
    except ValidationError as exc:
        errors += _flatten(exc.messages, "")
        # Go on with the families whose code is valid, so one run shows every error.
        raw = data.get("families")
        valid = {k: v for k, v in raw.items() if matches_code(k)} if (
            isinstance(raw, Mapping)
        ) else {}
        top = {"families": valid}
    families: list[FamilySpec] = []
    for fam_code, fam_data in top["families"].items():
        fam_path = f"families.{fam_code}"
        if fam_data is None:
            fam_data = {}
        family_ok = True
        try:
            fam = FamilySchema().load(fam_data)
        except ValidationError as exc:
            errors += _flatten(exc.messages, fam_path)
            family_ok = False
            # Still validate the attributes, so that one run shows every error.
            raw_attrs = fam_data.get("attributes") if isinstance(fam_data, Mapping) else None
            fam = {"attributes": raw_attrs if isinstance(raw_attrs, Mapping) else {}}
        attributes: list[AttributeSpec] = []
        for attr_code, attr_data in (fam.get("attributes") or {}).items():
            try:
                attr = AttributeSchema().load(attr_data if attr_data is not None else {})
            except ValidationError as exc:
                errors += _flatten(exc.messages, f"{fam_path}.attributes.{attr_code}")
                continue
            options = attr.pop("options", None)
            type_ = attr.pop("type")
            attributes.append(AttributeSpec(attr_code, type_, attr, options=_opt_tuple(options)))
        if not family_ok:
            continue
        main = fam.get("attribute_as_main_media")
        declared = {a.code: a for a in attributes}
        if main in declared and declared[main].type not in MEDIA_TYPES:
            errors.append(
                f"{fam_path}.attribute_as_main_media: {main!r} is a {declared[main].type} "
                "attribute; the main media must be a media_link or media_file attribute"
            )
        properties = {k: fam[k] for k in FAMILY_FIELDS if k in fam}
        properties.setdefault("labels", {})
        families.append(FamilySpec(fam_code, properties, tuple(attributes)))
    if errors:
        raise StructureFileError(errors)
    return StructureSpec(
        families=tuple(families),
        locales=tuple(top.get("locales") or ()),
        channels=tuple(top.get("channels") or ()),
    )


def _opt_tuple(options: list[OptionSpec] | None) -> tuple[OptionSpec, ...] | None:
    return None if options is None else tuple(options)


def load_structure_file(path: str | Path) -> StructureSpec:
    """Read and validate a structure file; StructureFileError on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StructureFileError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StructureFileError([f"{path}: not valid YAML{where}: {problem}"]) from None
    return parse_structure(data)
