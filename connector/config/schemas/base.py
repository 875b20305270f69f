"""The base schema: unknown keys are errors (with a "did you mean"), type errors read plainly.

Also the two cross-key checks most sections share: "give exactly one of" and per-`type` keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError, validates_schema

# A section whose keys depend on one of them (`type`, `mode`, `action`): that key, its
# default, per value (required keys, optional keys), and how to name it in messages.
Variants = tuple[str, str, Mapping[str, tuple[set[str], set[str]]], str]


def suggest_key(key: str, known: Iterable[str], scope: str = "") -> str:
    """The message for an unknown key: the closest known key, else the whole list
    (`scope` says which variant the list is for: ` for pagination type "cursor"`)."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key (allowed{scope}: " + ", ".join(sorted(known)) + ")"


class StrictSchema(Schema):
    """Base: unknown keys are errors (with a suggestion), type errors read plainly."""

    class Meta:
        unknown = EXCLUDE

    error_messages: ClassVar[dict[str, str]] = {  # type: ignore[misc]
        "type": "must be a mapping",
        "unknown": "unknown key",
    }

    # set by sections whose keys depend on a `type`-like key (see `Variants`)
    variants: ClassVar[Variants | None] = None

    def known_keys(self) -> set[str]:
        return {f.data_key or name for name, f in self.load_fields.items()}

    def variant_keys(self, original: Mapping[Any, Any]) -> tuple[set[str], str]:
        """The keys valid for the variant `original` chose (every key when the section has
        no variants or names an unknown one), and the words naming that variant."""
        known = self.known_keys()
        if self.variants is None:
            return known, ""
        kind_key, default, allowed, label = self.variants
        kind = original.get(kind_key, default)
        if not isinstance(kind, str) or kind not in allowed:
            return known, ""
        tied = set().union(*(r | o for r, o in allowed.values()))
        required, optional = allowed[kind]
        return (known - tied) | required | optional, f' for {label} "{kind}"'

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _reject_unknown_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        known = self.known_keys()
        valid, scope = self.variant_keys(original_data)
        errors = {
            str(key): [suggest_key(str(key), valid, scope)]
            for key in original_data
            if str(key) not in known
        }
        if errors:
            raise ValidationError(errors)


def given_keys(original: Any, *keys: str) -> list[str]:
    """Which of `keys` the user wrote (on the raw mapping, before defaults)."""
    if not isinstance(original, Mapping):
        return []
    return [k for k in keys if k in original]


def check_type_keys(
    original: Any,
    kind_key: str,
    default_kind: str,
    allowed: Mapping[str, tuple[set[str], set[str]]],
    label: str,
) -> None:
    """Required keys per `type`, and keys that type does not use."""
    if not isinstance(original, Mapping):
        return
    kind = original.get(kind_key, default_kind)
    if not isinstance(kind, str) or kind not in allowed:
        return
    required, optional = allowed[kind]
    all_keys = set().union(*(r | o for r, o in allowed.values()))
    errors: dict[str, list[str]] = {}
    for key in sorted(required):
        if key not in original:
            errors[key] = [f'required for {label} "{kind}"']
    for key in original:
        if key in all_keys and key not in required and key not in optional:
            errors[str(key)] = [f'not used by {label} "{kind}"']
    if errors:
        raise ValidationError(errors)
