"""Why a DAM record is (not) a product asset, and why it goes to a family: for `explain`.

The transformer only says "not a product asset" or "no family matches"; a person needs to
know which selector said no, on which values. This module replays the transformer's
selection (`Transformer.plan`: global `product_asset`, first family whose `match` holds,
that family's `product_asset`) and keeps, for each selector, what it tested and the values
it read. Pure: it reads the record only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from connector.config.expression import expression_paths
from connector.config.model import Config, Selector, SourceConfig
from connector.dam.base import DamAsset
from connector.dam.paths import get_path
from connector.transform.selectors import SelectorError, asset_view, matches


def describe(selector: Selector) -> str:
    """The selector as a person wrote it (`folder "products/packshots"`, `type == "video"`)."""
    if selector.always:
        return "always"
    if selector.property is not None:
        if selector.equals is not None:
            return f"{selector.property} == {_show(selector.equals)}"
        if selector.in_ is not None:
            return f"{selector.property} in {_show(list(selector.in_))}"
        return f"{selector.property} is true"
    if selector.folder is not None:
        return f"folder {_show(selector.folder)}"
    if selector.tag is not None:
        return f"tag {_show(selector.tag)}"
    if selector.filename_regex is not None:
        return f"filename_regex {selector.filename_regex!r}"
    if selector.expression is not None:
        return f"expression {selector.expression!r}"
    return "an empty selector (matches nothing)"


def _read_paths(selector: Selector) -> list[str]:
    """The paths of the flat view the selector reads."""
    if selector.property is not None:
        return [selector.property]
    if selector.folder is not None:
        return ["folder"]
    if selector.tag is not None:
        return ["tags"]
    if selector.filename_regex is not None:
        return ["filename"]
    if selector.expression is not None:
        return expression_paths(selector.expression)
    return []


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class Verdict:
    """One selector applied to one record: what it tested, what it read, the outcome."""

    key: str                                  # config path: product_asset, families.x.match
    selector: str
    holds: bool
    read: dict[str, Any] = field(default_factory=dict)  # path → value (None: absent)
    error: str | None = None                  # the selector could not be evaluated

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "selector": self.selector, "read": self.read}
        if self.error:
            out["error"] = self.error
        return out


def verdict(key: str, selector: Selector, view: dict[str, Any]) -> Verdict:
    read = {path: get_path(view, path) for path in _read_paths(selector)}
    try:
        holds = matches(selector, view)
    except SelectorError as exc:
        return Verdict(key, describe(selector), False, read, exc.reason)
    return Verdict(key, describe(selector), holds, read)


@dataclass
class Selection:
    """The transformer's selection, replayed with reasons."""

    product_asset: Verdict
    families: list[Verdict] = field(default_factory=list)   # `match` of each family tried
    family: str | None = None
    rejected_by: Verdict | None = None        # the selector that made the record skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_asset": self.product_asset.to_dict() | {"holds": self.product_asset.holds},
            "families": [v.to_dict() | {"holds": v.holds} for v in self.families],
            "family": self.family,
            "rejected_by": self.rejected_by.to_dict() if self.rejected_by else None,
        }


def selection(config: Config, source: SourceConfig, asset: DamAsset) -> Selection:
    """Which selector admits or rejects `asset`, in the transformer's order."""
    view = asset_view(asset)
    found = Selection(verdict("product_asset", config.product_asset, view))
    if not found.product_asset.holds:
        found.rejected_by = found.product_asset
        return found
    families = config.families_of(source)
    for family in families:
        tried = verdict(f"families.{family.name}.match", family.match, view)
        found.families.append(tried)
        if tried.holds:
            found.family = family.name
            own = verdict(f"families.{family.name}.product_asset", family.product_asset, view)
            if not own.holds:
                found.rejected_by = own
            return found
    return found
