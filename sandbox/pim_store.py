"""In-memory Asset Manager and product store of the sandbox PIM, with Akeneo's validation rules.

Kept apart from the HTTP layer (sandbox/pim.py) so that the rules can be read, and
tested, without a server. Every public method takes the store's lock: the WSGI server is threaded.
Errors are raised as `ApiError` carrying the HTTP status and the Akeneo-shaped body.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

CODE_RE = re.compile(r"^[a-zA-Z0-9_]+\Z")
MAX_CODE_LENGTH = 255
MAX_ATTRIBUTES_PER_FAMILY = 100
MAX_OPTIONS_PER_ATTRIBUTE = 100
MAX_PRODUCT_LINK_RULES = 2
MAX_TRANSFORMATIONS = 10
ATTRIBUTE_TYPES = (
    "text",
    "media_link",
    "number",
    "media_file",
    "single_option",
    "multiple_options",
    "boolean",
    "date",
    "record",
)
MEDIA_TYPES = {
    "media_link": ("image", "pdf", "youtube", "vimeo", "other"),
    "media_file": ("image", "pdf", "other"),
}
# Akeneo's code says "regular_expression", the published spec says "regexp": accept both.
VALIDATION_RULES = ("none", "email", "url", "regexp", "regular_expression")
COMMON_ATTRIBUTE_PROPERTIES = {
    "code": None,
    "labels": None,
    "type": None,
    "value_per_locale": False,
    "value_per_channel": False,
    "is_required_for_completeness": False,
    "is_read_only": False,
}
# Type-specific properties and the defaults Akeneo returns for them.
TYPE_PROPERTIES: dict[str, dict[str, Any]] = {
    "text": {
        "max_characters": None,
        "is_textarea": False,
        "is_rich_text_editor": False,
        "validation_rule": "none",
        "validation_regexp": None,
    },
    "number": {"decimals_allowed": False, "min_value": None, "max_value": None},
    "media_link": {"media_type": None, "prefix": None, "suffix": None},
    "media_file": {"media_type": None, "allowed_extensions": [], "max_file_size": None},
    "single_option": {},
    "multiple_options": {},
    "boolean": {},
    "date": {},
    "record": {"reference_entity": None},
}
ASSET_KEYS = frozenset({"code", "values", "asset_family_code"})
VALUE_KEYS = frozenset({"locale", "channel", "data"})
PRODUCT_KEYS = frozenset(
    {
        "identifier",
        "uuid",
        "enabled",
        "family",
        "categories",
        "groups",
        "parent",
        "values",
        "associations",
        "quantified_associations",
        "created",
        "updated",
    }
)
PRODUCT_VALUE_KEYS = frozenset({"locale", "scope", "data"})
FAMILY_KEYS = frozenset(
    {
        "code",
        "labels",
        "attribute_as_main_media",
        "naming_convention",
        "product_link_rules",
        "transformations",
    }
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
PLACEHOLDER_RE = re.compile(r"{{\s*([a-zA-Z0-9_]+)\s*}}")
ASSET_INVALID = "The asset has data that does not comply with the business rules."
ATTRIBUTE_INVALID = "The attribute has data that does not comply with the business rules."
FAMILY_INVALID = "The asset family has data that does not comply with the business rules."
OPTION_INVALID = "The option has data that does not comply with the business rules."
PRODUCT_INVALID = "Validation failed."
ERASE = object()  # marker: the incoming value erases the stored one

Violation = dict[str, str]
ValueKey = tuple[str, str | None, str | None]  # attribute, locale, channel


class ApiError(Exception):
    """An Akeneo error response: HTTP status, message and optional per-property errors."""

    def __init__(self, status: int, message: str, errors: list[Violation] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.errors:
            body["errors"] = self.errors
        return body


def now() -> float:
    return time.time()


def format_time(epoch: float) -> str:
    """Akeneo's date format: ISO 8601 with seconds and an explicit offset."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def parse_time(text: str) -> float:
    """Parse an ISO 8601 date (`Z` or offset; naive means UTC) to epoch seconds."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def code_problem(code: object, what: str) -> str | None:
    """Why `code` is not a valid Akeneo code, or None when it is."""
    if not isinstance(code, str) or not code:
        return f"The {what} code should be a non-empty string."
    if len(code) > MAX_CODE_LENGTH:
        return f"The {what} code is too long: {len(code)} characters, {MAX_CODE_LENGTH} allowed."
    if not CODE_RE.match(code):
        return (
            f'The {what} code "{code}" may only contain letters, numbers and underscores '
            "(^[a-zA-Z0-9_]+$)."
        )
    return None


def compile_php_regexp(pattern: str) -> re.Pattern[str]:
    """Compile an Akeneo validation_regexp, which is PHP-style (`/…/flags`) or bare."""
    if len(pattern) >= 2 and not pattern[0].isalnum() and pattern[0] not in "\\ ":
        delimiter = pattern[0]
        end = pattern.rfind(delimiter)
        if end > 0:
            flags = 0
            for letter in pattern[end + 1 :]:
                flags |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(letter, 0)
                flags |= re.VERBOSE if letter == "x" else 0
            return re.compile(pattern[1:end], flags)
    return re.compile(pattern)


def _is_number_string(value: object) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# model


@dataclass
class AttributeRule:
    """An attribute plus what validating its values needs, computed once per attribute change."""

    data: dict[str, Any]
    regexp: re.Pattern[str] | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    max_file_bytes: float | None = None

    @property
    def code(self) -> str:
        return str(self.data["code"])

    @property
    def type(self) -> str:
        return str(self.data["type"])

    @classmethod
    def build(cls, data: dict[str, Any]) -> AttributeRule:
        rule = cls(data=data)
        if data["type"] == "text" and data.get("validation_rule") in (
            "regexp",
            "regular_expression",
        ):
            rule.regexp = compile_php_regexp(str(data["validation_regexp"]))
        if data["type"] == "number":
            if data.get("min_value") is not None:
                rule.min_value = Decimal(data["min_value"])
            if data.get("max_value") is not None:
                rule.max_value = Decimal(data["max_value"])
        if data["type"] == "media_file" and data.get("max_file_size") is not None:
            rule.max_file_bytes = float(data["max_file_size"]) * 1024 * 1024
        return rule


class Asset:
    """One stored asset; values keyed by (attribute, locale, channel) keep memory small at 100k."""

    __slots__ = ("code", "created", "family", "updated", "values")

    def __init__(self, code: str, family: str, stamp: float) -> None:
        self.code = code
        self.family = family
        self.values: dict[ValueKey, Any] = {}
        self.created = stamp
        self.updated = stamp


@dataclass
class Family:
    code: str
    labels: dict[str, str | None] = field(default_factory=dict)
    attribute_as_main_media: str | None = None
    naming_convention: dict[str, Any] = field(default_factory=dict)
    product_link_rules: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    attributes: dict[str, AttributeRule] = field(default_factory=dict)
    options: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    sorted_codes: list[str] = field(default_factory=list)

    def to_api(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "labels": dict(self.labels),
            "attribute_as_main_media": self.attribute_as_main_media,
            "naming_convention": dict(self.naming_convention),
            "product_link_rules": [dict(r) for r in self.product_link_rules],
            "transformations": [dict(t) for t in self.transformations],
        }


@dataclass
class MediaFile:
    """An upload: `content` is None for one too large to keep (sandbox/uploads.py)."""

    code: str
    filename: str
    content: bytes | None
    mime_type: str
    size: int = 0
    sha256: str = ""


@dataclass
class Page:
    """One page of a `search_after` listing; `next_cursor` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


