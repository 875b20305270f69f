"""Selector evaluation: is this DAM asset a product asset, does it belong to that family?

Selectors, expressions and property mappings all read one *flat view* of the asset
(`asset_view`): the record's own `properties`, with the adapter's lifted fields `id`,
`filename`, `folder` and `tags` laid over them (the adapter's normalised values win,
because the selectors are written against them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

from connector.config.model import Selector
from connector.dam.base import DamAsset
from connector.dam.paths import get_path

__all__ = ["SelectorError", "asset_view", "get_path", "matches"]

Predicate = Callable[[Mapping[str, Any]], bool]

# Strings that mean "no" when a boolean property is tested for truth.
_FALSE_STRINGS = frozenset({"", "0", "false", "no", "n", "off", "none", "null"})


class SelectorError(Exception):
    """A selector could not be evaluated on this record (bad regex, failing expression)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def asset_view(asset: DamAsset) -> dict[str, Any]:
    """The flat mapping that selectors, expressions and mappings read."""
    view: dict[str, Any] = dict(asset.properties)
    view["id"] = asset.id
    if asset.filename is not None or "filename" not in view:
        view["filename"] = asset.filename
    if asset.folder is not None or "folder" not in view:
        view["folder"] = asset.folder
    if asset.tags or "tags" not in view:
        view["tags"] = list(asset.tags)
    return view


@functools.lru_cache(maxsize=512)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compiled `pattern`; SelectorError when the pattern itself is invalid."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise SelectorError(f"invalid regular expression {pattern!r}: {exc}") from exc


def regex_group(match: re.Match[str], group: str | int | None, preferred: str | None) -> Any:
    """The group to keep: `group` when given, else `preferred` (named) if the pattern has
    it, else group 1 if there is one, else the whole match."""
    if group is not None:
        key: str | int = int(group) if isinstance(group, str) and group.isdigit() else group
        try:
            return match.group(key)
        except IndexError as exc:
            raise SelectorError(f"regex {match.re.pattern!r} has no group {group!r}") from exc
    if preferred and preferred in match.re.groupindex:
        return match.group(preferred)
    if match.re.groups >= 1:
        return match.group(1)
    return match.group(0)


# The expression compiler lives in connector.config.expression (config engineer). It is
# imported lazily so that this module works (and its tests run) without it; tests can
# replace `compile_expression` with a stub.
def compile_expression(text: str) -> Predicate:
    from connector.config.expression import compile_expression as compile_

    return compile_(text)


_expressions: dict[str, Predicate] = {}


def _expression(text: str) -> Predicate:
    predicate = _expressions.get(text)
    if predicate is None:
        try:
            predicate = compile_expression(text)
        except Exception as exc:
            raise SelectorError(f"invalid expression {text!r}: {exc}") from exc
        _expressions[text] = predicate
    return predicate


def clear_expression_cache() -> None:
    _expressions.clear()


def truthy(value: Any) -> bool:
    """Truth of a DAM value: strings like "false"/"no"/"0" count as false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _normalise_folder(folder: str) -> str:
    return "/".join(p for p in folder.replace("\\", "/").split("/") if p)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().casefold() == b.strip().casefold()
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def matches(selector: Selector, view: Mapping[str, Any]) -> bool:
    """Does the asset (its flat view) satisfy `selector`? An empty selector matches nothing.

    - `property`: with `equals`, the value equals it (strings: trimmed, case-insensitive;
      a list value matches when one element does); with `in_`, the value is one of them;
      otherwise the value is truthy ("false", "no", "0", "" are false).
    - `folder`: the asset's folder is that folder or lies below it (path segments).
    - `tag`: the asset carries the tag (case-insensitive).
    - `filename_regex`: `re.search` on the file name.
    - `expression`: the compiled expression returns true for the view.
    """
    if selector.always:
        return True
    if selector.property is not None:
        value = get_path(view, selector.property)
        candidates = list(value) if isinstance(value, list | tuple) else [value]
        if selector.equals is not None:
            return any(_same(v, selector.equals) for v in candidates)
        if selector.in_ is not None:
            return any(_same(v, option) for v in candidates for option in selector.in_)
        return truthy(value)
    if selector.folder is not None:
        folder = view.get("folder")
        if not isinstance(folder, str):
            return False
        wanted = _normalise_folder(selector.folder)
        actual = _normalise_folder(folder)
        return wanted == "" or actual == wanted or actual.startswith(wanted + "/")
    if selector.tag is not None:
        tags = view.get("tags")
        if isinstance(tags, str):
            tags = re.split(r"[,;]", tags)
        if not isinstance(tags, list | tuple):
            return False
        wanted_tag = selector.tag.strip().casefold()
        return any(isinstance(t, str) and t.strip().casefold() == wanted_tag for t in tags)
    if selector.filename_regex is not None:
        filename = view.get("filename")
        if not isinstance(filename, str):
            return False
        return compile_regex(selector.filename_regex).search(filename) is not None
    if selector.expression is not None:
        predicate = _expression(selector.expression)
        try:
            return bool(predicate(view))
        except Exception as exc:
            raise SelectorError(
                f"expression {selector.expression!r} failed on this record: {exc}"
            ) from exc
    return False
