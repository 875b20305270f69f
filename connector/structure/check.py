"""`connector check`: find mapping mistakes against the live PIM before any sync runs.

A mapping that names an unknown attribute, sends a constant of the wrong type or an option
that does not exist would otherwise surface as thousands of 422s during a sync. `run_check`
reaches the PIM (which proves the credentials), reads each configured family's structure
live, and `check_family` compares the mapping with it. Every finding carries the config
path it is about (`families.packshots.mapping.main_colors: …`).

Why it lives in connector/structure/: it reads the same live asset family structure that
`structure apply` writes. Why one module of ~415 lines: each check reads as the mistake it
catches and all share one `Finding` path scheme; split further they would only call back
and forth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from connector.config.model import AttributeMapping, Config, FamilyConfig
from connector.pim.cache import StructureSource, UnknownFamilyError, fetch_structure
from connector.pim.errors import PimAuthError, PimError
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.structure.spec import OPTION_TYPES

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    path: str            # config path, e.g. "families.packshots.mapping.main_colors"
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        tag = "" if self.severity == "error" else "warning: "
        return f"{self.path}: {tag}{self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "severity": self.severity}


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    pim_reachable: bool = False
    families: dict[str, str] = field(default_factory=dict)  # name → ok | problems | unknown
    # DAM side (connector.structure.sample): source name → probe summary; None: not probed
    sources: dict[str, dict[str, Any]] | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return self.pim_reachable and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pim_reachable": self.pim_reachable,
            "families": self.families,
            "findings": [f.to_dict() for f in self.findings],
            **({"sources": self.sources} if self.sources is not None else {}),
        }


class CheckSource(StructureSource, Protocol):
    """What `run_check` needs from the PIM client (listing proves the credentials)."""

    def list_asset_families(self) -> Iterable[dict[str, Any]]: ...


# ---------------------------------------------------------------- constants


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | Decimal):
        return True
    if isinstance(value, str):
        try:
            Decimal(value.strip())
        except ArithmeticError:
            return False
        return bool(value.strip())
    return False


def _is_date(value: Any) -> bool:
    if isinstance(value, dt.date):  # YAML turns 2024-01-31 into a date already
        return True
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


# What a constant must look like, per PIM attribute type, and how to say so.
_CONSTANT_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "number": (_is_number, "a number (or a string holding one)"),
    "boolean": (lambda v: isinstance(v, bool), "true or false"),
    "date": (_is_date, "an ISO date such as 2024-01-31"),
    "single_option": (lambda v: isinstance(v, str), "one option code (a string)"),
    "multiple_options": (
        lambda v: isinstance(v, str) or _is_str_list(v),
        "a list of option codes (or one separated string)",
    ),
    "media_link": (lambda v: isinstance(v, str), "a string (the link)"),
    "media_file": (lambda v: isinstance(v, str), "a media file code (a string)"),
    "record": (lambda v: isinstance(v, str), "a record code (a string)"),
    "asset_collection": (_is_str_list, "a list of asset codes"),
}


def _constant_options(mapping: AttributeMapping, attribute: Attribute) -> list[str]:
    value = mapping.source.constant
    if attribute.type == "multiple_options" and isinstance(value, str):
        return [v.strip() for v in value.split(mapping.separator) if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


# ---------------------------------------------------------------- the checks


def _mapping_key(mapping: AttributeMapping, index: int, duplicates: set[str]) -> str:
    """The path segment of one mapping entry: its attribute, or attribute[index] when shared."""
    return f"{mapping.attribute}[{index}]" if mapping.attribute in duplicates else mapping.attribute


def check_family(
    family: FamilyConfig, structure: AssetFamilyStructure, config: Config | None = None
) -> list[Finding]:
    """Compare one family's mapping with the PIM structure; pure (no I/O)."""
    findings: list[Finding] = []
    base = f"families.{family.name}"
    pim_locales = set(config.pim.locales) if config else set()
    pim_channels = set(config.pim.channels) if config else set()
    locale_rule = family.locale
    has_locale_source = bool(
        locale_rule.property or locale_rule.filename_regex or locale_rule.default
    )
    names = [m.attribute for m in family.mapping]
    shared = {n for n in names if names.count(n) > 1}
    seen_targets: set[tuple[str, str | None, str | None]] = set()

    if locale_rule.default and pim_locales and locale_rule.default not in pim_locales:
        findings.append(Finding(
            f"{base}.locale.default",
            f"locale {locale_rule.default!r} is not among pim.locales ({_list(pim_locales)})",
        ))
    for mapped in locale_rule.map.values():
        if pim_locales and mapped not in pim_locales:
            findings.append(Finding(
                f"{base}.locale.map",
                f"locale {mapped!r} is not among pim.locales ({_list(pim_locales)})",
            ))

    for index, mapping in enumerate(family.mapping):
        path = f"{base}.mapping.{_mapping_key(mapping, index, shared)}"
        attribute = structure.attribute(mapping.attribute)
        if attribute is None:
            findings.append(Finding(
                path,
                f"attribute {mapping.attribute!r} does not exist in asset family "
                f"{family.name!r} (it has: {_list(structure.attributes)})",
            ))
            continue
        findings += _check_mapping(mapping, attribute, family, path, has_locale_source,
                                   pim_locales, pim_channels, config)
        target = (mapping.attribute, mapping.locale, mapping.channel)
        if target in seen_targets and mapping.source.regex is None:
            findings.append(Finding(
                path,
                f"attribute {mapping.attribute!r} is mapped more than once for the same "
                "locale and channel: the last value wins",
                "warning",
            ))
        seen_targets.add(target)

    main = structure.attribute_as_main_media
    if main and main in structure.attributes and main not in names:
        findings.append(Finding(
            f"{base}.mapping",
            f"the family's main media attribute {main!r} is not mapped: assets will have no "
            "preview in the PIM",
            "warning",
        ))
    return findings


