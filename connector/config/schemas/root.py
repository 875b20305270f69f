"""The whole file: its sections, and the checks that span sections (families ↔ sources ↔ pim)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from connector.config.fields import CODE_MESSAGE, NamedMap, Nested
from connector.config.model import Config, PimConfig
from connector.config.schemas.alerts import AlertsSchema
from connector.config.schemas.base import StrictSchema
from connector.config.schemas.families import SelectorSchema, load_family
from connector.config.schemas.pim import PimSchema
from connector.config.schemas.sources import load_source
from connector.config.schemas.sync import SyncSchema
from connector.rules import CODE_PATTERN


class ConfigSchema(StrictSchema):
    pim = Nested(PimSchema)
    sync = Nested(SyncSchema)
    alerts = Nested(AlertsSchema)
    product_asset = Nested(SelectorSchema)
    families = NamedMap(
        load_family,
        what="family",
        name_pattern=CODE_PATTERN,
        name_message="(the PIM asset family code) " + CODE_MESSAGE,
        required=True,
    )
    sources = NamedMap(
        load_source,
        what="source",
        name_pattern=r"[A-Za-z0-9_-]+",
        name_message="must contain only letters, digits, _ and -",
        required=True,
    )

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _cross_references(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        errors: dict[str, Any] = {}
        families = original_data.get("families")
        family_names = [str(k) for k in families] if isinstance(families, Mapping) else None
        sources = original_data.get("sources")
        if family_names is not None and isinstance(sources, Mapping):
            for name, source in sources.items():
                wanted = source.get("families") if isinstance(source, Mapping) else None
                if isinstance(wanted, str):
                    wanted = [wanted]
                if not isinstance(wanted, list):
                    continue
                unknown = [
                    f'unknown family "{w}" (defined: {", ".join(family_names)})'
                    for w in wanted
                    if isinstance(w, str) and w not in family_names
                ]
                if unknown:
                    errors.setdefault("sources", {})[str(name)] = {"families": unknown}
        pim = data.get("pim")
        if isinstance(pim, PimConfig) and isinstance(families, Mapping):
            for name, family in families.items():
                problems = _locale_channel_problems(family, pim)
                if problems:
                    errors.setdefault("families", {})[str(name)] = problems
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def _distinct_code_prefixes(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Two sources feeding one family must not be able to write each other's assets."""
        if "families" not in data or "sources" not in data:
            return
        config = Config(families=data["families"], sources=data["sources"])
        errors: dict[str, Any] = {}
        for name, message in config.code_prefix_conflicts():
            errors.setdefault(name, {}).setdefault("code_prefix", []).append(message)
        if errors:
            raise ValidationError({"sources": errors})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Config:
        return Config(**data)


def _locale_channel_problems(family: Any, pim: PimConfig) -> dict[str, Any]:
    """Locales/channels named in a family that `pim.locales`/`pim.channels` do not list."""
    if not isinstance(family, Mapping):
        return {}
    problems: dict[str, Any] = {}

    def check(value: Any, allowed: tuple[str, ...], what: str, *path: str) -> None:
        if allowed and isinstance(value, str) and value and value not in allowed:
            node = problems
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node.setdefault(path[-1], []).append(
                f'{what} "{value}" is not in pim.{what}s ({", ".join(allowed)})'
            )

    check(family.get("channel"), pim.channels, "channel", "channel")
    rule = family.get("locale")
    if isinstance(rule, Mapping):
        check(rule.get("default"), pim.locales, "locale", "locale", "default")
        mapped = rule.get("map")
        if isinstance(mapped, Mapping):
            for key, value in mapped.items():
                check(value, pim.locales, "locale", "locale", "map", str(key))
    mapping = family.get("mapping")
    if isinstance(mapping, Mapping):
        for attribute, entry in mapping.items():
            if isinstance(entry, Mapping):
                where = ("mapping", str(attribute))
                check(entry.get("locale"), pim.locales, "locale", *where, "locale")
                check(entry.get("channel"), pim.channels, "channel", *where, "channel")
    return problems
