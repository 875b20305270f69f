"""A stable fingerprint of a loaded config: what a run records and every worker compares.

Workers load their config once per process; a run started from another file (or after
an edit the workers have not reloaded) must not be carried out by them with different
rules. The fingerprint is a SHA-256 over the validated, interpolated config in a canonical
JSON form, so the same file and environment give the same fingerprint in every process
(no dict or set order, no object address). Secrets are hashed in, never written out: a
changed token changes the fingerprint, and the fingerprint does not reveal the token.
The file's path is left out: the same config read from another mount is the same config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

from connector.config.model import Config
from connector.settings import Secret

#: hex digits kept: enough to tell two configs apart, short enough to read in a message
FINGERPRINT_LENGTH = 16


def _canonical(value: Any) -> Any:
    """A JSON-able form of `value` whose dumps (sort_keys) is the same in every process."""
    if isinstance(value, Secret):
        return {"secret-sha256": hashlib.sha256(value.reveal().encode()).hexdigest()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "@": type(value).__name__,
            **{f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)},
        }
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):  # no order of its own: sorted by content
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass (interpolated text) as plain text
    return f"{type(value).__name__}:{value}"


def config_fingerprint(config: Config) -> str:
    """The config's fingerprint (hex), independent of where the file was read from."""
    tree = _canonical(dataclasses.replace(config, path=None))
    text = json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]
