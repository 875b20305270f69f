"""What the demo config (examples/demo.yaml) must make of a sandbox DAM record, computed
independently of the transform code: the e2e tests compare the PIM with this."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

_GUIDE = re.compile(r"^(?P<sku>.+?)_user_guide_(?P<locale>[a-z]{2}_[A-Z]{2})\.pdf$")


def family_of(rec: dict[str, Any]) -> str | None:
    """The family of a product record; None for non-product (marketing) records."""
    if "product" not in (rec.get("tags") or []) and not str(rec.get("folder")).startswith(
        "products/"
    ):
        return None
    if str(rec.get("folder")).startswith("products/packshots"):
        return "packshots"
    if _GUIDE.search(str(rec.get("filename") or "")):
        return "user_guides"
    if rec.get("type") == "video":
        return "videos"
    return None


def _number(value: Any) -> str:
    """Akeneo number data: a string without a trailing ".0"."""
    return format(Decimal(str(value)).normalize(), "f")


def _v(data: Any, locale: str | None = None) -> list[dict[str, Any]]:
    return [{"locale": locale, "channel": None, "data": data}]


def expected_values(rec: dict[str, Any], dam_url: str) -> dict[str, Any]:
    """Attribute → values (multi-option lists sorted) for a valid product record."""
    family = family_of(rec)
    url = f"{dam_url}/media/{rec['id']}/{rec['filename']}"
    if family == "packshots":
        colors = sorted(
            {"grey" if c.strip().lower() == "gray" else c.strip().lower()
             for c in rec["property_colors"].split(",") if c.strip()}
        )
        return {
            "image_url": _v(url),
            "label": _v(rec["description"], "en_US"),
            "main_colors": _v(colors),
            "tags": _v(sorted(rec["tags"])),
            "disclaimer": _v(rec["property_disclaimer"], "fr_FR"),
            "product_ref": _v(rec["property_sku"]),
            "width": _v(str(rec["width"])),
            "height": _v(str(rec["height"])),
        }
    if family == "user_guides":
        match = _GUIDE.search(rec["filename"])
        assert match is not None
        return {
            "guide_url": _v(url),
            "title": _v(rec["description"], match["locale"]),
            "product_ref": _v(match["sku"]),
        }
    if family == "videos":
        return {
            "video_url": _v(url),
            "title": _v(rec["name"]),
            "duration": _v(_number(rec["duration"])),
            "product_ref": _v(rec["property_sku"]),
        }
    raise AssertionError(f"not a product record: {rec['id']}")


def normalise(values: dict[str, Any]) -> dict[str, Any]:
    """PIM values without read-only extras, multi-option lists sorted."""
    out: dict[str, Any] = {}
    for attribute, entries in values.items():
        out[attribute] = [
            {"locale": e.get("locale"), "channel": e.get("channel"),
             "data": sorted(e["data"]) if isinstance(e.get("data"), list) else e.get("data")}
            for e in entries
        ]
    return out


FAMILIES = ("packshots", "user_guides", "videos")


def pim_assets(pim: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """code → (family, normalised values) of everything the sandbox PIM holds."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for family in FAMILIES:
        for asset in pim.dump_assets(family):
            assert asset["code"] not in out, f"{asset['code']} in two families"
            out[asset["code"]] = (family, normalise(asset.get("values") or {}))
    return out


def check_pim_matches_dam(dam: Any, pim: Any, dam_url: str) -> dict[str, Any]:
    """Every valid product record is in the PIM, in its family, with exactly the expected
    values; nothing else is, except bad records (which the caller checks were reported)."""
    from connector.transform.codes import asset_code

    bad_ids = {b["id"] for b in dam.bad_records()}
    expected: dict[str, tuple[str, dict[str, Any]]] = {}
    non_product: set[str] = set()
    for dam_id in dam.ids():
        rec = dam.record(dam_id)
        family = family_of(rec)
        if family is None:
            non_product.add(asset_code(dam_id))
        elif dam_id not in bad_ids:
            expected[asset_code(dam_id)] = (family, expected_values(rec, dam_url))
    landed = pim_assets(pim)
    missing = sorted(set(expected) - set(landed))
    assert not missing, f"{len(missing)} product assets missing from the PIM: {missing[:5]}"
    assert not non_product & set(landed), "non-product assets reached the PIM"
    bad_codes = {asset_code(b) for b in bad_ids}
    unexpected = set(landed) - set(expected) - bad_codes
    assert not unexpected, f"unexpected assets in the PIM: {sorted(unexpected)[:5]}"
    for code, (family, values) in expected.items():
        got_family, got = landed[code]
        assert got_family == family, code
        if family == "user_guides":
            media = got.pop("file", None)
            assert media and media[0]["data"], f"{code}: no uploaded file"
        assert got == values, f"{code}: {got} != {values}"
    return {"expected": len(expected), "landed": len(landed), "bad": bad_ids}
