"""Read the user's config file, interpolate `${VAR}`s, validate it, report every error at once.

Errors are strings "dotted.key.path: message", sorted, so the CLI can print them as a
list and a user can fix the whole file in one go instead of one error per run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError

from connector.config.interpolate import ErrorPath, interpolate
from connector.config.model import Config
from connector.config.schemas import ConfigSchema

CONFIG_ENV_VAR = "CONNECTOR_CONFIG"


class ConfigError(Exception):
    """The configuration is unusable; `errors` lists every problem as "path: message"."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))

    def __str__(self) -> str:
        return "\n".join(self.errors)


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """YAML 1.2-ish: only true/false are booleans (so a Norwegian `no` stays "no"), dates
    stay strings (JSON-compatible values), and duplicate keys are reported, not dropped."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append(
                    f"line {mark.line + 1}, column {mark.column + 1}: "
                    f'duplicate key "{key_node.value}" (only one may be given)'
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def parse_yaml(text: str, source: str = "<config>") -> tuple[Any, list[str]]:
    """The document and the duplicate-key errors; ConfigError on a syntax error.

    The message gives line and column but not the offending snippet: a line of the file
    could hold a secret someone pasted in by mistake.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error(source, exc)]) from None
    try:
        data = loader.get_single_data()
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error(source, exc)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{source}: {where}{problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML ({type(exc).__name__})"]) from None
    finally:
        loader.dispose()
    return data, [f"{source}: {d}" for d in loader.duplicates]


def _reader_error(source: str, exc: yaml.reader.ReaderError) -> str:
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    return f"{source}: character #x{code:04x} at position {exc.position} is not allowed in YAML"


# ---------------------------------------------------------------- errors


def _flatten(messages: Any, path: ErrorPath = ()) -> list[tuple[ErrorPath, str]]:
    """marshmallow's nested error dict → (path, message) pairs; `_schema` means "here"."""
    out: list[tuple[ErrorPath, str]] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            sub = path if key == "_schema" else (*path, key)
            out.extend(_flatten(value, sub))
    elif isinstance(messages, list | tuple):
        for item in messages:
            out.extend(_flatten(item, path))
    else:
        out.append((path, str(messages)))
    return out


def _plain_key(key: str) -> bool:
    return bool(key) and key == key.strip() and key.isprintable() and not any(
        c in key for c in '.[]"'
    )


def format_path(path: ErrorPath) -> str:
    """("sources", "bynder", "families", 0) → "sources.bynder.families[0]"; a key that is
    empty, blank-edged, unprintable or holds dots, brackets or quotes is shown quoted
    (`sources[" "]`), so that every error line names a visible path."""
    text = ""
    for key in path:
        if isinstance(key, int):
            text += f"[{key}]"
        elif _plain_key(str(key)):
            text += ("." if text else "") + str(key)
        else:
            text += f"[{json.dumps(str(key))}]"
    return text or "(top level)"


def _is_under(path: ErrorPath, prefixes: set[ErrorPath]) -> bool:
    return any(path[: len(p)] == p for p in prefixes)


# ---------------------------------------------------------------- entry points


def parse_config(
    data: Any, env: Mapping[str, str] | None = None, *, base_dir: str | None = None
) -> Config:
    """Validate an already-parsed config tree (a dict from YAML or JSON).

    `env` (default: os.environ) feeds `${VAR}` references. `base_dir` (the config file's
    folder) anchors relative hot-folder paths. Raises ConfigError with every problem.
    """
    env = os.environ if env is None else env
    if data is None:
        raise ConfigError(["(top level): the configuration is empty"])
    try:
        interpolated, env_errors = interpolate(data, env)
    except RecursionError:  # a YAML alias that contains itself (&a [*a]), or absurd depth
        raise ConfigError(["(top level): the document refers to itself or is too deep"]) from None
    found: list[tuple[ErrorPath, str]] = list(env_errors)
    config: Config | None = None
    try:
        config = ConfigSchema().load(interpolated)
    except ValidationError as exc:
        reported = {path for path, _ in env_errors}
        found.extend(
            (path, message)
            for path, message in _flatten(exc.messages)
            if not _is_under(path, reported)
        )
    if found or config is None:
        raise ConfigError(_sorted_messages(found))
    if base_dir is not None:
        config = _anchor_folders(config, base_dir)
    return config


def _sorted_messages(found: list[tuple[ErrorPath, str]]) -> list[str]:
    lines = {f"{format_path(path)}: {message}": None for path, message in found}
    return sorted(lines, key=lambda line: line.split(": ", 1)[0])


def _anchor_folders(config: Config, base_dir: str) -> Config:
    """Relative hot-folder paths are relative to the config file, not to the cwd."""
    sources = []
    for source in config.sources:
        if source.folder is not None and not os.path.isabs(
            os.path.expanduser(source.folder.path)
        ):
            anchored = os.path.normpath(os.path.join(base_dir, source.folder.path))
            folder = replace(source.folder, path=anchored)
            source = replace(source, folder=folder)
        sources.append(source)
    return replace(config, sources=tuple(sources))


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load and validate the config file at `path` (default: $CONNECTOR_CONFIG).

    YAML (JSON is YAML too). Raises ConfigError listing every problem at once.
    """
    env = os.environ if env is None else env
    if path is None or str(path) == "":
        path = env.get(CONFIG_ENV_VAR) or None
    if path is None:
        raise ConfigError(
            [f"no configuration file given: pass its path or set {CONFIG_ENV_VAR}"]
        )
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{file}: no such file"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{file}: is a directory, not a config file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{file}: not UTF-8 text (byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read ({exc.strerror})"]) from None
    data, duplicates = parse_yaml(text, str(file))
    if data is None:
        raise ConfigError([*duplicates, f"{file}: the file is empty"])
    try:
        config = parse_config(data, env, base_dir=str(file.resolve().parent))
    except ConfigError as exc:
        raise ConfigError([*duplicates, *exc.errors]) from None
    if duplicates:
        raise ConfigError(duplicates)
    return replace(config, path=str(file.resolve()))
