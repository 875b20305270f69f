"""`explain`: everything known about one DAM asset, read-only.

The DAM record (by id, or with `scan` found in the listing of a DAM without a single-asset
endpoint, bounded by `scan_limit`), what the transform makes of it now (planned: nothing is
written), which selector rejected it when it is skipped (`connector.transform.why`), the
payload a sync would send and its value-level differences with the PIM (GET only), and
what the connector last did with it (push result, dead letter, quarantine).
"""

from __future__ import annotations

from typing import Any

from connector.dam.base import BadRecord, DamAsset, DamSource, NoSingleGetError
from connector.pipeline.dryrun import value_differences
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.fetch import get_current
from connector.transform.plan import PlannedAsset
from connector.transform.result import Quarantined, Skipped, TransformedAsset
from connector.transform.why import selection

SCAN_LIMIT = 10_000  # records of the listing `explain --scan` reads at most, by default


def find_in_listing(
    dam: DamSource, dam_id: str, limit: int
) -> tuple[DamAsset | BadRecord | None, int, bool]:
    """The record of `dam_id` from a full listing, read until found or `limit` records:
    (record or None, records read, whether the listing was read to its end)."""
    scanned = 0
    for page in dam.changed_since(None):
        candidates: list[tuple[str | None, DamAsset | BadRecord]] = [
            *((a.id, a) for a in page.assets),
            *((b.record_id, b) for b in page.bad),
        ]
        for record_id, record in candidates:
            scanned += 1
            if record_id == dam_id:
                return record, scanned, False
            if scanned >= limit:
                return None, scanned, False
    return None, scanned, True


def _lookup(
    s: Services, source: str, dam_id: str, scan: bool, scan_limit: int, out: dict[str, Any]
) -> DamAsset | BadRecord | None:
    """The DAM's record, by id or by scanning the listing; problems go to `out`."""
    dam = s.source(source)
    try:
        try:
            return get_current(dam, dam_id)
        except NoSingleGetError as exc:
            if not scan:
                out["dam_error"] = (
                    f"{exc}, or pass --scan to look the asset up in the listing"
                )
                return None
        record, scanned, complete = find_in_listing(dam, dam_id, scan_limit)
    except Exception as exc:  # the DAM being down must not hide the rest
        out["dam_error"] = f"{type(exc).__name__}: {exc}"
        return None
    out["scan"] = {"scanned": scanned, "limit": scan_limit, "complete": complete}
    if record is None:
        if complete:
            out["not_found"] = (
                f"DAM asset {dam_id} not found in source {source} (scanned all {scanned} "
                "records of the listing)"
            )
        else:
            out["not_found"] = (
                f"DAM asset {dam_id} not found in the first {scanned} records of source "
                f"{source}'s listing (raise --scan-limit, or set "
                f"sources.{source}.rest.get_path)"
            )
    return record


def _compare_with_pim(s: Services, asset: TransformedAsset, out: dict[str, Any]) -> None:
    """The payload and its value-level differences with the PIM's asset (a GET)."""
    out["payload"] = asset.payload()
    try:
        existing = s.client.get_asset(asset.family, asset.code)
    except Exception as exc:  # the PIM being down must not hide the rest
        out["pim_error"] = f"{type(exc).__name__}: {exc}"
        return
    out["pim"] = {
        "exists": existing is not None,
        "differences": (
            value_differences(asset.values, existing.get("values") or {})
            if existing is not None else []
        ),
    }


def explain(
    source: str,
    dam_id: str,
    *,
    scan: bool = False,
    scan_limit: int = SCAN_LIMIT,
    services: Services | None = None,
) -> dict[str, Any]:
    """Everything known about one DAM asset (see the module docstring). `found` says
    whether the DAM has it; `not_found`/`dam_error` say why not, with the key to change."""
    s = services or get_services()
    source_config = s.source_config(source)
    out: dict[str, Any] = {"source": source, "dam_id": dam_id}
    current = _lookup(s, source, dam_id, scan, scan_limit, out)
    asset: DamAsset | None = None
    if isinstance(current, BadRecord):
        out["dam_unreadable"] = f"the DAM record cannot be read: {current.reason}"
    elif current is not None:
        asset = current
    elif "dam_error" not in out and "not_found" not in out:
        out["not_found"] = f"DAM asset {dam_id} not found in source {source}"
    out["found"] = current is not None
    out["dam"] = asset.to_dict() if asset is not None else None
    if asset is not None:
        _transform(s, source, asset, out)
        picked = selection(s.config, source_config, asset)
        out["selection"] = picked.to_dict()
        out["rejected_by"] = picked.rejected_by.to_dict() if picked.rejected_by else None
    pushed_state = s.assets.get(source, dam_id)
    out["last_push"] = vars(pushed_state) if pushed_state is not None else None
    letter = s.dead_letters.get(source, dam_id)
    out["dead_letter"] = vars(letter) if letter is not None else None
    out["quarantine"] = s.quarantine.get(source, dam_id)
    return out


def _transform(s: Services, source: str, asset: DamAsset, out: dict[str, Any]) -> None:
    """Plan the transform (never execute it: no option created, no file uploaded)."""
    try:
        result: PlannedAsset | TransformedAsset | Quarantined | Skipped = (
            s.transformer(source).plan(asset)
        )
    except Exception as exc:  # e.g. the PIM (structure) is unreachable
        out["transform_error"] = f"{type(exc).__name__}: {exc}"
        return
    if isinstance(result, PlannedAsset):
        out["planned_effects"] = result.effects()
        result.close()
        result = result.asset
    if isinstance(result, TransformedAsset):
        out["transformed"] = result.to_dict()
        pushed = s.assets.get(source, asset.id)
        out["would_push"] = pushed is None or pushed.content_hash != result.content_hash
        _compare_with_pim(s, result, out)
    elif isinstance(result, Quarantined):
        out["transformed"] = {"quarantined": result.to_dict()}
    elif isinstance(result, Skipped):
        out["transformed"] = {"skipped": result.reason}
