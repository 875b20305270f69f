"""Linking operations: link freshly pushed assets, retry pending links, list them.

Every read-merge-write of products happens under their locks (`LinkState.acquire`); a
failure is a pending link and a note, never an asset failure.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from connector.config.model import ProductLinkConfig
from connector.pim.errors import PimError
from connector.pipeline.linking.state import LOCK_TTL, LOCK_WAIT, LinkOp, LinkState
from connector.pipeline.services import Services, get_services
from connector.pipeline.steps.common import PIM_BULK_LIMIT
from connector.transform.result import TransformedAsset

log = logging.getLogger(__name__)

NOTES_KEPT = 20
OK_STATUSES = frozenset({200, 201, 204})


class LinkOwner(Protocol):
    """Who the linking is done for: a run (run_id set) or a real-time sync (run_id None)."""

    @property
    def source(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...


@dataclass(frozen=True)
class SourceOnly:
    """An owner outside any run (the reconcile, a CLI retry): notes go to the log."""

    source: str
    run_id: str | None = None


def link_assets(
    s: Services, owner: LinkOwner, family: str, assets: Sequence[TransformedAsset]
) -> None:
    """Link freshly pushed assets to their products (direct mode only); unlink the
    products they no longer name. Failures are notes and pending links, never asset
    failures: the assets themselves are in the PIM."""
    link = _direct_link(s, family)
    if link is None or not assets:
        return
    attribute = str(link.product_attribute)
    state = LinkState(s.redis, s.keys)
    source = owner.source
    before = state.previous(source, [a.dam_id for a in assets])
    ops: list[LinkOp] = []
    forgotten: list[LinkOp] = []
    now: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for asset in assets:
        wanted = asset.product_identifiers
        for identifier in wanted:
            ops.append(LinkOp(family, attribute, identifier, asset.code, asset.dam_id))
        old = before.get(asset.dam_id) or {}
        old_attribute = str(old.get("attribute") or attribute)
        old_code = str(old.get("code") or asset.code)
        for identifier in old.get("identifiers") or []:
            if identifier in wanted and (old_attribute, old_code) == (attribute, asset.code):
                continue
            gone = LinkOp(family, old_attribute, identifier, old_code, asset.dam_id, "unlink")
            (ops if link.unlink_previous else forgotten).append(gone)
        if wanted or old:
            now[asset.dam_id] = (attribute, asset.code, wanted)
    if forgotten:
        state.drop_pending(source, forgotten)  # a pending link nobody wants any more
    if ops:
        done, failed = _apply(s, state, ops)
        state.drop_pending(source, done)
        state.put_pending(source, failed)
        _note_failures(s, owner, failed)
    state.remember(source, now)


def retry_pending(s: Services, owner: LinkOwner) -> dict[str, int]:
    """Try every pending link of the owner's source again (end of a run, reconcile).

    Entries whose family no longer links directly (config changed) or whose asset was
    deleted from the PIM are dropped: nobody wants them any more.
    """
    source = owner.source
    state = LinkState(s.redis, s.keys)
    counts = {"retried": 0, "done": 0, "pending": 0, "dropped": 0}
    if state.pending_count(source) == 0:
        return counts
    seen: set[str] = set()
    failures: list[tuple[LinkOp, str]] = []
    for page in state.scan_pending(source):
        page = [(f, p) for f, p in page if f not in seen]  # HSCAN may repeat an entry
        seen.update(f for f, _ in page)
        states = s.assets.get_many(source, sorted({p.dam_id for _, p in page}))
        ops: list[LinkOp] = []
        drop: list[LinkOp] = []
        read: dict[str, str] = {}
        for field_, entry in page:
            link = _direct_link(s, entry.family)
            pushed = states.get(entry.dam_id)
            deleted = pushed is not None and pushed.status == "deleted"
            if link is None or link.product_attribute != entry.attribute or (
                deleted and entry.action == "link"
            ):
                drop.append(entry.op())
            else:
                ops.append(entry.op())
            read[field_] = entry.to_json()
        counts["dropped"] += len(drop)
        state.drop_pending(source, drop, expected=read)
        if not ops:
            continue
        counts["retried"] += len(ops)
        # HSCAN's order is the hash table's: sort so that a product's collection gets its
        # pending codes in one stable order (the order they were first asked for is lost)
        ops.sort(key=lambda op: (op.attribute, op.identifier, op.code))
        done, failed = _apply(s, state, ops)
        counts["done"] += len(done)
        counts["pending"] += len(failed)
        state.drop_pending(source, done, expected=read)
        state.put_pending(source, failed)
        failures += failed
    if counts["retried"]:
        log.info("%s: pending product links retried: %s", source, json.dumps(counts))
    _note_failures(s, owner, failures, retry=True)
    return counts


def retry_after_run(s: Services, record: LinkOwner, dry_run: bool = False) -> None:
    """End of a run: the source's pending links get another try (never in a dry run).
    A failure here is a note: the links stay pending and the run ends as it would."""
    if dry_run or getattr(record, "dry_run", False):
        return
    try:
        retry_pending(s, record)
    except Exception as exc:  # PIM or Redis trouble: the next run tries again
        log.warning("%s: pending product links not retried: %s", record.source, exc)
        if record.run_id is not None:
            try:
                s.runs.add_error(record.run_id, f"pending product links not retried: {exc}",
                                 fatal=False)
            except Exception:
                log.debug("could not note the failed retry", exc_info=True)


def pending_links(
    source: str, limit: int | None = None, *, services: Services | None = None
) -> list[dict[str, Any]]:
    """The source's pending links (oldest first): product, asset, action, why, since."""
    s = services or get_services()
    s.source_config(source)  # unknown source → a clear error
    state = LinkState(s.redis, s.keys)
    entries = [asdict(p) for page in state.scan_pending(source) for _, p in page]
    entries.sort(key=lambda e: (e["since"], e["identifier"], e["code"]))
    return entries if limit is None else entries[:limit]


