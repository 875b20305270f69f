"""DAM record → Akeneo asset, one record at a time, never failing the neighbours.

Kept whole (~400 lines): plan, execute and the guard that sorts data problems from
infrastructure failures are one decision path over the same record.

For each record: is it a product asset (global rule), which family (first family of the
source, in config order, whose `match` holds), is it a product asset for that family,
which locale, then one Akeneo value per mapping, converted by the converter of the PIM
attribute's type. Data problems give `Quarantined` (with the field and a reason);
records that are not product assets give `Skipped`. Only infrastructure failures
raise (PIM unreachable or refusing us, structure cache unavailable, Redis down: anything
the structure lookup, option writer or media handler raise that is not about the record's
data), so that the caller retries the chunk.

Two steps, so that dry runs and `explain` can never write: `plan` is side-effect free (it
lists the options to create and the files to upload: `PlannedAsset.effects`), `execute`
carries the plan out (the real run); `transform` is both. The plan and the content hash
live in `connector.transform.plan`, the option writer in `connector.transform.options`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import redis

from connector.config.model import AttributeMapping, Config, FamilyConfig, SourceConfig
from connector.dam.base import BadRecord, DamAsset, Page
from connector.pim.errors import PermanentPimError, PimError
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.transform.codes import asset_code
from connector.transform.converters import (
    ConversionContext,
    ConversionError,
    PendingMedia,
    PendingOption,
    convert,
)
from connector.transform.mapping import detect_locale, product_identifiers, resolve_value
from connector.transform.media import MediaFileHandler
from connector.transform.options import OptionWriter
from connector.transform.plan import MediaSlot, PlannedAsset, content_hash
from connector.transform.result import Quarantined, Skipped, TransformedAsset, TransformOutcome
from connector.transform.selectors import SelectorError, asset_view, matches

log = logging.getLogger(__name__)

StructureLookup = Callable[[str], AssetFamilyStructure]

_T = TypeVar("_T")

NOT_PRODUCT_ASSET = "not a product asset"
NO_FAMILY = "no family matches"
_MAX_RAW_DETAIL = 4000


class _Quarantine(Exception):
    """Internal: stop transforming this record, with this reason."""

    def __init__(self, reason: str, field: str | None = None, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.details = details


class _Passthrough(Exception):
    """Internal: a collaborator (structure cache, option writer, media handler) failed for
    a reason that is not the record's fault; the original is re-raised to the caller."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


def _external(func: Callable[..., Any], *args: Any) -> Any:
    """Call a collaborator: data problems (ConversionError, a missing family) stay data
    problems, anything else is handed to the caller untouched."""
    try:
        return func(*args)
    except (ConversionError, LookupError):
        raise
    except Exception as exc:
        raise _Passthrough(exc) from exc


