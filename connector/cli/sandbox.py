"""`connector sandbox pim|dam`: run a sandbox server in the foreground (demo, manual tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from connector.cli.common import EXIT_CONFIG, fail


@click.group()
def sandbox() -> None:
    """Run a sandbox PIM or DAM on 127.0.0.1 (for the demo and for trying configs)."""


def _coerce(raw: str, current: Any) -> Any:
    """A `--set` value, typed after the setting's default (JSON for anything complex)."""
    if isinstance(current, bool):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, str):
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def apply_settings(settings: Any, assignments: tuple[str, ...]) -> Any:
    """`("rate_limit=5", …)` applied to a settings dataclass; clear errors for bad keys."""
    if not assignments:
        return settings
    known = {f.name: f for f in dataclasses.fields(settings)}
    changes: dict[str, Any] = {}
    errors: list[str] = []
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            errors.append(f"--set {assignment!r}: expected KEY=VALUE")
            continue
        if key not in known:
            errors.append(f"--set {key}: unknown setting (known: {', '.join(sorted(known))})")
            continue
        try:
            changes[key] = _coerce(raw, getattr(settings, key))
        except ValueError as exc:
            errors.append(f"--set {key}: {exc}")
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        fail("invalid sandbox settings", EXIT_CONFIG)
    return dataclasses.replace(settings, **changes)


def _tls_options(command: Any) -> Any:
    """`--tls` and `--ca-dir`, shared by both sandboxes."""
    command = click.option(
        "--ca-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="With --tls: keep the CA here (ca.pem, ca.key; reused when present, so a PIM "
        "and a DAM sandbox share one CA file). Default: a temporary directory.",
    )(command)
    return click.option(
        "--tls",
        is_flag=True,
        help="Serve HTTPS with a certificate issued at start by a local CA; prints the "
        "REQUESTS_CA_BUNDLE=<file> a client needs to trust it.",
    )(command)


def _ca(tls: bool, ca_dir: Path | None) -> Any:
    """The CA the server's certificate comes from (None without --tls); its file printed."""
    if not tls:
        return None
    from sandbox.server import SandboxCA, default_ca

    ca = SandboxCA(ca_dir) if ca_dir is not None else default_ca()
    click.echo(f"REQUESTS_CA_BUNDLE={ca.bundle}", err=True)
    return ca


@sandbox.command("pim")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8082, show_default=True)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a PimSandboxSettings field (repeatable), e.g. --set rate_limit=50.",
)
@_tls_options
def sandbox_pim(
    host: str, port: int, assignments: tuple[str, ...], tls: bool, ca_dir: Path | None
) -> None:
    """Serve the sandbox Akeneo PIM (credentials: sandbox-client / sandbox-secret,
    sandbox / sandbox-password) until interrupted."""
    try:
        from sandbox import pim
    except ImportError as exc:  # the `sandbox` extra is not installed
        fail(str(exc), EXIT_CONFIG)
    settings = apply_settings(pim.PimSandboxSettings(), assignments)
    ca = _ca(tls, ca_dir)
    scheme = "https" if tls else "http"
    click.echo(f"sandbox PIM on {scheme}://{host}:{port} (Ctrl-C to stop)", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        pim.serve_forever(host, port, settings, tls=tls, ca=ca)


@sandbox.command("dam")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--assets", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--shape", default="bynder", show_default=True, help="Record shape of the API.")
@click.option("--seed", type=int, default=1, show_default=True)
@_tls_options
def sandbox_dam(
    host: str, port: int, assets: int, shape: str, seed: int, tls: bool, ca_dir: Path | None
) -> None:
    """Serve the sandbox DAM with ASSETS generated assets until interrupted."""
    try:
        from sandbox import dam
    except ImportError as exc:  # the `sandbox` extra is not installed
        fail(str(exc), EXIT_CONFIG)
    ca = _ca(tls, ca_dir)
    scheme = "https" if tls else "http"
    click.echo(f"sandbox DAM on {scheme}://{host}:{port} ({assets} assets, {shape})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        dam.serve_forever(host, port, tls=tls, ca=ca, assets=assets, shape=shape, seed=seed)
