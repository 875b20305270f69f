"""Hot-folder adapter: files under a directory are the DAM.

The id of an asset is its path relative to the root (stable across runs, readable in
reports). Metadata comes from the path (folder, file name) and from an optional sidecar
JSON next to the file (`photo.jpg.json`). A file counts as changed when it or its
sidecar was modified after the watermark. The tree is walked with `os.scandir`, sorted
per directory, so the order is stable and only one directory listing per level is held.
Deletions are not exposed: reconciliation (`all_ids`) finds them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from connector.config.model import FolderSourceConfig
from connector.dam.base import BadRecord, DamAsset, DamError, DamSource, Page, TransientDamError
from connector.dam.rest import BadRecordError

MAX_SIDECAR_BYTES = 1024 * 1024


class FolderSource(DamSource):
    """A `DamSource` over a directory tree."""

    def __init__(self, name: str, config: FolderSourceConfig, page_size: int = 100) -> None:
        self.name = name
        self.config = config
        self.root = Path(config.path)
        self.page_size = max(1, page_size)

    def __repr__(self) -> str:
        return f"FolderSource(name={self.name!r}, path={str(self.root)!r})"

    # ------------------------------------------------------------ DamSource

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        for page, _token in self.changed_pages(since):
            yield page

    def changed_pages(
        self, since: datetime | None, resume: str | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """The token is the id of the last file walked: the walk's order is stable (names
        sorted, depth first, i.e. ids ordered by their path components), so a resumed walk
        skips every file up to it without reading it."""
        threshold = _timestamp(since) if since is not None else None
        after = tuple(json.loads(resume)["after"].split("/")) if resume else None
        page = Page()
        last = ""
        for rel, entry, sidecar in self._files():
            if after is not None and tuple(rel.split("/")) <= after:
                continue
            last = rel
            try:
                mtime = _mtime(entry)
                sidecar_mtime = _mtime(sidecar) if sidecar is not None else None
            except FileNotFoundError:
                continue  # removed while we walked: the next run sees the deletion
            newest = max(mtime, sidecar_mtime or mtime)
            if threshold is not None and newest <= threshold:
                continue
            page.add(self._record(rel, Path(entry.path), entry.stat(follow_symlinks=False),
                                  sidecar, newest))
            if len(page.assets) + len(page.bad) >= self.page_size:
                yield page, json.dumps({"after": last})
                page = Page()
        if page.assets or page.bad:
            yield page, None

    def get(self, asset_id: str) -> DamAsset | None:
        path = self._path_of(asset_id)
        if path is None:
            return None
        try:
            st = path.stat(follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(st.st_mode) or not self._wanted(path.name, asset_id):
            return None
        sidecar_path = Path(str(path) + self.config.sidecar_suffix)
        sidecar: Any = sidecar_path if sidecar_path.is_file() else None
        newest = st.st_mtime
        if sidecar is not None:
            newest = max(newest, sidecar_path.stat().st_mtime)
        result = self._record(asset_id, path, st, sidecar, newest)
        if isinstance(result, BadRecord):
            raise BadRecordError(result)
        return result

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        path = self._path_of(asset.id)
        if path is None or not path.is_file():
            raise DamError(f"{self.name}: file {asset.id!r} no longer exists")
        return path.open("rb")

    def all_ids(self) -> Iterator[str]:
        """Every file id; sidecars are not read (a broken one still means "exists")."""
        for rel, _entry, _sidecar in self._files():
            yield rel

    # ------------------------------------------------------------ walking

    def _files(self) -> Iterator[tuple[str, os.DirEntry[str], Any]]:
        """(relative id, entry, sidecar entry or None) for every wanted file, in a stable
        order: names sorted within each directory, depth first."""
        if not self.root.is_dir():
            # An unmounted share must not look like "every asset was deleted".
            raise DamError(
                f"{self.name}: folder {str(self.root)!r} does not exist: check "
                f"sources.{self.name}.folder.path (a relative path is relative to the "
                "config file)",
                key=f"sources.{self.name}.folder.path",
            )
        stack: list[Iterator[tuple[str, os.DirEntry[str], dict[str, os.DirEntry[str]]]]] = [
            self._listing(self.root, "")
        ]
        while stack:
            try:
                rel_dir, entry, siblings = next(stack[-1])
            except StopIteration:
                stack.pop()
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if not self._excluded(entry.name):
                    stack.append(self._listing(Path(entry.path), rel))
                continue
            if not entry.is_file(follow_symlinks=False):
                continue  # symlinks, sockets...: never followed out of the tree
            if self._is_sidecar(entry.name, siblings) or not self._wanted(entry.name, rel):
                continue
            sidecar = siblings.get(entry.name + self.config.sidecar_suffix)
            if sidecar is not None and not sidecar.is_file(follow_symlinks=False):
                sidecar = None
            yield rel, entry, sidecar

    def _listing(
        self, directory: Path, rel_dir: str
    ) -> Iterator[tuple[str, os.DirEntry[str], dict[str, os.DirEntry[str]]]]:
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise TransientDamError(
                f"{self.name}: cannot list {str(directory)!r}: {exc.strerror or exc}"
            ) from None
        by_name = {e.name: e for e in entries}
        for entry in entries:
            yield rel_dir, entry, by_name

    def _is_sidecar(self, name: str, siblings: dict[str, Any]) -> bool:
        suffix = self.config.sidecar_suffix
        return bool(suffix) and name.endswith(suffix) and name[: -len(suffix)] in siblings

    def _excluded(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.config.exclude)

    def _wanted(self, name: str, rel: str) -> bool:
        if self._excluded(name):
            return False
        return any(
            fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p)
            for p in self.config.include
        )

    def _path_of(self, asset_id: str) -> Path | None:
        """The file of an id, or None when the id could point outside the root."""
        if not asset_id or "\\" in asset_id or "\x00" in asset_id:
            return None
        rel = PurePosixPath(asset_id)
        if rel.is_absolute() or any(part in ("", ".", "..") for part in rel.parts):
            return None
        path = self.root.joinpath(*rel.parts)
        root = os.path.realpath(self.root)
        if not os.path.realpath(path).startswith(root + os.sep):
            return None
        return path

    # ------------------------------------------------------------ records

    def _record(
        self, rel: str, path: Path, st: os.stat_result, sidecar: Any, newest: float
    ) -> DamAsset | BadRecord:
        meta: dict[str, Any] = {}
        if sidecar is not None:
            sidecar_rel = rel + self.config.sidecar_suffix
            loaded = _read_sidecar(Path(sidecar if isinstance(sidecar, Path) else sidecar.path))
            if isinstance(loaded, str):
                return BadRecord(
                    self.name,
                    {"path": rel, "sidecar": sidecar_rel},
                    f"sidecar {sidecar_rel}: {loaded}",
                    None,
                    rel,
                )
            meta = loaded
        folder = rel.rsplit("/", 1)[0] if "/" in rel else None
        updated = datetime.fromtimestamp(newest, tz=UTC)
        facts = {
            "path": rel,
            "name": path.name,
            "folder": folder,
            "extension": path.suffix.lstrip(".").lower() or None,
            "size": st.st_size,
            "modified": updated.isoformat(),
        }
        properties = dict(meta)
        properties.setdefault("file", facts)
        return DamAsset(
            id=rel,
            source=self.name,
            properties=properties,
            updated=updated,
            filename=path.name,
            folder=folder,
            tags=_tags(meta.get("tags")),
            media_url=str(path.resolve()),
        )


def _read_sidecar(path: Path) -> dict[str, Any] | str:
    """The sidecar's object, or a string saying what is wrong with it."""
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            return f"{size} bytes, over the {MAX_SIDECAR_BYTES}-byte limit for a sidecar"
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    return data


def _mtime(entry: Any) -> float:
    return float(entry.stat(follow_symlinks=False).st_mtime)


def _timestamp(since: datetime) -> float:
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return since.timestamp()


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, list):
        return tuple(str(t).strip() for t in value if t is not None and str(t).strip())
    return ()
