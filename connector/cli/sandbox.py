"""`connector sandbox pim|dam`: run a sandbox server in the foreground (demo, manual tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
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
def sandbox_pim(host: str, port: int, assignments: tuple[str, ...]) -> None:
    """Serve the sandbox Akeneo PIM (credentials: sandbox-client / sandbox-secret,
    sandbox / sandbox-password) until interrupted."""
    from sandbox import pim

    settings = apply_settings(pim.PimSandboxSettings(), assignments)
    click.echo(f"sandbox PIM on http://{host}:{port} (Ctrl-C to stop)", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        pim.serve_forever(host, port, settings)


@sandbox.command("dam")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
@click.option("--assets", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--shape", default="bynder", show_default=True, help="Record shape of the API.")
@click.option("--seed", type=int, default=1, show_default=True)
def sandbox_dam(host: str, port: int, assets: int, shape: str, seed: int) -> None:
    """Serve the sandbox DAM with ASSETS generated assets until interrupted."""
    from sandbox import dam

    click.echo(f"sandbox DAM on http://{host}:{port} ({assets} assets, {shape})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        dam.serve_forever(host, port, assets=assets, shape=shape, seed=seed)