def _direct_link(s: Services, family: str) -> ProductLinkConfig | None:
    try:
        link = s.config.family(family).product_link
    except KeyError:
        return None
    if link.mode != "direct" or not link.product_attribute:
        return None
    return link


def _apply(
    s: Services, state: LinkState, ops: Sequence[LinkOp]
) -> tuple[list[LinkOp], list[tuple[LinkOp, str]]]:
    """Make `ops` in the PIM: per attribute, ≤100 products at a time, each group under the
    products' locks. Returns the ops done and the ops still to do (with the reason)."""
    done: list[LinkOp] = []
    failed: list[tuple[LinkOp, str]] = []
    grouped: dict[str, dict[str, list[LinkOp]]] = {}
    for op in ops:
        grouped.setdefault(op.attribute, {}).setdefault(op.identifier, []).append(op)
    for attribute, by_product in grouped.items():
        identifiers = sorted(by_product)
        for i in range(0, len(identifiers), PIM_BULK_LIMIT):
            chunk = {p: by_product[p] for p in identifiers[i : i + PIM_BULK_LIMIT]}
            ok, not_ok = _apply_chunk(s, state, attribute, chunk)
            done += ok
            failed += not_ok
    return done, failed


def _apply_chunk(
    s: Services, state: LinkState, attribute: str, by_product: dict[str, list[LinkOp]]
) -> tuple[list[LinkOp], list[tuple[LinkOp, str]]]:
    """One locked read-merge-write of ≤100 products."""
    every = [op for ops in by_product.values() for op in ops]
    keys = state.lock_keys(list(by_product))
    token = uuid.uuid4().hex
    if not state.acquire(keys, token):
        why = f"the product was being linked by another process for over {LOCK_WAIT:g}s"
        return [], [(op, why) for op in every]
    done: list[LinkOp] = []
    failed: list[tuple[LinkOp, str]] = []
    try:
        products = s.client.get_products(list(by_product))
        lines: list[dict[str, Any]] = []
        written: list[str] = []
        for identifier, ops in by_product.items():
            product = products.get(identifier)
            if product is None:
                for op in ops:
                    if op.action == "unlink":
                        done.append(op)  # nothing to take out of a product that is not there
                    else:
                        failed.append((op, f"product {identifier!r} not found"))
                continue
            current = _collection(product, attribute)
            removed = {op.code for op in ops if op.action == "unlink"}
            merged = [c for c in current if c not in removed]
            merged += [op.code for op in ops if op.action == "link" and op.code not in merged]
            if merged == current:
                done += ops
                continue
            written.append(identifier)
            lines.append({"identifier": identifier,
                          "values": {attribute: [{"locale": None, "scope": None,
                                                  "data": merged}]}})
        if lines:
            if not state.renew(keys, token):
                why = f"the product lock expired before the write (over {LOCK_TTL:g}s)"
                failed += [(op, why) for p in written for op in by_product[p]]
                return done, failed
            results = s.client.patch_products(lines)
            for identifier, (status, message) in _statuses(written, results).items():
                if status in OK_STATUSES:
                    done += by_product[identifier]
                else:
                    why = f"the PIM refused the product write: {status} {message}".strip()
                    failed += [(op, why) for op in by_product[identifier]]
    except PimError as exc:
        return [], [(op, f"product linking failed: {exc}") for op in every]
    finally:
        state.release(keys, token)
    return done, failed


def _collection(product: dict[str, Any], attribute: str) -> list[str]:
    """The product's non-localised, non-scoped codes of `attribute` (empty when none)."""
    for value in (product.get("values") or {}).get(attribute) or []:
        if value.get("locale") is None and value.get("scope") is None:
            return [str(c) for c in value.get("data") or []]
    return []


def _statuses(
    identifiers: list[str], results: list[dict[str, Any]]
) -> dict[str, tuple[int, str]]:
    """identifier → (status, message) of its PATCH line (by identifier, else line number);
    a line the PIM did not answer counts as refused."""
    out: dict[str, tuple[int, str]] = {
        i: (0, "no answer for this product in the PIM's response") for i in identifiers
    }
    for result in results:
        identifier = result.get("identifier")
        if not isinstance(identifier, str):
            line = result.get("line")
            if isinstance(line, int) and 1 <= line <= len(identifiers):
                identifier = identifiers[line - 1]
        if isinstance(identifier, str) and identifier in out:
            out[identifier] = (int(result.get("status_code") or 0),
                               str(result.get("message") or ""))
    return out


def _note_failures(
    s: Services, owner: LinkOwner, failed: Sequence[tuple[LinkOp, str]], retry: bool = False
) -> None:
    """Failed links are pending, not lost: say so once per product and reason (capped)."""
    if not failed:
        return
    reasons: dict[tuple[str, str], int] = {}
    for op, why in failed:
        key = (op.identifier, why)
        reasons[key] = reasons.get(key, 0) + 1
    lines = [
        f"{n} product link(s) to {identifier!r} pending: {why}"
        for (identifier, why), n in list(reasons.items())[:NOTES_KEPT]
    ]
    if len(reasons) > NOTES_KEPT:
        lines.append(f"... and {len(reasons) - NOTES_KEPT} more products with pending links")
    prefix = "still pending after a retry: " if retry else ""
    for line in lines:
        if owner.run_id is not None:
            s.runs.add_error(owner.run_id, prefix + line, fatal=False)
        else:
            log.warning("%s: %s%s", owner.source, prefix, line)
