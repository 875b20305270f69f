"""Helpers shared by every `connector` subcommand: config, PIM client, pipeline services,
output, exit codes.

Exit codes: 0 fine, 1 problems found or an operation failed, 2 bad configuration or usage
(click's own usage errors are 2 as well). Heavy modules are imported inside the helpers so
that `connector --help` stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from connector.config.model import Config, PimConfig
    from connector.pim.cache import StructureCache
    from connector.pim.client import AkeneoClient
    from connector.pipeline.services import Services

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2

F = TypeVar("F", bound=Callable[..., Any])


def exit_with(code: int) -> NoReturn:
    """Leave with `code` (works the same under click's CliRunner and a real process)."""
    raise click.exceptions.Exit(code)


def fail(message: str, code: int = EXIT_PROBLEMS) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    exit_with(code)


def config_option(required: bool = True) -> Callable[[F], F]:
    """`--config/-c PATH` (default $CONNECTOR_CONFIG)."""
    help_text = "Configuration file (default: $CONNECTOR_CONFIG)."
    if not required:
        help_text += " Optional here: without one, PIM defaults apply."
    return click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=help_text,
    )


def load_config_or_exit(path: str | None) -> Config:
    """The validated config, or every error on stderr and exit 2."""
    from connector.config import ConfigError, load_config

    if not path and not os.environ.get("CONNECTOR_CONFIG"):
        fail("no configuration: pass --config PATH or set CONNECTOR_CONFIG", EXIT_CONFIG)
    try:
        config: Config = load_config(path)
    except ConfigError as exc:
        where = path or os.environ.get("CONNECTOR_CONFIG") or "the configuration"
        errors = list(getattr(exc, "errors", None) or [str(exc)])
        click.echo(f"error: {where}: {len(errors)} configuration error(s):", err=True)
        for error in errors:
            click.echo(f"  {error}", err=True)
        exit_with(EXIT_CONFIG)
    return config


def optional_config(path: str | None) -> Config | None:
    """The config when one is named (--config or $CONNECTOR_CONFIG), else None."""
    if path or os.environ.get("CONNECTOR_CONFIG"):
        return load_config_or_exit(path)
    return None


def build_client(pim: PimConfig | None = None) -> AkeneoClient:
    """The PIM client from AKENEO_* and REDIS_URL; a missing variable exits 2."""
    from connector.config.model import PimConfig
    from connector.pim.client import AkeneoClient
    from connector.settings import SettingsError

    try:
        return AkeneoClient.from_env(pim or PimConfig())
    except SettingsError as exc:
        fail(str(exc), EXIT_CONFIG)


def build_cache(client: AkeneoClient, pim: PimConfig | None = None) -> StructureCache:
    """The fleet-wide structure cache, as the workers build it."""
    from connector.config.model import PimConfig
    from connector.pim.cache import StructureCache
    from connector.redis_conn import Keys, get_redis

    ttl = (pim or PimConfig()).structure_cache_ttl
    return StructureCache(client, get_redis(), Keys(), ttl=ttl)


@contextmanager
def pim_errors() -> Iterator[None]:
    """Turn PIM and Redis failures into one clear line and exit 1 (no traceback)."""
    import redis

    from connector.pim.errors import PimAuthError, PimError

    try:
        yield
    except PimAuthError as exc:
        fail(f"the PIM refused the credentials: {exc}")
    except PimError as exc:
        fail(f"PIM request failed: {exc}")
    except redis.RedisError as exc:
        fail(f"Redis is unreachable or failed ({type(exc).__name__}): {exc}")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- the pipeline's commands
# sync, status, failures, quarantine, explain, reconcile and links all start here.


def config_and_services(config_path: str | None) -> tuple[Config, Services]:
    """Config (exit 2 on errors) and this process's pipeline services built from it."""
    config = load_config_or_exit(config_path)
    if config_path:
        os.environ["CONNECTOR_CONFIG"] = config_path  # the services read the same file
    from connector.pipeline import get_services

    with operational_errors():
        return config, get_services()


@contextmanager
def operational_errors() -> Iterator[None]:
    """Redis/PIM/DAM failures → one clear line and exit 1 (no traceback for an operator)."""
    import redis

    from connector.dam.base import DamError
    from connector.pim.errors import PimError
    from connector.pipeline.errors import PipelineError, UnknownRunError, UnknownSourceError
    from connector.settings import SettingsError

    try:
        yield
    except (UnknownSourceError, UnknownRunError) as exc:
        fail(str(exc), EXIT_CONFIG)
    except SettingsError as exc:
        fail(str(exc), EXIT_CONFIG)
    except redis.RedisError as exc:
        fail(f"Redis is unreachable or failed ({type(exc).__name__}): {exc}")
    except (PimError, DamError, PipelineError) as exc:
        fail(f"{type(exc).__name__}: {exc}")


def source_names(config: Config, source: str | None) -> list[str]:
    """SOURCE, checked against the config (exit 2 when unknown), or every configured one."""
    names = [s.name for s in config.sources]
    if source is None:
        return names
    if source not in names:
        fail(f"unknown source {source!r}; configured: {', '.join(names) or 'none'}", EXIT_CONFIG)
    return [source]
