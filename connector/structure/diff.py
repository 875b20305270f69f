"""Whether a live PIM value already says what the structure file says, field by field.

Only what the file states is compared; the PIM's echoes (nulls, aliases, number spellings,
case of extensions) are not differences, so re-applying a file writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _strip_none(value: Any) -> Any:
    """Drop null keys recursively: the PIM echoes unset optional keys as null."""
    if isinstance(value, Mapping):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_strip_none(v) for v in value]
    return value


def labels_differ(desired: Mapping[str, str], live: Any) -> bool:
    live = live or {}
    return any(live.get(locale) != label for locale, label in desired.items())


def _number(value: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def same_value(name: str, desired: Any, live: Any) -> bool:
    """Whether the live value of field `name` already says what the file says."""
    if name == "labels":
        return not labels_differ(desired or {}, live)
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
        return bool(aliases.get(desired, desired) == aliases.get(live, live))
    if name in ("value_per_locale", "value_per_channel", "is_required_for_completeness",
                "is_read_only", "is_textarea", "is_rich_text_editor", "decimals_allowed"):
        return bool(desired) == bool(live)
    return bool(desired == live)


def changed_fields(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    return [name for name, value in desired.items() if not same_value(name, value, live.get(name))]
