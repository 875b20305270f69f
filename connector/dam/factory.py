"""Build the adapter a source configuration names (no code per DAM: REST or folder)."""

from __future__ import annotations

from connector.config.model import SourceConfig
from connector.dam.base import DamError, DamSource
from connector.dam.folder import FolderSource
from connector.dam.rest import RestSource


def build_source(source: SourceConfig) -> DamSource:
    """The `DamSource` for `source`; DamError when its type-specific section is missing."""
    if source.type == "rest":
        if source.rest is None:
            raise DamError(f"source {source.name!r}: type rest needs a `rest` section")
        return RestSource(source.name, source.rest, source.media)
    if source.type == "folder":
        if source.folder is None:
            raise DamError(f"source {source.name!r}: type folder needs a `folder` section")
        return FolderSource(source.name, source.folder)
    raise DamError(f"source {source.name!r}: unknown type {source.type!r} (rest or folder)")
