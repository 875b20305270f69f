"""`connector structure apply`: bring the PIM's asset families in line with a YAML file.

The file declares families, their attributes and options (format in examples/structure.yaml).
Applying it is idempotent: every item is read from the live PIM first and only the fields
that differ are PATCHed, so re-applying the same file sends no write at all and reports
every item "unchanged". Only what the file states is compared: labels the file does not
mention and properties it leaves out are left as the PIM has them.

Order per family: the family itself (without `attribute_as_main_media`, whose attribute may
not exist yet), then its attributes, then their options, then the family again with its
main media, naming convention and product link rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from connector.pim.errors import PimAuthError, PimError
from connector.pim.structure import ATTRIBUTE_TYPES

CODE_RE = re.compile(r"^[a-zA-Z0-9_]+\Z")
LOCALE_RE = re.compile(r"^[a-z]{2,3}_[A-Za-z0-9]{2,4}\Z")

# Asset attributes the API can create (asset_collection is a product attribute type).
API_ATTRIBUTE_TYPES = tuple(sorted(ATTRIBUTE_TYPES - {"asset_collection"}))
OPTION_TYPES = frozenset({"single_option", "multiple_options"})
MEDIA_TYPES = frozenset({"media_link", "media_file"})
# Akeneo refuses to change these once the attribute exists.
IMMUTABLE_ATTRIBUTE_FIELDS = ("type", "value_per_locale", "value_per_channel")
COMMON_ATTRIBUTE_FIELDS = frozenset(
    {"labels", "value_per_locale", "value_per_channel", "is_required_for_completeness",
     "is_read_only"}
)
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

Action = Literal["created", "updated", "unchanged", "conflict", "failed"]
Kind = Literal["family", "attribute", "option"]


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
    if not isinstance(value, str) or not CODE_RE.match(value):
        raise ValidationError("must be a code of letters, digits and underscores")
    if len(value) > 255:
        raise ValidationError("must be at most 255 characters")


def _labels() -> fields.Dict:
    return fields.Dict(
        keys=fields.Str(validate=validate.Regexp(LOCALE_RE, error="not a locale code")),
        values=fields.Str(),
    )


class OptionsField(fields.Field):
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


class NumberString(fields.Field):
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

    locales = fields.List(fields.Str(validate=validate.Regexp(LOCALE_RE, error="not a locale")))
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
        valid = {k: v for k, v in raw.items() if isinstance(k, str) and CODE_RE.match(k)} if (
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


# ---------------------------------------------------------------- comparing with the PIM


def _strip_none(value: Any) -> Any:
    """Drop null keys recursively: the PIM echoes unset optional keys as null."""
    if isinstance(value, Mapping):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_strip_none(v) for v in value]
    return value


def _labels_differ(desired: Mapping[str, str], live: Any) -> bool:
    live = live or {}
    return any(live.get(locale) != label for locale, label in desired.items())


def _number(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _same(name: str, desired: Any, live: Any) -> bool:
    """Whether the live value of field `name` already says what the file says."""
    if name == "labels":
        return not _labels_differ(desired or {}, live)
    if name in ("min_value", "max_value", "max_file_size"):
        return bool(_number(desired) == _number(live))
    if name in ("prefix", "suffix", "validation_regexp", "naming_convention"):
        return (desired or None) == (live or None) or _strip_none(desired) == _strip_none(live)
    if name == "allowed_extensions":
        return sorted(e.lower() for e in desired or ()) == sorted(e.lower() for e in live or ())
    if name in ("product_link_rules", "transformations"):
        return bool(_strip_none(desired or []) == _strip_none(live or []))
    if name == "validation_rule":
        aliases = {"regular_expression": "regexp"}
        return aliases.get(desired, desired) == aliases.get(live, live)
    if name in ("value_per_locale", "value_per_channel", "is_required_for_completeness",
                "is_read_only", "is_textarea", "is_rich_text_editor", "decimals_allowed"):
        return bool(desired) == bool(live)
    return bool(desired == live)


def _diff(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    return [name for name, value in desired.items() if not _same(name, value, live.get(name))]


# ---------------------------------------------------------------- applying


class StructureWriter(Protocol):
    """The part of `AkeneoClient` that `apply_structure` uses."""

    def get_asset_family(self, code: str) -> dict[str, Any] | None: ...

    def upsert_asset_family(self, code: str, body: dict[str, Any]) -> int: ...

    def get_attributes(self, family: str) -> list[dict[str, Any]]: ...

    def upsert_attribute(self, family: str, code: str, body: dict[str, Any]) -> int: ...

    def get_options(self, family: str, attribute: str) -> list[dict[str, Any]]: ...

    def upsert_option(self, family: str, attribute: str, code: str, body: dict[str, Any]) -> int:
        ...


@dataclass(frozen=True)
class ApplyItem:
    kind: Kind
    code: str                      # "packshots", "packshots.media", "packshots.main_colors.red"
    action: Action
    fields: tuple[str, ...] = ()   # fields written (created) or changed (updated)
    message: str | None = None     # conflicts and failures say why

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "action": self.action,
            "fields": list(self.fields),
            "message": self.message,
        }


@dataclass
class ApplyReport:
    items: list[ApplyItem] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not any(i.action in ("conflict", "failed") for i in self.items)

    @property
    def changed(self) -> bool:
        return any(i.action in ("created", "updated") for i in self.items)

    def count(self, action: Action) -> int:
        return sum(1 for i in self.items if i.action == action)

    def touched_families(self) -> list[str]:
        changed = ("created", "updated")
        return sorted({i.code.split(".", 1)[0] for i in self.items if i.action in changed})

    def to_dict(self) -> dict[str, Any]:
        actions: tuple[Action, ...] = ("created", "updated", "unchanged", "conflict", "failed")
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "summary": {a: self.count(a) for a in actions},
            "items": [i.to_dict() for i in self.items],
        }


class _FamilyApplier:
    """Applies one family; one instance per family keeps the live state in one place."""

    def __init__(self, client: StructureWriter, spec: FamilySpec, dry_run: bool) -> None:
        self.client = client
        self.spec = spec
        self.dry_run = dry_run
        self.items: list[ApplyItem] = []

    def _write(self, call: Callable[[], object]) -> None:
        if not self.dry_run:
            call()

    def run(self) -> list[ApplyItem]:
        spec, client = self.spec, self.client
        live_family = client.get_asset_family(spec.code)
        family_created = live_family is None
        if live_family is None:
            # Without main media: its attribute cannot exist before the family does.
            body = {"code": spec.code, "labels": spec.properties.get("labels") or {}}
            try:
                self._write(lambda: client.upsert_asset_family(spec.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("family", spec.code, "failed", message=str(exc)))
                return self.items
            # Re-read: the PIM may fill defaults (or create default attributes) on creation.
            live_family = (None if self.dry_run else client.get_asset_family(spec.code)) or body
            live_attrs = {} if self.dry_run else self._live_attributes()
        else:
            live_attrs = self._live_attributes()

        for attr in spec.attributes:
            self._apply_attribute(attr, live_attrs.get(attr.code))
        self._apply_family(live_family, live_attrs, family_created)
        return self.items

    def _live_attributes(self) -> dict[str, dict[str, Any]]:
        return {a["code"]: a for a in self.client.get_attributes(self.spec.code)}

    def _apply_attribute(self, attr: AttributeSpec, live: dict[str, Any] | None) -> None:
        family, client = self.spec.code, self.client
        item_code = f"{family}.{attr.code}"
        desired = attr.body()
        if live is None:
            try:
                self._write(lambda: client.upsert_attribute(family, attr.code, desired))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("attribute", item_code, "failed", message=str(exc)))
                return
            fields_ = tuple(k for k in desired if k != "code")
            self.items.append(ApplyItem("attribute", item_code, "created", fields_))
            self._apply_options(attr, [])
            return
        conflicts = [
            f"{name} is {live.get(name)!r} in the PIM but {desired[name]!r} in the file"
            for name in IMMUTABLE_ATTRIBUTE_FIELDS
            if name in desired and not _same(name, desired[name], live.get(name))
        ]
        if conflicts:
            message = "; ".join(conflicts) + (
                " (the PIM cannot change type, value_per_locale or value_per_channel of an "
                "existing attribute: rename it in the file or delete it in the PIM)"
            )
            self.items.append(ApplyItem("attribute", item_code, "conflict", message=message))
            return
        changed = _diff({k: v for k, v in desired.items() if k != "code"}, live)
        if changed:
            body = {"code": attr.code, "type": attr.type, **{k: desired[k] for k in changed}}
            if "media_type" in desired:  # Akeneo requires it on every media attribute PATCH
                body.setdefault("media_type", desired["media_type"])
            try:
                self._write(lambda: client.upsert_attribute(family, attr.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("attribute", item_code, "failed", message=str(exc)))
                return
            self.items.append(ApplyItem("attribute", item_code, "updated", tuple(changed)))
        else:
            self.items.append(ApplyItem("attribute", item_code, "unchanged"))
        live_options = (
            client.get_options(family, attr.code) if attr.options and attr.type in OPTION_TYPES
            else []
        )
        self._apply_options(attr, live_options)

    def _apply_options(self, attr: AttributeSpec, live_options: list[dict[str, Any]]) -> None:
        if not attr.options:
            return
        family, client = self.spec.code, self.client
        live = {o["code"].casefold(): o for o in live_options}
        for option in attr.options:
            item_code = f"{family}.{attr.code}.{option.code}"
            current = live.get(option.code.casefold())
            if current is not None and not _labels_differ(option.labels, current.get("labels")):
                self.items.append(ApplyItem("option", item_code, "unchanged"))
                continue
            body = {"code": option.code, "labels": option.labels}
            try:
                if not self.dry_run:
                    client.upsert_option(family, attr.code, option.code, body)
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("option", item_code, "failed", message=str(exc)))
                continue
            action: Action = "created" if current is None else "updated"
            self.items.append(ApplyItem("option", item_code, action, ("labels",)))

    def _apply_family(
        self, live: dict[str, Any], live_attrs: dict[str, Any], created: bool
    ) -> None:
        spec, client = self.spec, self.client
        main = spec.properties.get("attribute_as_main_media")
        if main and main not in live_attrs and spec.attribute(main) is None:
            message = f"attribute_as_main_media {main!r} is not an attribute of the family"
            self.items.append(ApplyItem("family", spec.code, "conflict", message=message))
            return
        changed = _diff(spec.properties, live)
        if changed:
            body = {"code": spec.code, **{k: spec.properties[k] for k in changed}}
            try:
                self._write(lambda: client.upsert_asset_family(spec.code, body))
            except PimAuthError:
                raise
            except PimError as exc:
                self.items.append(ApplyItem("family", spec.code, "failed", message=str(exc)))
                return
        if created:
            fields_ = tuple(k for k in spec.properties if spec.properties[k] or k == "labels")
            self.items.insert(0, ApplyItem("family", spec.code, "created", fields_))
        elif changed:
            self.items.insert(0, ApplyItem("family", spec.code, "updated", tuple(changed)))
        else:
            self.items.insert(0, ApplyItem("family", spec.code, "unchanged"))


class Invalidator(Protocol):
    def invalidate(self, code: str | None = None) -> None: ...


def apply_structure(
    client: StructureWriter,
    spec: StructureSpec,
    *,
    cache: Invalidator | None = None,
    dry_run: bool = False,
) -> ApplyReport:
    """Create or update everything `spec` declares; report one item per family/attr/option.

    A failed write is reported ("failed", with the PIM's message) and the rest goes on;
    an authentication error stops everything (nothing else could succeed).
    """
    report = ApplyReport(dry_run=dry_run)
    for family in spec.families:
        items = _FamilyApplier(client, family, dry_run).run()
        report.items.extend(items)
        touched = any(i.action in ("created", "updated") for i in items)
        if touched and cache is not None and not dry_run:
            cache.invalidate(family.code)
    return report