class Transformer:
    """Turns the DAM records of one source into PIM assets (see module docstring)."""

    def __init__(
        self,
        config: Config,
        source: SourceConfig,
        structures: StructureLookup,
        options: OptionWriter | None = None,
        media: MediaFileHandler | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.structures = structures
        self.options = options
        self.media = media
        self.families = config.families_of(source)
        # relative media links are joined with it, as the adapter joins binaries' URLs
        self.media_base_url = source.media.base_url or (
            source.rest.base_url if source.rest is not None else None
        )
        # options this transformer created (the structure snapshot does not know them yet)
        self._created_options: set[tuple[str, str, str]] = set()

    # ------------------------------------------------------------ public API

    def transform(self, asset: DamAsset) -> TransformedAsset | Quarantined | Skipped:
        """One record's outcome, side effects done (the real run: plan, then execute).
        Raises only for infrastructure failures (PimError other than a rejected
        option/file, Redis errors)."""
        planned = self.plan(asset, keep_binaries=True)
        if not isinstance(planned, PlannedAsset):
            return planned
        return self.execute(planned)

    def plan(
        self, asset: DamAsset, keep_binaries: bool = False
    ) -> PlannedAsset | Quarantined | Skipped:
        """One record's outcome without any side effect: no option created, no file
        uploaded, nothing recorded (a media binary may be downloaded from the DAM to hash
        it). Used as such by dry runs and `explain`; `keep_binaries` keeps those downloads
        for `execute` (the real run). Same quarantine/skip decisions as `transform`."""
        source = asset.source or self.source.name
        dam_id = asset.id if isinstance(asset.id, str) and asset.id.strip() else None
        if dam_id is None:
            return Quarantined(None, source, "missing id", field="id")
        family: list[str | None] = [None]

        def build() -> PlannedAsset | Skipped | Quarantined:
            view = asset_view(asset)
            if not matches(self.config.product_asset, view):
                return Skipped(dam_id, source, NOT_PRODUCT_ASSET)
            family_config = self._family_of(view)
            if family_config is None:
                if self.families and not any(matches(f.product_asset, view) for f in self.families):
                    return Skipped(dam_id, source, NOT_PRODUCT_ASSET)
                return Quarantined(dam_id, source, NO_FAMILY, field="family")
            family[0] = family_config.name
            if not matches(family_config.product_asset, view):
                return Skipped(
                    dam_id, source, f"{NOT_PRODUCT_ASSET} for family {family_config.name}"
                )
            return self._build(asset, dam_id, source, view, family_config, keep_binaries)

        return self._guarded(dam_id, source, lambda: family[0], build)

    def execute(self, planned: PlannedAsset) -> TransformedAsset | Quarantined:
        """Carry out a plan (the real run): create the missing options (rate-limited
        writer), upload the media files (or reuse them), fill the media codes into the
        values. A refused option or file quarantines the record; other failures raise."""
        draft = planned.asset

        def run() -> TransformedAsset:
            try:
                self._create_options(planned.options)
                values = {a: [dict(e) for e in entries] for a, entries in draft.values.items()}
                for slot in planned.media:
                    media = self.media
                    if slot.pending.needs_upload and media is None:  # pragma: no cover
                        raise ConversionError(slot.attribute, "no media handler configured")
                    code = (
                        slot.pending.code
                        if media is None
                        else _external(media.execute, planned.dam_asset, slot.pending)
                    )
                    _put(values, slot.attribute, slot.locale, slot.channel, code)
            finally:
                planned.close()
            return dataclasses.replace(
                draft, values=values, content_hash=content_hash(
                    draft.family, draft.code, values, draft.product_identifiers
                ),
            )

        result = self._guarded(draft.dam_id, draft.source, lambda: draft.family, run)
        assert not isinstance(result, Skipped)
        return result

    def _guarded(
        self,
        dam_id: str,
        source: str,
        family: Callable[[], str | None],
        step: Callable[[], _T],
    ) -> _T | Quarantined:
        """Run one step of a record: data problems become Quarantined, infrastructure
        failures are raised for the task to retry, a bug quarantines only this record."""
        try:
            return step()
        except _Quarantine as q:
            return Quarantined(dam_id, source, q.reason, q.field, family(), q.details)
        except SelectorError as exc:
            return Quarantined(dam_id, source, exc.reason, exc.field, family())
        except ConversionError as exc:
            return Quarantined(dam_id, source, exc.reason, exc.field, family())
        except _Passthrough as passthrough:
            raise passthrough.original from None
        except (PimError, redis.RedisError):
            raise
        except Exception as exc:  # a bug must not take the neighbours down
            log.exception("unexpected error transforming %s/%s", source, dam_id)
            return Quarantined(
                dam_id, source, f"internal error: {type(exc).__name__}: {exc}", None, family()
            )

    def transform_page(self, page: Page) -> TransformOutcome:
        """All records of a page, plus the adapter's BadRecords as quarantined entries."""
        outcome = TransformOutcome()
        for bad in page.bad:
            outcome.quarantined.append(self.quarantine_bad_record(bad))
        for asset in page.assets:
            outcome.add(self.transform(asset))
        return outcome

    def transform_many(self, assets: list[DamAsset]) -> TransformOutcome:
        return self.transform_page(Page(assets=list(assets)))

    @staticmethod
    def quarantine_bad_record(bad: BadRecord) -> Quarantined:
        """A record the adapter could not normalise, with (a bounded copy of) its raw data."""
        try:
            raw_text = json.dumps(bad.raw, sort_keys=True, default=repr, ensure_ascii=False)
        except (TypeError, ValueError):
            raw_text = repr(bad.raw)
        if len(raw_text) > _MAX_RAW_DETAIL:
            raw_text = raw_text[:_MAX_RAW_DETAIL] + "…"
        return Quarantined(
            bad.record_id, bad.source, bad.reason, bad.field, None, {"raw": raw_text}
        )

    # ------------------------------------------------------------ steps

    def _family_of(self, view: dict[str, Any]) -> FamilyConfig | None:
        for family in self.families:
            if matches(family.match, view):
                return family
        return None

    def _structure(self, family: str) -> AssetFamilyStructure:
        try:
            structure: AssetFamilyStructure = _external(self.structures, family)
            return structure
        except LookupError as exc:
            raise _Quarantine(f"asset family {family} does not exist in the PIM", "family") from exc

    def _check_locale(self, locale: str, field: str) -> None:
        allowed = self.config.pim.locales
        if allowed and locale not in allowed:
            raise _Quarantine(f"unknown locale {locale!r} (activated: {', '.join(allowed)})", field)

    def _check_channel(self, channel: str, field: str) -> None:
        allowed = self.config.pim.channels
        if allowed and channel not in allowed:
            raise _Quarantine(f"unknown channel {channel!r} (known: {', '.join(allowed)})", field)

    def _locale_for(
        self,
        attribute: Attribute,
        mapping: AttributeMapping,
        family: FamilyConfig,
        asset_locale: str | None,
    ) -> str | None:
        if not attribute.value_per_locale:
            return None
        locale = mapping.locale or asset_locale or family.locale.default
        if not locale:
            raise _Quarantine(
                f"attribute {attribute.code} is localizable but no locale found", attribute.code
            )
        self._check_locale(locale, attribute.code)
        return locale

    def _channel_for(
        self, attribute: Attribute, mapping: AttributeMapping, family: FamilyConfig
    ) -> str | None:
        if not attribute.value_per_channel:
            return None
        channel = mapping.channel or family.channel
        if not channel:
            raise _Quarantine(
                f"attribute {attribute.code} is scopable but no channel is configured "
                f"(set channel on family {family.name} or on the mapping)",
                attribute.code,
            )
        self._check_channel(channel, attribute.code)
        return channel

    def _build(
        self,
        asset: DamAsset,
        dam_id: str,
        source: str,
        view: dict[str, Any],
        family: FamilyConfig,
        keep_binaries: bool = False,
    ) -> PlannedAsset:
        code = asset_code(dam_id, self.source.code_prefix)
        structure = self._structure(family.name)
        asset_locale = detect_locale(family.locale, view)
        if asset_locale is not None:
            self._check_locale(asset_locale, "locale")

        values: dict[str, list[dict[str, Any]]] = {}
        pending: list[PendingOption] = []
        media: list[PendingMedia] = []
        slots: list[MediaSlot] = []
        deferred: list[tuple[ConversionContext, str | None, str | None]] = []
        for mapping in family.mapping:
            attribute = structure.attribute(mapping.attribute)
            if attribute is None:
                raise _Quarantine(
                    f"attribute {mapping.attribute} does not exist in PIM family {family.name}",
                    mapping.attribute,
                )
            raw = resolve_value(mapping.source, view)
            if raw is None:
                continue  # absent in the record: omitted, never erased
            locale = self._locale_for(attribute, mapping, family, asset_locale)
            channel = self._channel_for(attribute, mapping, family)
            ctx = ConversionContext(
                family=family.name,
                attribute=attribute,
                mapping=mapping,
                asset=asset,
                auto_create_options=(
                    family.auto_create_options
                    if mapping.auto_create_options is None
                    else mapping.auto_create_options
                ),
                known_options=self._known_options(family.name, attribute.code),
                pending_options=pending,
                media=self.media,
                pending_media=media,
                keep_binaries=keep_binaries,
                base_url=self.media_base_url,
            )
            if attribute.type == "media_file":
                deferred.append((ctx, locale, channel))  # download only once all else is valid
                continue
            _put(values, attribute.code, locale, channel, convert(raw, ctx))

        try:
            for ctx, locale, channel in deferred:
                before = len(media)
                _put(values, ctx.attribute.code, locale, channel, _external(convert, True, ctx))
                slots += [MediaSlot(ctx.attribute.code, locale, channel, p) for p in media[before:]]
        except BaseException:
            for p in media:
                p.close()
            raise

        identifiers = product_identifiers(family.product_link, view)
        return PlannedAsset(
            asset=TransformedAsset(
                dam_id=dam_id,
                source=source,
                family=family.name,
                code=code,
                values=values,
                content_hash=content_hash(family.name, code, values, identifiers),
                product_identifiers=identifiers,
                updated=asset.updated,
            ),
            options=list(pending),
            media=slots,
            dam_asset=asset,
        )

    def _known_options(self, family: str, attribute: str) -> frozenset[str]:
        return frozenset(o for f, a, o in self._created_options if (f, a) == (family, attribute))

    def _create_options(self, pending: list[PendingOption]) -> None:
        for option in pending:
            key = (option.family, option.attribute, option.code)
            if key in self._created_options:
                continue
            if self.options is None:
                raise ConversionError(
                    option.attribute,
                    f"option {option.code} is missing and no option writer is available",
                )
            try:
                _external(self.options, option.family, option.attribute, option.code, option.label)
            except _Passthrough as failure:
                if not isinstance(failure.original, PermanentPimError):
                    raise
                raise ConversionError(
                    option.attribute,
                    f"the PIM refused to create option {option.code}: {failure.original}",
                ) from failure.original
            self._created_options.add(key)


def _put(
    values: dict[str, list[dict[str, Any]]],
    attribute: str,
    locale: str | None,
    channel: str | None,
    data: Any,
) -> None:
    """Add one value; a later mapping for the same attribute/locale/channel replaces it."""
    entries = values.setdefault(attribute, [])
    entries[:] = [e for e in entries if (e["locale"], e["channel"]) != (locale, channel)]
    entries.append({"locale": locale, "channel": channel, "data": data})