def _check_mapping(
    mapping: AttributeMapping,
    attribute: Attribute,
    family: FamilyConfig,
    path: str,
    has_locale_source: bool,
    pim_locales: set[str],
    pim_channels: set[str],
    config: Config | None,
) -> list[Finding]:
    findings: list[Finding] = []
    type_ = attribute.type
    if mapping.expected_type and mapping.expected_type != type_:
        findings.append(Finding(
            path,
            f"expected type {mapping.expected_type!r} but the PIM attribute "
            f"{attribute.code!r} is {type_!r}",
        ))

    # locale
    if attribute.value_per_locale:
        if mapping.locale is None and not has_locale_source:
            findings.append(Finding(
                path,
                f"attribute {attribute.code!r} is localizable (value_per_locale) but no locale "
                f"source is configured: set families.{family.name}.locale.property, "
                ".filename_regex or .default, or a locale on this mapping",
            ))
    elif mapping.locale is not None:
        findings.append(Finding(
            path,
            f"attribute {attribute.code!r} is not localizable but the mapping sets locale "
            f"{mapping.locale!r}: the PIM would reject the value",
        ))
    if mapping.locale and pim_locales and mapping.locale not in pim_locales:
        findings.append(Finding(
            path, f"locale {mapping.locale!r} is not among pim.locales ({_list(pim_locales)})"
        ))

    # channel
    if attribute.value_per_channel:
        if mapping.channel is None and family.channel is None:
            findings.append(Finding(
                path,
                f"attribute {attribute.code!r} is scopable (value_per_channel) but no channel "
                f"is configured: set families.{family.name}.channel or a channel on this "
                "mapping",
            ))
    elif mapping.channel is not None:
        findings.append(Finding(
            path,
            f"attribute {attribute.code!r} is not scopable but the mapping sets channel "
            f"{mapping.channel!r}: the PIM would reject the value",
        ))
    channel = mapping.channel or (family.channel if attribute.value_per_channel else None)
    if channel and pim_channels and channel not in pim_channels:
        findings.append(Finding(
            path, f"channel {channel!r} is not among pim.channels ({_list(pim_channels)})"
        ))

    # constants
    constant = mapping.source.constant
    if constant is not None and type_ in _CONSTANT_RULES:
        accepts, wanted = _CONSTANT_RULES[type_]
        if not accepts(constant):
            findings.append(Finding(
                path,
                f"constant {constant!r} ({type(constant).__name__}) cannot be a value of the "
                f"{type_} attribute {attribute.code!r}: it must be {wanted}",
            ))

    # options
    if type_ in OPTION_TYPES:
        findings += _check_options(mapping, attribute, family, path)
    elif mapping.option_map:
        findings.append(Finding(
            path,
            f"option_map is ignored: attribute {attribute.code!r} is {type_}, not an option "
            "attribute",
            "warning",
        ))

    # media links: the transformer strips the attribute's prefix/suffix and quarantines a
    # value that lacks them, so a prefix that the DAM's URLs cannot start with is a problem.
    if type_ == "media_link" and (attribute.prefix or attribute.suffix):
        findings += _check_media_link(mapping, attribute, family, path, config)
    return findings


