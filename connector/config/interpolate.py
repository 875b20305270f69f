"""`${VAR}` interpolation of the raw config tree, and how values are shown in messages.

Why a marker class: a value that came from the environment may be a secret, so it is an
`EnvStr`; secret fields accept only those, and error messages never echo them (`shown`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PathKey = str | int
ErrorPath = tuple[PathKey, ...]


class EnvStr(str):
    """A string value that came (at least partly) from `${VAR}` references.

    Secret fields accept only these (a whole, default-less reference), and error
    messages never quote them.
    """

    variables: tuple[str, ...] = ()
    whole: bool = False          # the value was exactly one ${VAR} reference
    has_default: bool = False    # a ${VAR:-default} was used
    unset: bool = False          # a referenced variable was missing (an error is reported)


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _interpolate_string(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with `${VAR}` / `${VAR:-default}` replaced; `$${` is a literal `${`."""
    if "${" not in text:
        return text, []
    parts: list[str] = []
    errors: list[str] = []
    variables: list[str] = []
    position = 0
    references = 0
    whole = False
    has_default = unset = False
    for match in _REFERENCE.finditer(text):
        parts.append(text[position : match.start()])
        position = match.end()
        if match.group(0) == "$${":
            parts.append("${")
            continue
        body = match.group(1)
        if body is None:
            errors.append('unterminated "${" (write "$${" for a literal "${")')
            continue
        body_match = _REFERENCE_BODY.fullmatch(body)
        if body_match is None:
            errors.append("invalid ${...} reference: write ${NAME} or ${NAME:-default}")
            continue
        name, default = body_match.group(1), body_match.group(2)
        references += 1
        variables.append(name)
        whole = match.start() == 0 and match.end() == len(text)
        value = env.get(name)
        if default is not None:
            has_default = True
            if not value:
                value = default
        if value is None:
            errors.append(f"environment variable {name} is not set")
            unset = True
            value = ""
        parts.append(value)
    parts.append(text[position:])
    result = "".join(parts)
    if not references:
        return result, errors
    marked = EnvStr(result)
    marked.variables = tuple(variables)
    marked.whole = whole and references == 1
    marked.has_default = has_default
    marked.unset = unset
    return marked, errors


def interpolate(
    node: Any, env: Mapping[str, str], path: ErrorPath = ()
) -> tuple[Any, list[tuple[ErrorPath, str]]]:
    """Replace `${VAR}` references in every string value of `node` (keys are left alone).

    Returns the new tree and the errors (path, message) of unset variables / bad syntax.
    """
    errors: list[tuple[ErrorPath, str]] = []
    if isinstance(node, str):
        value, messages = _interpolate_string(node, env)
        errors.extend((path, m) for m in messages)
        return value, errors
    if isinstance(node, Mapping):
        out: dict[Any, Any] = {}
        for key, item in node.items():
            out[key], sub = interpolate(item, env, (*path, str(key)))
            errors.extend(sub)
        return out, errors
    if isinstance(node, list | tuple):
        items: list[Any] = []
        for index, item in enumerate(node):
            value, sub = interpolate(item, env, (*path, index))
            items.append(value)
            errors.extend(sub)
        return items, errors
    return node, errors


def plain(value: Any) -> Any:
    """`value` with every EnvStr turned back into a plain str (for Any-typed fields)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def shown(value: Any) -> str:
    """A value for an error message; values from the environment are never echoed."""
    if isinstance(value, EnvStr):
        return "the value of " + ", ".join(f"${{{v}}}" for v in value.variables)
    try:
        text = json.dumps(plain(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    """What kind of YAML value `value` is, in words ("a string", "a list"), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__
