"""Reading raw values out of a DAM asset: mapped properties, locale, product identifiers.

All functions read the flat view of `selectors.asset_view`. A mapped property that is
absent (or null) in the record yields None, and the transformer then *omits* the value
instead of erasing it in the PIM (``data: null``): DAM APIs often leave out empty fields,
and partial records (webhook payloads, sparse listings) must not wipe what the PIM has.
Erasing on purpose is done with a `constant` of the attribute's empty value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.config.model import LocaleRule, ProductLinkConfig, ValueSource
from connector.transform.selectors import SelectorError, compile_regex, get_path, regex_group


def resolve_value(source: ValueSource, view: Mapping[str, Any]) -> Any:
    """The raw DAM value a mapping points at, or None when the record has none.

    - `property` (+ optional `regex`): the value at the dotted path; with a regex, the
      chosen group of the first match in its text (no match → None).
    - `regex` without `property`: applied to the file name (`filename`).
    - `constant`: used when nothing else is configured, and as a default when the property
      (or the regex) yields nothing.
    """
    value: Any = None
    if source.property is not None:
        value = get_path(view, source.property)
    elif source.regex is not None:
        value = view.get("filename")
    if source.regex is not None and value is not None:
        value = _regex_value(source.regex, source.group, value)
    if value is None and source.constant is not None:
        value = source.constant
    return value


def _regex_value(pattern: str, group: str | int | None, value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        raise SelectorError(f"regex {pattern!r} needs a text value, got {type(value).__name__}")
    match = compile_regex(pattern).search(str(value))
    if match is None:
        return None
    if match.re.groups == 0 and str(group) == "1":
        return match.group(0)  # the default group of a pattern without groups
    return regex_group(match, group, None)


def detect_locale(rule: LocaleRule, view: Mapping[str, Any]) -> str | None:
    """The locale the DAM gives for this asset (after `rule.map`), or None.

    `property` is read first, then `filename_regex` (group "locale", else group 1). The
    rule's `default` is *not* applied here: it only fills localizable attributes.
    """
    raw: Any = None
    if rule.property is not None:
        raw = get_path(view, rule.property)
        if isinstance(raw, str) and not raw.strip():
            raw = None
    if raw is None and rule.filename_regex is not None:
        filename = view.get("filename")
        if isinstance(filename, str):
            match = compile_regex(rule.filename_regex).search(filename)
            if match is not None:
                raw = regex_group(match, None, "locale")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise SelectorError(f"locale must be text, got {type(raw).__name__} {raw!r}", "locale")
    text = raw.strip()
    return rule.map.get(text, rule.map.get(text.lower(), text))


def product_identifiers(link: ProductLinkConfig, view: Mapping[str, Any]) -> tuple[str, ...]:
    """The product identifier(s) this asset belongs to (deduplicated, in order).

    `identifier_property` may hold one identifier or a list; `identifier_regex` is applied
    to that property's text when both are given, otherwise to the file name, and keeps
    the group "identifier" (else group 1, else the whole match).
    """
    values: list[Any] = []
    if link.identifier_property is not None:
        raw = get_path(view, link.identifier_property)
        if isinstance(raw, list | tuple):
            values.extend(raw)
        elif raw is not None:
            values.append(raw)
    elif link.identifier_regex is not None:
        values.append(view.get("filename"))
    found: list[str] = []
    for value in values:
        if value is None or isinstance(value, dict | list | bool):
            continue
        text = str(value).strip()
        if link.identifier_regex is not None:
            match = compile_regex(link.identifier_regex).search(text)
            if match is None:
                continue
            text = str(regex_group(match, None, "identifier") or "").strip()
        if text and text not in found:
            found.append(text)
    return tuple(found)
