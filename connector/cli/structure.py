"""`connector cache …`, `connector structure apply` and `connector check`."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import click

from connector.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEMS,
    build_cache,
    build_client,
    config_option,
    echo_json,
    exit_with,
    fail,
    load_config_or_exit,
    optional_config,
    pim_errors,
)

if TYPE_CHECKING:
    from connector.config.model import Config, SourceConfig
    from connector.pim.cache import StructureCache
    from connector.pim.client import AkeneoClient
    from connector.pim.structure import AssetFamilyStructure
    from connector.structure.check import CheckReport
    from connector.structure.dam_probe import SourceSample
    from connector.transform.transformer import Transformer

# ---------------------------------------------------------------- cache


@click.group()
def cache() -> None:
    """Inspect or refresh the fleet-wide cache of the PIM's asset-family structure."""


def _attribute_line(attr: Any) -> str:
    flags = []
    if attr.value_per_locale:
        flags.append("localizable")
    if attr.value_per_channel:
        flags.append("scopable")
    if attr.media_type:
        flags.append(f"media_type={attr.media_type}")
    if attr.prefix:
        flags.append(f"prefix={attr.prefix!r}")
    if attr.suffix:
        flags.append(f"suffix={attr.suffix!r}")
    if attr.options:
        shown = ", ".join(attr.options[:12]) + (" …" if len(attr.options) > 12 else "")
        flags.append(f"{len(attr.options)} options: {shown}")
    suffix = f"  ({'; '.join(flags)})" if flags else ""
    return f"    {attr.code:<24} {attr.type:<17}{suffix}".rstrip()


def _structure_json(cache_: StructureCache, structure: AssetFamilyStructure) -> dict[str, Any]:
    data = structure.to_dict()
    data["expires_in"] = cache_.expires_in(structure.code)
    return data


def _print_structure(cache_: StructureCache, structure: AssetFamilyStructure) -> None:
    age = max(0, int(time.time() - structure.fetched_at))
    expires = cache_.expires_in(structure.code)
    expiry = f", expires in {expires}s" if expires is not None else ""
    main = structure.attribute_as_main_media or "-"
    click.echo(
        f"{structure.code}: {len(structure.attributes)} attributes, main media {main}, "
        f"fetched {age}s ago{expiry}"
    )
    for attr in structure.attributes.values():
        click.echo(_attribute_line(attr))


