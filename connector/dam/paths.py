"""Dotted paths into JSON-like data (`"a.b.0.c"`), shared by adapters, selectors and mappings.

DAM records are nested in ways nobody can predict (Cloudinary's `context.custom.sku`,
Bynder's `property_sku`, a list of renditions...). One tiny, well-defined path syntax lets
the configuration address any of them without code per DAM.

Syntax: segments separated by dots; a segment that is an integer indexes a list (negative
counts from the end); the empty path is the object itself. A key that itself contains dots
can be reached when the whole remaining path matches the key exactly (``"a.b"`` in
``{"a.b": 1}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MISSING: Any = object()
"""Sentinel returned by `get_path(..., default=MISSING)` to tell "absent" from `None`."""


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """The value at `path` inside `obj`, or `default` when any step is missing.

    Never raises for a missing key, an out-of-range index or a step into a scalar: a DAM
    record with an unexpected shape is data to report, not a crash.
    """
    if path == "":
        return obj
    if isinstance(obj, Mapping) and path in obj:
        return obj[path]
    head, sep, rest = path.partition(".")
    if isinstance(obj, Mapping):
        if head not in obj:
            return default
        child = obj[head]
    elif isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        try:
            index = int(head)
        except ValueError:
            return default
        if not -len(obj) <= index < len(obj):
            return default
        child = obj[index]
    else:
        return default
    if not sep:
        return child
    return get_path(child, rest, default)


def has_path(obj: Any, path: str) -> bool:
    """Whether `path` leads somewhere in `obj` (a `None` value counts as present)."""
    return get_path(obj, path, MISSING) is not MISSING