def _check_media_link(
    mapping: AttributeMapping,
    attribute: Attribute,
    family: FamilyConfig,
    path: str,
    config: Config | None,
) -> list[Finding]:
    prefix, suffix = attribute.prefix or "", attribute.suffix or ""
    constant = mapping.source.constant
    if isinstance(constant, str):
        if not (constant.startswith(prefix) and constant.endswith(suffix)):
            return [Finding(
                path,
                f"constant {constant!r} does not start with the prefix {prefix!r} (and end "
                f"with the suffix {suffix!r}) of attribute {attribute.code!r}",
            )]
        return []
    prefix_host = urlsplit(prefix).hostname if "://" in prefix else None
    if not prefix_host or config is None or mapping.source.property is None:
        return []
    hosts: set[str] = set()
    for source in config.sources:
        if source.families and family.name not in source.families:
            continue
        if source.rest is not None:
            hosts.add((urlsplit(source.rest.base_url).hostname or "").lower())
        hosts.update(h.lower() for h in source.media.allowed_hosts)
    if not hosts or prefix_host.lower() in hosts:
        return []
    return [Finding(
        path,
        f"attribute {attribute.code!r} has prefix {prefix!r}: the connector strips it and "
        f"quarantines values that do not start with it, but the DAM sources of this family "
        f"serve from {_list(h for h in hosts if h)}; fix the prefix in the PIM or map a "
        "property whose URLs start with it",
        "warning",
    )]


def _check_options(
    mapping: AttributeMapping, attribute: Attribute, family: FamilyConfig, path: str
) -> list[Finding]:
    auto_create = (
        mapping.auto_create_options
        if mapping.auto_create_options is not None
        else family.auto_create_options
    )
    if auto_create:
        return []
    known = {o.casefold() for o in attribute.options}
    wanted: list[tuple[str, str]] = []  # (where, option code)
    if mapping.source.constant is not None:
        wanted += [("constant", code) for code in _constant_options(mapping, attribute)]
    wanted += [(f"option_map[{label!r}]", code) for label, code in mapping.option_map.items()]
    missing = [(where, code) for where, code in wanted if code.casefold() not in known]
    if not missing:
        return []
    codes = ", ".join(sorted({code for _, code in missing}))
    places = ", ".join(where for where, _ in missing)
    return [Finding(
        path,
        f"option(s) {codes} ({places}) do not exist in attribute {attribute.code!r} and "
        f"auto_create_options is off: create them (connector structure apply) or turn "
        f"auto_create_options on. Existing options: "
        f"{_list(attribute.options)}",
    )]


def _list(items: Iterable[str]) -> str:
    values = sorted(items)
    if not values:
        return "none"
    shown = ", ".join(values[:20])
    return shown + (f", … ({len(values)} in all)" if len(values) > 20 else "")


def run_check(
    config: Config,
    client: CheckSource,
    structures: Callable[[str], AssetFamilyStructure] | None = None,
) -> CheckReport:
    """Reach the PIM, read each configured family live, and check its mapping.

    `structures` defaults to a live read through `client` (no cache), so that `check`
    judges what the PIM says now, not what a cache remembers.
    """
    report = CheckReport()
    for name, message in config.code_prefix_conflicts():
        report.findings.append(Finding(f"sources.{name}.code_prefix", message))
    try:
        available = sorted(f["code"] for f in client.list_asset_families())
    except PimAuthError as exc:
        report.findings.append(Finding("pim", f"the PIM refused the credentials: {exc}"))
        return report
    except PimError as exc:
        report.findings.append(Finding("pim", f"cannot reach the PIM: {exc}"))
        return report
    report.pim_reachable = True

    def live(code: str) -> AssetFamilyStructure:
        return fetch_structure(client, code)

    read = structures or live
    for family in config.families:
        path = f"families.{family.name}"
        try:
            structure = read(family.name)
        except UnknownFamilyError:
            report.families[family.name] = "unknown"
            report.findings.append(Finding(
                path,
                f"asset family {family.name!r} does not exist in the PIM (it has: "
                f"{_list(available)}); create it with `connector structure apply`",
            ))
            continue
        except PimError as exc:
            report.families[family.name] = "unreadable"
            report.findings.append(Finding(path, f"cannot read the family from the PIM: {exc}"))
            continue
        found = check_family(family, structure, config)
        report.findings += found
        has_errors = any(f.severity == "error" for f in found)
        report.families[family.name] = "problems" if has_errors else "ok"
    return report
