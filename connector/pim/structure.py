"""The PIM's asset-family structure, as the transform step needs it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

ATTRIBUTE_TYPES = frozenset(
    {
        "text",
        "number",
        "boolean",
        "date",
        "single_option",
        "multiple_options",
        "media_link",
        "media_file",
        "record",
        "asset_collection",
    }
)


@dataclass(frozen=True)
class Attribute:
    code: str
    type: str
    value_per_locale: bool = False
    value_per_channel: bool = False
    is_required_for_completeness: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    # type-specific properties (None when absent)
    max_characters: int | None = None
    is_textarea: bool | None = None
    is_rich_text_editor: bool | None = None
    validation_rule: str | None = None      # "none" | "email" | "url" | "regular_expression"
    validation_regexp: str | None = None
    decimals_allowed: bool | None = None
    min_value: str | None = None
    max_value: str | None = None
    media_type: str | None = None           # media_link: image/pdf/youtube/vimeo/other
    prefix: str | None = None
    suffix: str | None = None
    allowed_extensions: tuple[str, ...] = ()
    max_file_size: str | None = None
    reference_entity_code: str | None = None  # record
    options: tuple[str, ...] = ()           # option codes (single/multiple options)

    @classmethod
    def from_api(cls, data: dict[str, Any], options: list[str] | None = None) -> Attribute:
        known = {f for f in cls.__dataclass_fields__ if f not in ("options", "allowed_extensions")}
        kw = {k: v for k, v in data.items() if k in known}
        kw["labels"] = dict(data.get("labels") or {})
        exts = data.get("allowed_extensions") or ()
        return cls(allowed_extensions=tuple(exts), options=tuple(options or ()), **kw)

    @cached_property
    def options_by_folded_code(self) -> dict[str, str]:
        """casefold(code) → code of the PIM's options, built once per structure: a
        family's attribute may have thousands of options, and every DAM label is looked up
        in them."""
        return {c.casefold(): c for c in self.options}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["options"] = list(self.options)
        d["allowed_extensions"] = list(self.allowed_extensions)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attribute:
        d = dict(d)
        d["options"] = tuple(d.get("options") or ())
        d["allowed_extensions"] = tuple(d.get("allowed_extensions") or ())
        return cls(**d)


@dataclass(frozen=True)
class AssetFamilyStructure:
    code: str
    attributes: dict[str, Attribute]
    attribute_as_main_media: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    product_link_rules: tuple[dict[str, Any], ...] = ()
    fetched_at: float = 0.0                  # epoch seconds

    def attribute(self, code: str) -> Attribute | None:
        return self.attributes.get(code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "attributes": {c: a.to_dict() for c, a in self.attributes.items()},
            "attribute_as_main_media": self.attribute_as_main_media,
            "labels": self.labels,
            "product_link_rules": list(self.product_link_rules),
            "fetched_at": self.fetched_at,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AssetFamilyStructure:
        return cls(
            code=d["code"],
            attributes={c: Attribute.from_dict(a) for c, a in d["attributes"].items()},
            attribute_as_main_media=d.get("attribute_as_main_media"),
            labels=dict(d.get("labels") or {}),
            product_link_rules=tuple(d.get("product_link_rules") or ()),
            fetched_at=float(d.get("fetched_at") or 0.0),
        )
