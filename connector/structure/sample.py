"""`connector check` over sampled DAM records: what the config makes of real data.

A typo in a property path (`metadata.field.sku`) passes every static check and makes each
asset silently lack the value (absent properties are omitted, never erased). So `check`
samples each source (`connector.structure.dam_probe`), then counts how many records pass
the product filter and which family each resolves to, files every property path the config
reads that no sampled record has (with the closest paths that do exist), and plans one
fully transformed example payload per family — planning only (`Transformer.plan`): no
option created, no file uploaded, nothing recorded; a media file is at most downloaded to
hash it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.config.model import Config, FamilyConfig, SourceConfig
from connector.dam.base import DamAsset
from connector.dam.paths import has_path
from connector.structure.check import CheckReport, Finding, _mapping_key
from connector.structure.dam_probe import SourceSample, probe_source
from connector.transform.plan import PlannedAsset
from connector.transform.result import Quarantined
from connector.transform.selectors import SelectorError, asset_view, matches

if TYPE_CHECKING:
    from connector.pim.structure import AssetFamilyStructure
    from connector.transform.transformer import Transformer

DEFAULT_SAMPLE = 200
_EXAMPLE_TRIES = 3          # records planned per family before giving up on an example
NO_FAMILY = "(no family)"

TransformerFactory = Callable[[SourceConfig, SourceSample], "Transformer | None"]


@dataclass(frozen=True)
class _PathRead:
    """One property path the config reads, the key that sets it, and on which records."""

    key: str
    path: str
    sources: tuple[str, ...]       # sources whose records it is read on
    raw: bool = False              # on the raw record (adapter fields), not the flat view


def probe_sources(
    config: Config,
    report: CheckReport,
    sample: int = DEFAULT_SAMPLE,
    transformer: TransformerFactory | None = None,
) -> None:
    """Probe every source, analyse its sample, add findings and `report.sources`.

    `transformer` builds the planning transformer of a source (None: no example payloads,
    e.g. when the PIM is unreachable)."""
    samples = [probe_source(source, sample) for source in config.sources]
    report.sources = {}
    try:
        for source, probed in zip(config.sources, samples, strict=True):
            report.findings += probed.findings
            summary = probed.to_dict()
            if probed.assets:
                counts, candidates = _classify(config, source, probed.assets)
                summary.update(counts)
                build = transformer(source, probed) if transformer is not None else None
                if build is not None:
                    examples, findings = _examples(source, candidates, build)
                    summary["examples"] = examples
                    report.findings += findings
            report.sources[source.name] = summary
        report.findings += _absent_paths(config, {s.name: s for s in samples})
    finally:
        for probed in samples:
            probed.close()


# ---------------------------------------------------------------- product filter, families


def _classify(
    config: Config, source: SourceConfig, assets: list[DamAsset]
) -> tuple[dict[str, Any], dict[str, list[DamAsset]]]:
    """How many sampled records are product assets, which family each resolves to, and
    the first few records of each family (the candidates for its example payload)."""
    families = config.families_of(source)
    counts: Counter[str] = Counter()
    firsts: dict[str, list[DamAsset]] = {}
    product = 0
    errors: Counter[str] = Counter()
    for asset in assets:
        view = asset_view(asset)
        try:
            if not matches(config.product_asset, view):
                continue
            product += 1
            family = next((f for f in families if matches(f.match, view)), None)
            if family is not None and not matches(family.product_asset, view):
                continue
        except SelectorError as exc:
            errors[exc.reason] += 1
            continue
        name = family.name if family is not None else NO_FAMILY
        counts[name] += 1
        if family is not None and len(firsts.setdefault(name, [])) < _EXAMPLE_TRIES:
            firsts[name].append(asset)
    out: dict[str, Any] = {
        "product_assets": product,
        "families": {f.name: counts.get(f.name, 0) for f in families},
    }
    if counts.get(NO_FAMILY):
        out["families"][NO_FAMILY] = counts[NO_FAMILY]
    if errors:
        out["selector_errors"] = dict(errors)
    return out, firsts


# ---------------------------------------------------------------- example payloads


def _examples(
    source: SourceConfig,
    candidates: dict[str, list[DamAsset]],
    transformer: Transformer,
) -> tuple[dict[str, Any], list[Finding]]:
    """Per family, one planned payload: the first candidate record that plans. A family
    whose candidates are all quarantined is a problem (with the first reason)."""
    examples: dict[str, Any] = {}
    findings: list[Finding] = []
    attributes = {f.name: {m.attribute for m in f.mapping} for f in transformer.families}
    for family, assets in candidates.items():
        quarantined: list[Quarantined] = []
        for asset in assets:
            try:
                planned = transformer.plan(asset)
            except Exception as exc:  # the PIM or a media download failed: say so, go on
                findings.append(Finding(
                    f"families.{family}",
                    f"cannot plan an example payload from record {asset.id!r} of source "
                    f"{source.name}: {type(exc).__name__}: {exc}",
                    "warning",
                ))
                break
            if isinstance(planned, PlannedAsset):
                examples[family] = {
                    **{k: v for k, v in planned.asset.to_dict().items()
                       if k in ("dam_id", "code", "values", "product_identifiers")},
                    "effects": [e["text"] for e in planned.effects()],
                }
                planned.close()
                break
            if isinstance(planned, Quarantined):
                quarantined.append(planned)
        if family not in examples and quarantined:
            first = quarantined[0]
            where = f"families.{family}"
            if first.field in attributes.get(family, ()):
                where += f".mapping.{first.field}"
            elif first.field == "locale":
                where += ".locale"
            findings.append(Finding(
                where,
                f"{len(quarantined)} of the first {len(assets)} sampled records of family "
                f"{family} from source {source.name} would be quarantined, e.g. "
                f"{first.dam_id!r}: {first.reason}",
            ))
    return examples, findings


# ---------------------------------------------------------------- property paths


def _reads(config: Config) -> Iterator[_PathRead]:
    """Every property path the config reads, with its key and the sources it reads from."""
    all_sources = tuple(s.name for s in config.sources)
    if config.product_asset.property:
        yield _PathRead("product_asset.property", config.product_asset.property, all_sources)
    for family in config.families:
        feeders = tuple(s.name for s in config.sources
                        if family.name in {f.name for f in config.families_of(s)})
        yield from _family_reads(family, feeders)
    for source in config.sources:
        rest = source.rest
        if rest is None:
            continue
        for name in ("media_url_field", "filename_field", "folder_field", "tags_field"):
            path = getattr(rest, name)
            if path:
                yield _PathRead(f"sources.{source.name}.rest.{name}", path, (source.name,),
                                raw=True)


def _family_reads(family: FamilyConfig, feeders: tuple[str, ...]) -> Iterator[_PathRead]:
    base = f"families.{family.name}"
    for where, selector in (("match", family.match), ("product_asset", family.product_asset)):
        if selector.property:
            yield _PathRead(f"{base}.{where}.property", selector.property, feeders)
    if family.locale.property:
        yield _PathRead(f"{base}.locale.property", family.locale.property, feeders)
    if family.product_link.identifier_property:
        yield _PathRead(f"{base}.product_link.identifier_property",
                        family.product_link.identifier_property, feeders)
    names = [m.attribute for m in family.mapping]
    shared = {n for n in names if names.count(n) > 1}
    for index, mapping in enumerate(family.mapping):
        if mapping.source.property:
            key = f"{base}.mapping.{_mapping_key(mapping, index, shared)}.property"
            yield _PathRead(key, mapping.source.property, feeders)


def _absent_paths(config: Config, samples: dict[str, SourceSample]) -> list[Finding]:
    """A finding per path that no sampled record of its sources has."""
    findings: list[Finding] = []
    for read in _reads(config):
        probed = [samples[name] for name in read.sources if name in samples]
        if not probed or any(not s.reachable for s in probed):
            continue  # a source that could not be read cannot be judged (its own finding)
        records: list[dict[str, Any]] = []
        for s in probed:
            records += s.raw_records() if read.raw else [asset_view(a) for a in s.assets]
        if not records or any(has_path(r, read.path) for r in records):
            continue
        names = ", ".join(s.name for s in probed)
        known = sorted(set(_all_paths(records)))
        close = difflib.get_close_matches(read.path, known, n=3, cutoff=0.6)
        top = sorted({str(k) for r in records for k in r})
        hint = (f"closest existing paths: {', '.join(close)}" if close
                else f"the records have: {', '.join(top[:30])}"
                + (" …" if len(top) > 30 else ""))
        findings.append(Finding(
            read.key,
            f"property {read.path!r} is absent from all {len(records)} sampled records of "
            f"source {names}: no asset would get this value ({hint})",
        ))
    return findings


def _all_paths(records: Iterable[dict[str, Any]], depth: int = 6) -> Iterator[str]:
    """Every dotted path in the records (objects nested up to `depth`; a list's first
    object by index 0), as `get_path` reads them."""
    def walk(value: Any, prefix: str, level: int) -> Iterator[str]:
        if level > depth:
            return
        if isinstance(value, dict):
            for key, child in value.items():
                path = f"{prefix}{key}"
                yield path
                yield from walk(child, path + ".", level + 1)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield from walk(value[0], prefix + "0.", level + 1)

    for record in records:
        yield from walk(record, "", 0)


def structure_reader(client: Any) -> Callable[[str], AssetFamilyStructure]:
    """Live family reads, each family once (the PIM side of `check` read them already)."""
    from connector.pim.cache import fetch_structure

    read: dict[str, AssetFamilyStructure] = {}

    def structure(code: str) -> AssetFamilyStructure:
        if code not in read:
            read[code] = fetch_structure(client, code)
        return read[code]

    return structure