# ---------------------------------------------------------------------------------------------
# store


class PimStore:
    """All PIM data of one sandbox. Thread-safe: one re-entrant lock around every operation."""

    def __init__(
        self,
        locales: Iterable[str] = ("en_US", "fr_FR", "de_DE"),
        channels: Iterable[str] = ("ecommerce",),
        default_attributes: bool = True,
    ) -> None:
        self.lock = threading.RLock()
        self.locales: frozenset[str] = frozenset(locales)
        self.channels: frozenset[str] = frozenset(channels)
        # Akeneo creates `label` (text, per locale) and `media` (media_file) with every family.
        self.default_attributes = default_attributes
        self.families: dict[str, Family] = {}
        self.asset_family_of: dict[str, str] = {}  # asset code → family: codes are global
        self.media: dict[str, MediaFile] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self._media_counter = itertools.count(1)

    def configure(
        self,
        locales: Iterable[str] | None = None,
        channels: Iterable[str] | None = None,
        default_attributes: bool | None = None,
    ) -> None:
        with self.lock:
            if locales is not None:
                self.locales = frozenset(locales)
            if channels is not None:
                self.channels = frozenset(channels)
            if default_attributes is not None:
                self.default_attributes = default_attributes

    def clear(self) -> None:
        with self.lock:
            self.families.clear()
            self.asset_family_of.clear()
            self.media.clear()
            self.products.clear()

    # --- families --------------------------------------------------------------------------

    def family(self, code: str) -> Family:
        family = self.families.get(code)
        if family is None:
            raise ApiError(404, f'Asset family "{code}" does not exist.')
        return family

    def get_family(self, code: str) -> dict[str, Any]:
        with self.lock:
            return self.family(code).to_api()

    def list_families(self, after: str | None, limit: int) -> Page:
        with self.lock:
            codes = sorted(self.families)
            start = bisect.bisect_right(codes, after) if after else 0
            chosen = codes[start : start + limit]
            items = [self.families[c].to_api() for c in chosen]
            # Akeneo gives a `next` link whenever the page is full, even when nothing follows.
            full = len(chosen) == limit
            return Page(items, chosen[-1] if full else None)

    def upsert_family(self, code: str, body: Any) -> int:
        """PATCH /asset-families/{code}: 201 when created, 204 when updated."""
        if not isinstance(body, dict):
            raise ApiError(422, "The request body should be a JSON object.")
        errors: list[Violation] = []
        problem = code_problem(code, "asset family")
        if problem:
            errors.append({"property": "code", "message": problem})
        if "code" in body and body["code"] != code:
            raise ApiError(
                422,
                "The code of the asset family provided in the URI must be the same as the one "
                "provided in the request body.",
            )
        for key in body:
            if key not in FAMILY_KEYS:
                errors.append({"property": key, "message": f'Property "{key}" does not exist.'})
        with self.lock:
            existing = self.families.get(code)
            family = existing or Family(code=code)
            attributes = dict(family.attributes)
            if existing is None and self.default_attributes:
                attributes.update(self._default_attributes())
            labels = self._check_labels(body.get("labels", family.labels), errors)
            main_media = body.get(
                "attribute_as_main_media",
                family.attribute_as_main_media or ("media" if "media" in attributes else None),
            )
            if main_media is not None:
                rule = attributes.get(main_media) if isinstance(main_media, str) else None
                if rule is None:
                    errors.append(
                        {
                            "property": "attribute_as_main_media",
                            "message": f'The attribute "{main_media}" does not exist in the '
                            f'asset family "{code}".',
                        }
                    )
                elif rule.type not in ("media_file", "media_link"):
                    errors.append(
                        {
                            "property": "attribute_as_main_media",
                            "message": f'The attribute "{main_media}" cannot be the main media: '
                            f'its type is "{rule.type}", media_file or media_link expected.',
                        }
                    )
            naming = body.get("naming_convention", family.naming_convention)
            if naming is None:
                naming = {}
            if not isinstance(naming, dict):
                errors.append(
                    {"property": "naming_convention", "message": "An object is expected."}
                )
            rules = body.get("product_link_rules", family.product_link_rules)
            rules = [] if rules is None else rules
            self._check_link_rules(rules, attributes, errors)
            transformations = body.get("transformations", family.transformations)
            transformations = [] if transformations is None else transformations
            if not isinstance(transformations, list):
                errors.append({"property": "transformations", "message": "An array is expected."})
            elif len(transformations) > MAX_TRANSFORMATIONS:
                errors.append(
                    {
                        "property": "transformations",
                        "message": f"You cannot define more than {MAX_TRANSFORMATIONS} "
                        "transformations.",
                    }
                )
            if errors:
                raise ApiError(422, FAMILY_INVALID, errors)
            family.labels = labels
            family.attribute_as_main_media = main_media
            family.naming_convention = dict(naming)
            family.product_link_rules = list(rules)
            family.transformations = list(transformations)
            family.attributes = attributes
            self.families[code] = family
            return 204 if existing else 201

    def _default_attributes(self) -> dict[str, AttributeRule]:
        label = self._complete_attribute(
            {"code": "label", "type": "text", "labels": {}, "value_per_locale": True}
        )
        media = self._complete_attribute(
            {"code": "media", "type": "media_file", "labels": {}, "media_type": "image"}
        )
        return {"label": AttributeRule.build(label), "media": AttributeRule.build(media)}

    def _check_labels(self, labels: Any, errors: list[Violation]) -> dict[str, str | None]:
        if labels is None:
            return {}
        if not isinstance(labels, dict):
            errors.append({"property": "labels", "message": "An object is expected."})
            return {}
        for locale, label in labels.items():
            if locale not in self.locales:
                errors.append(
                    {"property": "labels", "message": f'The locale "{locale}" is not activated.'}
                )
            elif label is not None and not isinstance(label, str):
                errors.append({"property": f"labels.{locale}", "message": "A string is expected."})
        return {k: v for k, v in labels.items() if v not in (None, "")}

    def _check_link_rules(
        self, rules: Any, attributes: dict[str, AttributeRule], errors: list[Violation]
    ) -> None:
        prop = "product_link_rules"
        if not isinstance(rules, list):
            errors.append({"property": prop, "message": "An array is expected."})
            return
        if len(rules) > MAX_PRODUCT_LINK_RULES:
            errors.append(
                {
                    "property": prop,
                    "message": f"You cannot define more than {MAX_PRODUCT_LINK_RULES} product "
                    f"link rules ({len(rules)} given).",
                }
            )
        for i, rule in enumerate(rules):
            where = f"{prop}[{i}]"
            if not isinstance(rule, dict):
                errors.append({"property": where, "message": "An object is expected."})
                continue
            selections = rule.get("product_selections")
            targets = rule.get("assign_assets_to")
            if not isinstance(selections, list) or not selections:
                errors.append(
                    {
                        "property": f"{where}.product_selections",
                        "message": "At least one product selection is expected.",
                    }
                )
                selections = []
            if not isinstance(targets, list) or not targets:
                errors.append(
                    {
                        "property": f"{where}.assign_assets_to",
                        "message": "At least one product value assignment is expected.",
                    }
                )
                targets = []
            for j, selection in enumerate(selections):
                spot = f"{where}.product_selections[{j}]"
                if not isinstance(selection, dict) or not all(
                    k in selection for k in ("field", "operator", "value")
                ):
                    errors.append(
                        {"property": spot, "message": "field, operator and value are required."}
                    )
                    continue
                texts = (
                    selection["value"]
                    if isinstance(selection["value"], list)
                    else [selection["value"]]
                )
                for text in texts:
                    for name in PLACEHOLDER_RE.findall(str(text)):
                        placeholder = attributes.get(name)
                        if placeholder is None:
                            errors.append(
                                {
                                    "property": spot,
                                    "message": f'The attribute "{name}" used in "{{{{{name}}}}}" '
                                    "does not exist in this asset family.",
                                }
                            )
                        elif placeholder.type not in ("text", "single_option", "multiple_options"):
                            errors.append(
                                {
                                    "property": spot,
                                    "message": f'The attribute "{name}" of type '
                                    f'"{placeholder.type}" cannot be used in a product selection.',
                                }
                            )
            for j, target in enumerate(targets):
                spot = f"{where}.assign_assets_to[{j}]"
                if not isinstance(target, dict) or not isinstance(target.get("attribute"), str):
                    errors.append({"property": spot, "message": "An attribute code is expected."})
                elif target.get("mode") not in ("add", "replace"):
                    errors.append(
                        {
                            "property": f"{spot}.mode",
                            "message": 'The mode must be "add" or "replace".',
                        }
                    )

    # --- attributes ------------------------------------------------------------------------

    def list_attributes(self, family_code: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r.data) for r in self.family(family_code).attributes.values()]

    def get_attribute(self, family_code: str, code: str) -> dict[str, Any]:
        with self.lock:
            return dict(self._attribute(self.family(family_code), code).data)

    def _attribute(self, family: Family, code: str) -> AttributeRule:
        rule = family.attributes.get(code)
        if rule is None:
            raise ApiError(
                404, f'Attribute "{code}" does not exist for asset family "{family.code}".'
            )
        return rule

    def _complete_attribute(self, data: dict[str, Any]) -> dict[str, Any]:
        """Fill in the defaults Akeneo returns for the attribute's type."""
        full: dict[str, Any] = dict(COMMON_ATTRIBUTE_PROPERTIES)
        full.update({k: v for k, v in TYPE_PROPERTIES[data["type"]].items()})
        full.update(data)
        full["labels"] = dict(full.get("labels") or {})
        if "allowed_extensions" in full:
            full["allowed_extensions"] = list(full["allowed_extensions"] or [])
        return full

    def upsert_attribute(self, family_code: str, code: str, body: Any) -> int:
        """PATCH an attribute: type, value_per_locale and value_per_channel are immutable."""
        if not isinstance(body, dict):
            raise ApiError(422, "The request body should be a JSON object.")
        if "code" in body and body["code"] != code:
            raise ApiError(
                422,
                "The code of the attribute provided in the URI must be the same as the one "
                "provided in the request body.",
            )
        with self.lock:
            family = self.family(family_code)
            existing = family.attributes.get(code)
            errors: list[Violation] = []
            problem = code_problem(code, "attribute")
            if problem:
                errors.append({"property": "code", "message": problem})
            if existing is None:
                kind = body.get("type")
                if kind not in ATTRIBUTE_TYPES:
                    errors.append(
                        {
                            "property": "type",
                            "message": f'The attribute type "{kind}" is unknown, expected one of: '
                            + ", ".join(ATTRIBUTE_TYPES)
                            + ".",
                        }
                    )
                    raise ApiError(422, ATTRIBUTE_INVALID, errors)
                if len(family.attributes) >= MAX_ATTRIBUTES_PER_FAMILY:
                    raise ApiError(
                        422,
                        ATTRIBUTE_INVALID,
                        [
                            {
                                "property": "code",
                                "message": f"You cannot create more than "
                                f"{MAX_ATTRIBUTES_PER_FAMILY} attributes per asset family.",
                            }
                        ],
                    )
                merged = dict(body)
            else:
                kind = existing.type
                merged = dict(existing.data)
                for immutable in ("type", "value_per_locale", "value_per_channel"):
                    if immutable in body and body[immutable] != existing.data[immutable]:
                        errors.append(
                            {
                                "property": immutable,
                                "message": f'The property "{immutable}" of the attribute '
                                f'"{code}" cannot be changed (it is '
                                f"{existing.data[immutable]!r}, {body[immutable]!r} given).",
                            }
                        )
                merged.update(body)
                merged["type"] = kind
            merged["code"] = code
            allowed = set(COMMON_ATTRIBUTE_PROPERTIES) | set(TYPE_PROPERTIES[kind])
            for key in body:
                if key not in allowed:
                    errors.append(
                        {
                            "property": key,
                            "message": f'Property "{key}" is not supported by attributes of '
                            f'type "{kind}".',
                        }
                    )
            if existing is None and kind in MEDIA_TYPES and "media_type" not in body:
                errors.append(
                    {"property": "media_type", "message": f'A media type is required for "{kind}".'}
                )
            full = self._complete_attribute(merged)
            merged_labels = self._check_labels(full.get("labels"), errors)
            full["labels"] = merged_labels
            self._check_attribute_properties(full, errors)
            if errors:
                raise ApiError(422, ATTRIBUTE_INVALID, errors)
            family.attributes[code] = AttributeRule.build(full)
            if kind in ("single_option", "multiple_options"):
                family.options.setdefault(code, {})
            return 204 if existing else 201

    def _check_attribute_properties(self, data: dict[str, Any], errors: list[Violation]) -> None:
        def bad(prop: str, message: str) -> None:
            errors.append({"property": prop, "message": message})

        for flag in (
            "value_per_locale",
            "value_per_channel",
            "is_required_for_completeness",
            "is_read_only",
            "is_textarea",
            "is_rich_text_editor",
            "decimals_allowed",
        ):
            if flag in data and not isinstance(data[flag], bool):
                bad(flag, "A boolean is expected.")
        kind = data["type"]
        if kind == "text":
            limit = data.get("max_characters")
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
            ):
                bad("max_characters", "A positive integer or null is expected.")
            if data.get("is_rich_text_editor") and not data.get("is_textarea"):
                bad("is_rich_text_editor", "A rich text editor needs is_textarea to be true.")
            rule = data.get("validation_rule")
            if rule not in VALIDATION_RULES:
                bad("validation_rule", f'Unknown validation rule "{rule}".')
            elif rule in ("regexp", "regular_expression"):
                pattern = data.get("validation_regexp")
                if not isinstance(pattern, str) or not pattern:
                    bad("validation_regexp", "A regular expression is required for this rule.")
                else:
                    try:
                        compile_php_regexp(pattern)
                    except re.error as exc:
                        bad("validation_regexp", f"Invalid regular expression: {exc}.")
        elif kind == "number":
            bounds: dict[str, Decimal] = {}
            for prop in ("min_value", "max_value"):
                value = data.get(prop)
                if value is None:
                    continue
                if not _is_number_string(value):
                    bad(prop, "A number given as a string (or null) is expected.")
                else:
                    bounds[prop] = Decimal(value)
            if len(bounds) == 2 and bounds["min_value"] >= bounds["max_value"]:
                bad("min_value", "The minimum value must be lower than the maximum value.")
        elif kind in MEDIA_TYPES:
            if data.get("media_type") not in MEDIA_TYPES[kind]:
                bad(
                    "media_type",
                    f'The media type "{data.get("media_type")}" is not allowed for "{kind}", '
                    f"expected one of: {', '.join(MEDIA_TYPES[kind])}.",
                )
            if kind == "media_link":
                for prop in ("prefix", "suffix"):
                    if data.get(prop) is not None and not isinstance(data[prop], str):
                        bad(prop, "A string or null is expected.")
            else:
                exts = data.get("allowed_extensions")
                if not isinstance(exts, list) or not all(
                    isinstance(e, str) and e and "." not in e for e in exts
                ):
                    bad("allowed_extensions", "A list of extensions without dots is expected.")
                size = data.get("max_file_size")
                if size is not None and not _is_number_string(size):
                    bad("max_file_size", "A number of megabytes given as a string is expected.")
        elif kind == "record" and not isinstance(data.get("reference_entity"), str):
            bad("reference_entity", "A reference entity code is expected.")

    # --- options ---------------------------------------------------------------------------

    def _option_attribute(self, family_code: str, attribute: str) -> tuple[Family, AttributeRule]:
        family = self.family(family_code)
        rule = self._attribute(family, attribute)
        if rule.type not in ("single_option", "multiple_options"):
            raise ApiError(
                422, f'The attribute "{attribute}" of type "{rule.type}" does not have options.'
            )
        return family, rule

    def list_options(self, family_code: str, attribute: str) -> list[dict[str, Any]]:
        with self.lock:
            family, _ = self._option_attribute(family_code, attribute)
            return [dict(o) for o in family.options.get(attribute, {}).values()]

    def get_option(self, family_code: str, attribute: str, code: str) -> dict[str, Any]:
        with self.lock:
            family, _ = self._option_attribute(family_code, attribute)
            option = family.options.get(attribute, {}).get(code)
            if option is None:
                raise ApiError(404, f'Attribute option "{code}" does not exist.')
            return dict(option)

    def upsert_option(self, family_code: str, attribute: str, code: str, body: Any) -> int:
        if not isinstance(body, dict):
            raise ApiError(422, "The request body should be a JSON object.")
        if "code" in body and body["code"] != code:
            raise ApiError(
                422,
                "The code of the option provided in the URI must be the same as the one "
                "provided in the request body.",
            )
        with self.lock:
            family, _ = self._option_attribute(family_code, attribute)
            options = family.options.setdefault(attribute, {})
            errors: list[Violation] = []
            problem = code_problem(code, "option")
            if problem:
                errors.append({"property": "code", "message": problem})
            for key in body:
                if key not in ("code", "labels"):
                    errors.append({"property": key, "message": f'Property "{key}" does not exist.'})
            existing = options.get(code)
            labels = self._check_labels(
                body.get("labels", existing["labels"] if existing else {}), errors
            )
            if existing is None and len(options) >= MAX_OPTIONS_PER_ATTRIBUTE:
                errors.append(
                    {
                        "property": "code",
                        "message": f"You cannot create more than {MAX_OPTIONS_PER_ATTRIBUTE} "
                        f'options for the attribute "{attribute}".',
                    }
                )
            if errors:
                raise ApiError(422, OPTION_INVALID, errors)
            options[code] = {"code": code, "labels": labels}
            return 204 if existing else 201

    # --- assets ----------------------------------------------------------------------------

    def get_asset(self, family_code: str, code: str, base_url: str = "") -> dict[str, Any]:
        with self.lock:
            family = self.family(family_code)
            asset = family.assets.get(code)
            if asset is None:
                raise ApiError(
                    404, f'Asset "{code}" does not exist in asset family "{family_code}".'
                )
            return self.render_asset(family, asset, base_url)

    def list_assets(
        self,
        family_code: str,
        after: str | None,
        limit: int,
        keep: Callable[[Asset], bool] | None = None,
        base_url: str = "",
    ) -> Page:
        """Assets in code order after the cursor; `keep` filters (search)."""
        with self.lock:
            family = self.family(family_code)
            codes = family.sorted_codes
            start = bisect.bisect_right(codes, after) if after else 0
            chosen: list[Asset] = []
            index = start
            while index < len(codes) and len(chosen) < limit:
                asset = family.assets[codes[index]]
                index += 1
                if keep is None or keep(asset):
                    chosen.append(asset)
            items = [self.render_asset(family, a, base_url) for a in chosen]
            full = len(chosen) == limit  # like Akeneo: `next` whenever the page is full
            return Page(items, chosen[-1].code if full else None)

    def dump_assets(self, family_code: str) -> list[dict[str, Any]]:
        with self.lock:
            family = self.family(family_code)
            return [self.render_asset(family, family.assets[c], "") for c in family.sorted_codes]

    def update_times(self, family_code: str) -> dict[str, float]:
        """Each asset's last write that changed it (epoch seconds, unrounded): what a
        benchmark joins with the moment it changed the DAM (bench/freshness.py)."""
        with self.lock:
            family = self.family(family_code)
            return {code: asset.updated for code, asset in family.assets.items()}

    def render_asset(self, family: Family, asset: Asset, base_url: str) -> dict[str, Any]:
        values: dict[str, list[dict[str, Any]]] = {}
        for (attribute, locale, channel), data in asset.values.items():
            item: dict[str, Any] = {"locale": locale, "channel": channel, "data": data}
            rule = family.attributes.get(attribute)
            if rule is not None and rule.type == "media_file":
                item["_links"] = {
                    "download": {"href": f"{base_url}/api/rest/v1/asset-media-files/{data}"}
                }
            elif rule is not None and rule.type == "media_link":
                prefix, suffix = rule.data.get("prefix"), rule.data.get("suffix")
                item["linked_data"] = {
                    "full_url": f"{prefix or ''}{data}{suffix or ''}",
                    "prefix": prefix,
                    "suffix": suffix,
                }
            values.setdefault(attribute, []).append(item)
        return {
            "code": asset.code,
            "values": values,
            "created": format_time(asset.created),
            "updated": format_time(asset.updated),
        }

    def delete_asset(self, family_code: str, code: str) -> None:
        with self.lock:
            family = self.family(family_code)
            if family.assets.pop(code, None) is None:
                raise ApiError(
                    404, f'Asset "{code}" does not exist in asset family "{family_code}".'
                )
            index = bisect.bisect_left(family.sorted_codes, code)
            del family.sorted_codes[index]
            del self.asset_family_of[code]

    def count_assets(self) -> int:
        with self.lock:
            return len(self.asset_family_of)

    def upsert_asset(self, family_code: str, body: Any, url_code: str | None = None) -> int:
        """Create (201) or merge into (204) one asset; ApiError(422) leaves the asset untouched."""
        with self.lock:
            family = self.family(family_code)
            if not isinstance(body, dict):
                raise ApiError(422, "An asset should be a JSON object.")
            code = body.get("code", url_code)
            if url_code is not None and code != url_code:
                raise ApiError(
                    422,
                    "The code of the asset provided in the URI must be the same as the one "
                    "provided in the request body.",
                )
            errors: list[Violation] = []
            problem = code_problem(code, "asset")
            if problem:
                raise ApiError(422, ASSET_INVALID, [{"property": "code", "message": problem}])
            assert isinstance(code, str)
            for key in body:
                if key not in ASSET_KEYS:
                    errors.append(
                        {
                            "property": key,
                            "message": f'Property "{key}" does not exist. Check the expected '
                            "format on the API documentation.",
                        }
                    )
            if body.get("asset_family_code", family_code) != family_code:
                errors.append(
                    {
                        "property": "asset_family_code",
                        "message": f'The asset family code should be "{family_code}".',
                    }
                )
            owner = self.asset_family_of.get(code)
            if owner is not None and owner != family_code:
                errors.append(
                    {
                        "property": "code",
                        "message": f'The asset code "{code}" is already used in the asset family '
                        f'"{owner}": asset codes are unique across all asset families.',
                    }
                )
            changes = self._check_values(family, body.get("values", {}), errors)
            if errors:
                raise ApiError(422, ASSET_INVALID, errors)
            stamp = now()
            asset = family.assets.get(code)
            created = asset is None
            if asset is None:
                asset = Asset(code, family_code, stamp)
                family.assets[code] = asset
                bisect.insort(family.sorted_codes, code)
                self.asset_family_of[code] = family_code
            changed = created
            for key, data in changes:
                if data is ERASE:
                    if asset.values.pop(key, ERASE) is not ERASE:
                        changed = True
                elif asset.values.get(key, ERASE) != data:
                    asset.values[key] = data
                    changed = True
            if changed:
                asset.updated = stamp
                self._run_link_rules(family, asset)
            return 201 if created else 204

    def _check_values(
        self, family: Family, values: Any, errors: list[Violation]
    ) -> list[tuple[ValueKey, Any]]:
        """Validate incoming values; return the (key, data-or-ERASE) changes to apply."""
        if not isinstance(values, dict):
            errors.append({"property": "values", "message": "An object is expected."})
            return []
        changes: list[tuple[ValueKey, Any]] = []
        for attribute, items in values.items():
            prop = f"values.{attribute}"
            rule = family.attributes.get(attribute)
            if rule is None:
                errors.append(
                    {
                        "property": prop,
                        "message": f'The attribute "{attribute}" does not exist in the asset '
                        f'family "{family.code}".',
                    }
                )
                continue
            if not isinstance(items, list):
                errors.append({"property": prop, "message": "An array of values is expected."})
                continue
            for item in items:
                change = self._check_value(family, rule, item, prop, errors)
                if change is not None:
                    changes.append(change)
        return changes

    def _check_value(
        self, family: Family, rule: AttributeRule, item: Any, prop: str, errors: list[Violation]
    ) -> tuple[ValueKey, Any] | None:
        if not isinstance(item, dict) or "data" not in item:
            errors.append(
                {
                    "property": prop,
                    "message": 'Each value is an object with "locale", "channel" and "data".',
                }
            )
            return None
        before = len(errors)
        for key in item:
            if key not in VALUE_KEYS:
                errors.append(
                    {"property": prop, "message": f'Property "{key}" does not exist in a value.'}
                )
        attr = rule.code
        locale, channel = item.get("locale"), item.get("channel")
        if rule.data["value_per_locale"]:
            if locale is None:
                errors.append(
                    {
                        "property": prop,
                        "message": f'A locale is expected for the attribute "{attr}" '
                        "because it has a value per locale.",
                    }
                )
            elif locale not in self.locales:
                errors.append(
                    {"property": prop, "message": f'The locale "{locale}" is not activated.'}
                )
        elif locale is not None:
            errors.append(
                {
                    "property": prop,
                    "message": f'A locale is not expected for the attribute "{attr}" '
                    "because it does not have a value per locale.",
                }
            )
        if rule.data["value_per_channel"]:
            if channel is None:
                errors.append(
                    {
                        "property": prop,
                        "message": f"A channel is expected for the attribute "
                        f'"{attr}" because it has a value per channel.',
                    }
                )
            elif channel not in self.channels:
                errors.append(
                    {"property": prop, "message": f'The channel "{channel}" does not exist.'}
                )
        elif channel is not None:
            errors.append(
                {
                    "property": prop,
                    "message": f'A channel is not expected for the attribute "{attr}" '
                    "because it does not have a value per channel.",
                }
            )
        data = item["data"]
        if data is None or data == "" or data == []:
            result: Any = ERASE
        else:
            message = self._data_problem(family, rule, data)
            if message:
                errors.append({"property": prop, "message": message})
            result = data
        if len(errors) > before:
            return None
        return (attr, locale, channel), result

    def _data_problem(self, family: Family, rule: AttributeRule, data: Any) -> str | None:
        """Why `data` is not valid for the attribute's type, or None."""
        kind = rule.type
        attr = rule.code
        if kind == "boolean":
            return None if isinstance(data, bool) else "This value should be of type boolean."
        if kind == "multiple_options":
            if not isinstance(data, list) or not all(isinstance(d, str) for d in data):
                return "This value should be an array of option codes."
            known = family.options.get(attr, {})
            missing = [d for d in data if d not in known]
            if missing:
                return (
                    f'The option(s) "{", ".join(missing)}" do not exist for the attribute "{attr}".'
                )
            return None
        if not isinstance(data, str):
            return "This value should be of type string."
        if kind == "text":
            limit = rule.data.get("max_characters")
            if limit is not None and len(data) > limit:
                return f"This value is too long. It should have {limit} characters or less."
            validation = rule.data.get("validation_rule")
            if validation == "email" and not EMAIL_RE.match(data):
                return f'The value "{data}" is not a valid email address.'
            if validation == "url" and not URL_RE.match(data):
                return f'The value "{data}" is not a valid URL.'
            if rule.regexp is not None and not rule.regexp.search(data):
                return (
                    f'The value "{data}" does not match the regular expression '
                    f'"{rule.data["validation_regexp"]}".'
                )
            return None
        if kind == "number":
            pattern = r"^-?\d+(\.\d+)?$" if rule.data.get("decimals_allowed") else r"^-?\d+$"
            if not re.match(pattern, data):
                if rule.data.get("decimals_allowed"):
                    return f'The value "{data}" should be a number given as a string.'
                return f'The value "{data}" should be an integer (decimals are not allowed).'
            number = Decimal(data)
            if rule.min_value is not None and number < rule.min_value:
                return f"This value should be {rule.min_value} or more."
            if rule.max_value is not None and number > rule.max_value:
                return f"This value should be {rule.max_value} or less."
            return None
        if kind == "date":
            try:
                parse_time(data)
            except ValueError:
                return f'The value "{data}" is not a valid ISO 8601 date.'
            return None
        if kind == "single_option":
            if data not in family.options.get(attr, {}):
                return f'The option "{data}" does not exist for the attribute "{attr}".'
            return None
        if kind == "media_file":
            media = self.media.get(data)
            if media is None:
                return f'The media file "{data}" does not exist: upload it first.'
            allowed = rule.data.get("allowed_extensions") or []
            extension = media.filename.rsplit(".", 1)[-1].lower() if "." in media.filename else ""
            if allowed and extension not in [a.lower() for a in allowed]:
                return (
                    f'The file extension "{extension}" is not allowed, allowed: '
                    f"{', '.join(allowed)}."
                )
            if rule.max_file_bytes is not None and media.size > rule.max_file_bytes:
                return (
                    f"The file is too large ({media.size} bytes), the maximum is "
                    f"{rule.data['max_file_size']} MB."
                )
            return None
        if kind == "record":
            problem = code_problem(data, "record")
            return problem
        return None  # media_link: any string

    # --- product link rules ----------------------------------------------------------------

    def _run_link_rules(self, family: Family, asset: Asset) -> None:
        """A basic version of Akeneo's product link rules: identifier/sku EQUALS or IN."""
        for rule in family.product_link_rules:
            identifiers = self._select_products(rule.get("product_selections") or [], asset)
            for identifier in identifiers:
                product = self.products.get(identifier)
                if product is None:
                    continue  # rules link to existing products, they create nothing
                for target in rule.get("assign_assets_to") or []:
                    self._assign(product, target, asset.code)

    def _select_products(self, selections: list[dict[str, Any]], asset: Asset) -> list[str]:
        chosen: set[str] | None = None
        for selection in selections:
            field_name = selection.get("field")
            if field_name not in ("sku", "identifier"):
                return []  # only identifier selections are simulated
            raw = selection.get("value")
            texts = raw if isinstance(raw, list) else [raw]
            wanted: set[str] = set()
            for text in texts:
                value = self._extrapolate(str(text), asset)
                if value is None:
                    return []
                wanted.update(value)
            operator = str(selection.get("operator", "")).upper()
            if operator not in ("EQUALS", "=", "IN"):
                return []
            chosen = wanted if chosen is None else chosen & wanted
        return sorted(chosen or ())

    def _extrapolate(self, text: str, asset: Asset) -> list[str] | None:
        """Fill `{{attr}}` from the asset's non-localizable, non-scopable values."""
        names = PLACEHOLDER_RE.findall(text)
        if not names:
            return [text]
        results = [text]
        for name in names:
            data = asset.values.get((name, None, None))
            if data is None:
                return None
            choices = data if isinstance(data, list) else [data]
            results = [_fill(result, name, str(choice)) for result in results for choice in choices]
        return results

    def _assign(self, product: dict[str, Any], target: dict[str, Any], asset_code: str) -> None:
        attribute = str(target["attribute"])
        locale, scope = target.get("locale"), target.get("channel")
        entries = product["values"].setdefault(attribute, [])
        entry = next(
            (e for e in entries if e.get("locale") == locale and e.get("scope") == scope), None
        )
        if entry is None:
            entry = {"locale": locale, "scope": scope, "data": []}
            entries.append(entry)
        if target.get("mode") == "replace":
            new = [asset_code]
        else:
            current = list(entry.get("data") or [])
            new = current if asset_code in current else [*current, asset_code]
        if new != entry.get("data"):
            entry["data"] = new
            product["updated"] = format_time(now())

    # --- media files -----------------------------------------------------------------------

    def add_media(self, filename: str, content: bytes | None, mime_type: str | None = None,
                  *, size: int | None = None, sha256: str | None = None) -> str:
        """Store an upload under an Akeneo-like code (`a/b/c/d/<sha1>_<filename>`).
        `content` None: a large upload kept as its `size` and `sha256` only."""
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "file"
        if sha256 is None:
            sha256 = hashlib.sha256(content or b"").hexdigest()
        if size is None:
            size = len(content or b"")
        with self.lock:
            digest = hashlib.sha1(
                (sha256 + str(next(self._media_counter))).encode(), usedforsecurity=False
            ).hexdigest()
            code = f"{digest[0]}/{digest[1]}/{digest[2]}/{digest[3]}/{digest}_{safe_name}"
            guessed = mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
            self.media[code] = MediaFile(code, filename, content, guessed, size, sha256)
            return code

    def get_media(self, code: str) -> MediaFile:
        with self.lock:
            media = self.media.get(code)
            if media is None:
                raise ApiError(404, f'Media file "{code}" does not exist.')
            return media

    # --- products --------------------------------------------------------------------------

    def get_product(self, identifier: str) -> dict[str, Any]:
        with self.lock:
            product = self.products.get(identifier)
            if product is None:
                raise ApiError(
                    404,
                    f'Product "{identifier}" does not exist or you do not have permission to '
                    "access it.",
                )
            copied: dict[str, Any] = _deep_copy(product)
            return copied

    def find_products(self, identifiers: Iterable[str] | None) -> list[dict[str, Any]]:
        with self.lock:
            if identifiers is None:
                chosen: Iterator[str] = iter(sorted(self.products))
            else:
                chosen = (i for i in sorted(set(identifiers)) if i in self.products)
            return [_deep_copy(self.products[i]) for i in chosen]

    def upsert_product(self, body: Any) -> tuple[str, int]:
        """Create (201) or update (204) a product; array data is replaced, never merged."""
        if not isinstance(body, dict):
            raise ApiError(422, "A product should be a JSON object.")
        identifier = body.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            raise ApiError(422, 'Property "identifier" is required and should be a string.')
        errors: list[Violation] = []
        for key in body:
            if key not in PRODUCT_KEYS:
                errors.append({"property": key, "message": f'Property "{key}" does not exist.'})
        values = body.get("values", {})
        if not isinstance(values, dict):
            errors.append({"property": "values", "message": "An object is expected."})
            values = {}
        for attribute, items in values.items():
            if not isinstance(items, list):
                errors.append(
                    {"property": f"values.{attribute}", "message": "An array is expected."}
                )
                continue
            for item in items:
                if not isinstance(item, dict) or "data" not in item:
                    errors.append(
                        {
                            "property": f"values.{attribute}",
                            "message": 'Each value is an object with "locale", "scope" and "data".',
                        }
                    )
                    continue
                for key in item:
                    if key not in PRODUCT_VALUE_KEYS:
                        hint = ' (products use "scope", not "channel")' if key == "channel" else ""
                        errors.append(
                            {
                                "property": f"values.{attribute}",
                                "message": f'Property "{key}" does not exist{hint}.',
                            }
                        )
        if errors:
            raise ApiError(422, errors[0]["message"], errors)
        with self.lock:
            stamp = format_time(now())
            product = self.products.get(identifier)
            created = product is None
            if product is None:
                product = {
                    "identifier": identifier,
                    "uuid": _uuid_for(identifier),
                    "enabled": True,
                    "family": None,
                    "categories": [],
                    "groups": [],
                    "parent": None,
                    "values": {},
                    "associations": {},
                    "quantified_associations": {},
                    "created": stamp,
                    "updated": stamp,
                }
                self.products[identifier] = product
            for key in (
                "enabled",
                "family",
                "categories",
                "groups",
                "parent",
                "associations",
                "quantified_associations",
            ):
                if key in body:
                    product[key] = _deep_copy(body[key])
            for attribute, items in values.items():
                entries = product["values"].setdefault(attribute, [])
                for item in items:
                    locale, scope = item.get("locale"), item.get("scope")
                    entries[:] = [
                        e for e in entries if (e.get("locale"), e.get("scope")) != (locale, scope)
                    ]
                    if item["data"] is not None:
                        entries.append({"locale": locale, "scope": scope, "data": item["data"]})
                if not entries:
                    del product["values"][attribute]
            product["updated"] = stamp
            return identifier, 201 if created else 204


def _fill(text: str, name: str, value: str) -> str:
    """Replace the `{{name}}` placeholders of `text` by `value`."""
    return PLACEHOLDER_RE.sub(lambda m: value if m.group(1) == name else m.group(0), text)


def _uuid_for(identifier: str) -> str:
    digest = hashlib.md5(identifier.encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"


def _deep_copy(value: Any) -> Any:
    """JSON-shaped copy: faster than copy.deepcopy for plain dicts and lists."""
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
