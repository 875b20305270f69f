"""Hot-folder adapter on a real directory tree."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connector.config.model import FolderSourceConfig, SourceConfig
from connector.dam.base import DamError
from connector.dam.factory import build_source
from connector.dam.folder import FolderSource
from connector.dam.rest import BadRecordError

OLD = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def write(root: Path, rel: str, data: bytes | str, mtime: float = OLD) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "hot"
    write(root, "products/packshots/allie-jean_1_front.png", b"\x89PNG front")
    write(root, "products/packshots/allie-jean_1_front.png.json",
          json.dumps({"sku": "allie-jean", "colors": "red,blue", "tags": ["product", "summer"]}))
    write(root, "products/packshots/braga-shirt_2_back.png", b"\x89PNG back")
    write(root, "products/packshots/cody-coat_1_side.png", b"\x89PNG side")
    write(root, "products/packshots/cody-coat_1_side.png.json", "{not json")
    write(root, "products/user-guides/allie-jean_user_guide_fr_FR.pdf", b"%PDF-1.4")
    write(root, "a-top-level.jpg", b"\xff\xd8")
    write(root, ".hidden/secret.png", b"x")
    write(root, "products/upload.png.part", b"half")
    write(root, "products/notes.json", "{}")
    (root / "products/packshots/link.png").symlink_to("/etc/hostname")
    return root


def source(root: Path, page_size: int = 100, **kw) -> FolderSource:
    return FolderSource("hot", FolderSourceConfig(path=str(root), **kw), page_size=page_size)


def everything(src: FolderSource, since=None):
    assets, bad, sizes = [], [], []
    for page in src.changed_since(since):
        sizes.append(len(page.assets) + len(page.bad))
        assets.extend(page.assets)
        bad.extend(page.bad)
    return assets, bad, sizes


def test_lists_files_in_stable_order_with_metadata(tree):
    assets, _bad, _ = everything(source(tree))
    assert [a.id for a in assets] == [
        "a-top-level.jpg",
        "products/packshots/allie-jean_1_front.png",
        "products/packshots/braga-shirt_2_back.png",
        "products/user-guides/allie-jean_user_guide_fr_FR.pdf",
    ]
    front = assets[1]
    assert front.folder == "products/packshots" and front.filename == "allie-jean_1_front.png"
    assert front.tags == ("product", "summer")
    assert front.properties["sku"] == "allie-jean" and front.properties["colors"] == "red,blue"
    assert front.properties["file"]["size"] == len(b"\x89PNG front")
    assert front.updated == datetime.fromtimestamp(OLD, tz=UTC)
    assert assets[0].folder is None and assets[0].properties["file"]["extension"] == "jpg"
    assert Path(front.media_url).is_file()


def test_broken_sidecar_is_a_bad_record_with_reason(tree):
    _, bad, _ = everything(source(tree))
    assert len(bad) == 1
    record = bad[0]
    assert record.record_id == "products/packshots/cody-coat_1_side.png"
    assert "cody-coat_1_side.png.json" in record.reason and "invalid JSON" in record.reason
    assert "cody-coat_1_side.png" in set(x.rsplit("/", 1)[-1] for x in source(tree).all_ids())


def test_pages_hold_at_most_page_size(tree):
    _, _, sizes = everything(source(tree, page_size=2))
    assert sizes == [2, 2, 1]


def test_mtime_watermark_picks_changed_files_and_sidecars(tree):
    src = source(tree)
    watermark = datetime(2026, 6, 1, tzinfo=UTC)
    assert everything(src, watermark)[0] == []
    new = watermark.timestamp() + 60
    os.utime(tree / "products/packshots/braga-shirt_2_back.png", (new, new))
    os.utime(tree / "products/packshots/allie-jean_1_front.png.json", (new, new))  # metadata
    write(tree, "products/videos/dana-dress_presentation.mp4", b"\x00\x00\x00\x18ftyp", new)
    assets, _, _ = everything(src, watermark)
    assert [a.id for a in assets] == [
        "products/packshots/allie-jean_1_front.png",
        "products/packshots/braga-shirt_2_back.png",
        "products/videos/dana-dress_presentation.mp4",
    ]
    assert all(a.updated == datetime.fromtimestamp(new, tz=UTC) for a in assets)
    # exactly at the watermark is not "after" it
    assert everything(src, datetime.fromtimestamp(new, tz=UTC))[0] == []


def test_include_patterns(tree):
    assets, _, _ = everything(source(tree, include=("*.pdf",)))
    assert [a.id for a in assets] == ["products/user-guides/allie-jean_user_guide_fr_FR.pdf"]


def test_get_open_binary_and_path_traversal(tree):
    src = source(tree)
    asset = src.get("products/packshots/braga-shirt_2_back.png")
    assert asset is not None and asset.filename == "braga-shirt_2_back.png"
    with src.open_binary(asset) as stream:
        assert stream.read() == b"\x89PNG back"
    for evil in ("../hot/a-top-level.jpg", "/etc/hostname", "products/../../x", "",
                 "products/packshots/link.png", "products/packshots",
                 "products/upload.png.part", "nope.png"):
        assert src.get(evil) is None, evil
    with pytest.raises(BadRecordError, match="invalid JSON"):
        src.get("products/packshots/cody-coat_1_side.png")


def test_deletions_not_exposed_but_all_ids_sees_them(tree):
    src = source(tree)
    assert list(src.deleted_since(None)) == []
    before = set(src.all_ids())
    (tree / "a-top-level.jpg").unlink()
    assert before - set(src.all_ids()) == {"a-top-level.jpg"}


def test_missing_root_raises_instead_of_listing_nothing(tmp_path):
    src = source(tmp_path / "not-mounted")
    with pytest.raises(DamError, match="does not exist"):
        list(src.all_ids())


def test_factory_builds_folder_source(tree):
    src = build_source(SourceConfig(name="hot", type="folder",
                                    folder=FolderSourceConfig(path=str(tree))))
    assert isinstance(src, FolderSource) and len(list(src.all_ids())) == 5
    with pytest.raises(DamError, match="needs a `rest` section"):
        build_source(SourceConfig(name="x", type="rest"))