@cache.command("show")
@click.argument("families", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@config_option(required=False)
def cache_show(families: tuple[str, ...], as_json: bool, config_path: str | None) -> None:
    """Show cached structures (all cached ones, or FAMILIES — read through the cache) and
    the fleet-wide hit/miss/fetch counters."""
    from connector.pim.cache import UnknownFamilyError

    config = optional_config(config_path)
    pim = config.pim if config else None
    client = build_client(pim)
    cache_ = build_cache(client, pim)
    unknown: list[str] = []
    with pim_errors():
        if families:
            structures = []
            for code in families:
                try:
                    structures.append(cache_.family(code))
                except UnknownFamilyError as exc:
                    unknown.append(code)
                    click.echo(f"error: {exc}", err=True)
        else:
            structures = [s for c in cache_.cached_codes() if (s := cache_.cached(c))]
        stats = cache_.stats()
    if as_json:
        echo_json({
            "stats": stats,
            "families": {s.code: _structure_json(cache_, s) for s in structures},
            "unknown": unknown,
        })
    else:
        if not structures and not unknown:
            click.echo("no family structure is cached")
        for structure in structures:
            _print_structure(cache_, structure)
        click.echo(
            f"counters: {stats['hits']} hits, {stats['misses']} misses, "
            f"{stats['fetches']} fetches"
        )
    exit_with(EXIT_PROBLEMS if unknown else EXIT_OK)


@cache.command("refresh")
@click.argument("families", nargs=-1)
@config_option(required=False)
def cache_refresh(families: tuple[str, ...], config_path: str | None) -> None:
    """Refetch FAMILIES now (default: the families of the config, else every cached one)."""
    from connector.pim.cache import UnknownFamilyError

    config = optional_config(config_path)
    pim = config.pim if config else None
    client = build_client(pim)
    cache_ = build_cache(client, pim)
    with pim_errors():
        codes = list(families)
        if not codes and config is not None:
            codes = [f.name for f in config.families]
        if not codes:
            codes = cache_.cached_codes()
        if not codes:
            fail("nothing to refresh: name FAMILIES, or pass a config", EXIT_CONFIG)
        failed = False
        for code in codes:
            try:
                structure = cache_.refresh([code])[code]
            except UnknownFamilyError as exc:
                click.echo(f"error: {exc}", err=True)
                failed = True
                continue
            click.echo(f"{code}: refreshed ({len(structure.attributes)} attributes)")
    exit_with(EXIT_PROBLEMS if failed else EXIT_OK)


# ---------------------------------------------------------------- structure apply


@click.group()
def structure() -> None:
    """Manage the PIM's asset-family structure."""


_ACTION_LABELS = {
    "created": ("created", "would create"),
    "updated": ("updated", "would update"),
    "unchanged": ("unchanged", "unchanged"),
    "conflict": ("CONFLICT", "CONFLICT"),
    "failed": ("FAILED", "FAILED"),
}


@structure.command("apply")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Compare with the PIM and report; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@config_option(required=False)
def structure_apply(file: str, dry_run: bool, as_json: bool, config_path: str | None) -> None:
    """Create or update the asset families, attributes and options declared in FILE.

    Idempotent: only what differs from the live PIM is written; applying the same file
    twice reports every item unchanged the second time.
    """
    from connector.structure import StructureFileError, apply_structure, load_structure_file

    try:
        spec = load_structure_file(file)
    except StructureFileError as exc:
        click.echo(f"error: {file}: {len(exc.errors)} error(s):", err=True)
        for error in exc.errors:
            click.echo(f"  {error}", err=True)
        exit_with(EXIT_CONFIG)
    config = optional_config(config_path)
    pim = config.pim if config else None
    client = build_client(pim)
    cache_ = build_cache(client, pim)
    with pim_errors():
        report = apply_structure(client, spec, cache=cache_, dry_run=dry_run)
    if as_json:
        echo_json(report.to_dict())
    else:
        for item in report.items:
            label = _ACTION_LABELS[item.action][1 if dry_run else 0]
            detail = f" ({', '.join(item.fields)})" if item.fields else ""
            if item.message:
                detail += f": {item.message}"
            click.echo(f"{label:<12} {item.kind:<9} {item.code}{detail}")
        summary = ", ".join(
            f"{report.count(a)} {a}" for a in _ACTION_LABELS if report.count(a)  # type: ignore[arg-type]
        )
        click.echo(("dry run: " if dry_run else "") + (summary or "nothing declared"))
    exit_with(EXIT_OK if report.ok else EXIT_PROBLEMS)


# ---------------------------------------------------------------- check


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option(
    "--sample", type=click.IntRange(min=1), default=200, show_default=True,
    help="DAM records read per source to check the mapping against real data.",
)
@click.option("--no-dam", is_flag=True, help="Check the PIM side only; do not probe the DAMs.")
@config_option()
def check(as_json: bool, sample: int, no_dam: bool, config_path: str | None) -> None:
    """Validate the config, reach the PIM and check the mapping against its live structure;
    then probe every DAM source: credentials, listing, id/updated fields, the
    changed-since filter, and the mapping over a sample of real records (read-only).

    Exit 0 when fine, 1 when there are problems, 2 on configuration errors.
    """
    from connector.structure import run_check

    config = load_config_or_exit(config_path)
    client = build_client(config.pim)
    with pim_errors():
        report = run_check(config, client)
        _check_media_connection(config, report)
        if not no_dam:
            _probe_dams(config, client, report, sample)
    if as_json:
        echo_json(report.to_dict())
    else:
        for finding in report.findings:
            click.echo(str(finding))
        for name, summary in (report.sources or {}).items():
            for line in _source_lines(name, summary):
                click.echo(line)
        if report.ok:
            warn = f", {len(report.warnings)} warning(s)" if report.warnings else ""
            click.echo(
                f"OK: PIM reachable, {len(report.families)} famil"
                f"{'y' if len(report.families) == 1 else 'ies'} checked, no problems{warn}"
            )
        else:
            click.echo(f"{len(report.errors)} problem(s), {len(report.warnings)} warning(s)")
    exit_with(EXIT_OK if report.ok else EXIT_PROBLEMS)


def _check_media_connection(config: Config, report: CheckReport) -> None:
    """The uploads' own Akeneo connection (AKENEO_MEDIA_*), when one is set: a token is
    granted, or the finding says what the PIM answered. A partial set exits 2."""
    from connector.pim.budget import MEDIA_CONNECTION
    from connector.pim.client import AkeneoClient
    from connector.pim.errors import PimAuthError, PimError
    from connector.redis_conn import Keys, get_redis
    from connector.settings import PimCredentials, SettingsError
    from connector.structure.check import Finding

    try:
        credentials = PimCredentials.media_from_env()
    except SettingsError as exc:
        fail(str(exc), EXIT_CONFIG)
    if credentials is None:
        return
    path = "environment AKENEO_MEDIA_*"
    if credentials.client_id == os.environ.get("AKENEO_CLIENT_ID"):
        report.findings.append(Finding(path, (
            "the media connection is the main connection (same AKENEO_MEDIA_CLIENT_ID as "
            "AKENEO_CLIENT_ID): Akeneo counts concurrent calls per connection, so uploads "
            "and bulk writes would share the same slots over two budgets and get 429s; "
            "create a second connection in Akeneo or unset AKENEO_MEDIA_*")))
        return
    with AkeneoClient(credentials, config.pim, get_redis(), Keys(),
                      connection=MEDIA_CONNECTION) as media:
        try:
            media.tokens.verify_grant()
        except PimAuthError as exc:
            report.findings.append(Finding(path, f"the PIM refused the media connection: {exc}"))
        except PimError as exc:
            report.findings.append(Finding(path, f"cannot reach the PIM for uploads: {exc}"))


def _probe_dams(config: Config, client: AkeneoClient, report: CheckReport, sample: int) -> None:
    """The DAM side of `check`; example payloads only when the PIM answered."""
    from connector.redis_conn import Keys, get_redis
    from connector.structure.sample import probe_sources, structure_reader
    from connector.transform.media import MediaFileHandler
    from connector.transform.transformer import Transformer

    structures = structure_reader(client)

    def transformer(source: SourceConfig, probed: SourceSample) -> Transformer | None:
        if not report.pim_reachable or probed.adapter is None:
            return None
        media = MediaFileHandler(probed.adapter, client, get_redis(), Keys(),
                                 max_bytes=source.media.max_bytes)
        # planning only: no option writer, and `plan` never uploads
        return Transformer(config, source, structures, options=None, media=media)

    probe_sources(config, report, sample, transformer)


def _source_lines(name: str, summary: dict[str, Any]) -> list[str]:
    """A source's probe summary for people: counts, then one example payload per family."""
    state = "reachable" if summary.get("reachable") else "NOT reachable"
    unreadable = f" ({summary['unreadable']} unreadable)" if summary.get("unreadable") else ""
    sampled = summary.get("sampled", 0)
    lines = [
        f"DAM source {name} ({summary.get('type')}): {state}, {sampled} "
        f"record{'' if sampled == 1 else 's'} sampled{unreadable}, changed-since filter "
        f"{summary.get('since_filter')}"
    ]
    if "product_assets" in summary:
        families = ", ".join(f"{k} {v}" for k, v in summary.get("families", {}).items())
        lines.append(
            f"  product assets: {summary['product_assets']} of {summary.get('sampled', 0)}; "
            f"families: {families or 'none'}"
        )
    for family, example in (summary.get("examples") or {}).items():
        lines.append(f"  example {family}/{example['code']} (DAM id {example['dam_id']}):")
        for attribute, values in sorted(example["values"].items()):
            for v in values:
                lines.append(
                    f"    {attribute}[{v.get('locale') or '-'}|{v.get('channel') or '-'}] = "
                    f"{json.dumps(v.get('data'), ensure_ascii=False, default=str)}"
                )
        if example.get("product_identifiers"):
            lines.append(f"    products: {', '.join(example['product_identifiers'])}")
        for effect in example.get("effects") or []:
            lines.append(f"    · {effect}")
    return lines
