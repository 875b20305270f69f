"""MediaFileHandler: download through the DAM port, cap, hash, upload once per content."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO, Any

import pytest
import redis

from connector.config.model import (
    AttributeMapping,
    Config,
    FamilyConfig,
    Selector,
    SourceConfig,
    ValueSource,
)
from connector.dam.base import DamAsset, DamError, DamSource, Page
from connector.pim.errors import PermanentPimError, TransientPimError
from connector.pim.structure import AssetFamilyStructure, Attribute
from connector.redis_conn import Keys
from connector.transform.converters import ConversionError
from connector.transform.media import MediaFileHandler
from connector.transform.result import Quarantined, TransformedAsset
from connector.transform.transformer import Transformer


class FakeDam(DamSource):
    name = "dam"

    def __init__(self, files: dict[str, bytes | Exception]) -> None:
        self.files = files
        self.opened: list[str] = []

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        return iter(())

    def get(self, asset_id: str) -> DamAsset | None:
        return None

    @contextmanager
    def open_binary(self, asset: DamAsset) -> Iterator[IO[bytes]]:
        self.opened.append(asset.id)
        content = self.files[asset.id]
        if isinstance(content, Exception):
            raise content
        yield io.BytesIO(content)


class FakeUploader:
    def __init__(self, fail: Exception | None = None) -> None:
        self.uploads: list[tuple[str, bytes]] = []
        self.fail = fail

    def upload_media_file(self, path_or_fileobj: Any, filename: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.uploads.append((filename, path_or_fileobj.read()))
        return f"a/b/{len(self.uploads)}_{filename}"


PDF = Attribute("file", "media_file", allowed_extensions=("pdf",), max_file_size="0.001")


def asset(dam_id: str, filename: str = "guide.pdf") -> DamAsset:
    return DamAsset(id=dam_id, source="dam", properties={"original": "x"}, filename=filename)


def handler(dam: FakeDam, uploader: FakeUploader, redis_client: redis.Redis) -> MediaFileHandler:
    return MediaFileHandler(dam, uploader, redis_client, Keys(), max_bytes=10_000)


def test_same_content_is_uploaded_once(namespace: str, redis_client: redis.Redis) -> None:
    dam = FakeDam({"A": b"%PDF-1 same", "B": b"%PDF-1 same", "C": b"%PDF-1 other"})
    up = FakeUploader()
    h = handler(dam, up, redis_client)
    assert h.media_code(asset("A"), "user_guides", PDF) == "a/b/1_guide.pdf"
    assert h.media_code(asset("B", "other.pdf"), "user_guides", PDF) == "a/b/1_guide.pdf"
    assert h.media_code(asset("C"), "user_guides", PDF) == "a/b/2_guide.pdf"
    assert up.uploads == [("guide.pdf", b"%PDF-1 same"), ("guide.pdf", b"%PDF-1 other")]
    assert dam.opened == ["A", "B", "C"]
    # the map lives in Redis: a new handler (another worker) reuses it too
    again = handler(dam, FakeUploader(), redis_client)
    assert again.media_code(asset("A"), "user_guides", PDF) == "a/b/1_guide.pdf"
    assert again.uploader.uploads == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("content", "filename", "reason"),
    [
        (b"x" * 2000, "guide.pdf", "file is larger than the 1048 bytes allowed"),
        (b"%PDF", "guide.exe", "file 'guide.exe' has extension 'exe'; allowed: pdf"),
        (b"", "guide.pdf", "the DAM returned an empty file"),
        (
            DamError("404 Not Found"),
            "guide.pdf",
            "cannot read the file from the DAM: 404 Not Found",
        ),
        (
            OSError("connection reset"),
            "guide.pdf",
            "cannot read the file from the DAM: connection reset",
        ),
    ],
)
def test_bad_files(
    namespace: str, redis_client: redis.Redis, content: Any, filename: str, reason: str
) -> None:
    h = handler(FakeDam({"A": content}), FakeUploader(), redis_client)
    with pytest.raises(ConversionError) as info:
        h.media_code(asset("A", filename), "user_guides", PDF)
    assert (info.value.field, info.value.reason) == ("file", reason)


def test_global_cap_applies_without_attribute_limit(
    namespace: str, redis_client: redis.Redis
) -> None:
    h = handler(FakeDam({"A": b"y" * 10_001}), FakeUploader(), redis_client)
    with pytest.raises(ConversionError, match="larger than the 10000 bytes"):
        h.media_code(asset("A"), "f", Attribute("file", "media_file"))


def transform_with(media: MediaFileHandler) -> Transformer:
    fam = FamilyConfig(
        name="user_guides",
        match=Selector(always=True),
        mapping=(
            AttributeMapping("file", ValueSource(property="original")),
            AttributeMapping("title", ValueSource(property="title")),
        ),
    )
    source = SourceConfig(name="dam", type="rest")
    structure = AssetFamilyStructure(
        "user_guides", {"file": PDF, "title": Attribute("title", "number")}
    )
    return Transformer(
        Config(families=(fam,), sources=(source,)), source, lambda c: structure, media=media
    )


def test_transformer_uploads_only_valid_records(namespace: str, redis_client: redis.Redis) -> None:
    dam = FakeDam({"A": b"%PDF a", "B": b"%PDF b", "C": DamError("gone")})
    up = FakeUploader()
    t = transform_with(handler(dam, up, redis_client))
    ok = t.transform(DamAsset("A", "dam", {"original": "u", "title": 1}, filename="a.pdf"))
    assert isinstance(ok, TransformedAsset)
    assert ok.values["file"] == [{"locale": None, "channel": None, "data": "a/b/1_a.pdf"}]
    bad = t.transform(DamAsset("B", "dam", {"original": "u", "title": "x"}, filename="b.pdf"))
    assert isinstance(bad, Quarantined) and bad.field == "title"
    assert dam.opened == ["A"]  # B was not even downloaded
    gone = t.transform(DamAsset("C", "dam", {"original": "u"}, filename="c.pdf"))
    assert isinstance(gone, Quarantined)
    assert (gone.field, gone.reason) == ("file", "cannot read the file from the DAM: gone")
    no_value = t.transform(DamAsset("D", "dam", {}, filename="d.pdf"))
    assert isinstance(no_value, TransformedAsset) and no_value.values == {}


def test_pim_upload_errors(namespace: str, redis_client: redis.Redis) -> None:
    dam = FakeDam({"A": b"%PDF a"})
    refused = transform_with(
        handler(dam, FakeUploader(PermanentPimError("too big", status=422)), redis_client)
    )
    result = refused.transform(DamAsset("A", "dam", {"original": "u"}, filename="a.pdf"))
    assert isinstance(result, Quarantined)
    assert result.reason == "the PIM rejected the file 'a.pdf': 422 too big"
    down = transform_with(
        handler(dam, FakeUploader(TransientPimError("busy", status=503)), redis_client)
    )
    with pytest.raises(TransientPimError):
        down.transform(DamAsset("A", "dam", {"original": "u"}, filename="a.pdf"))


def test_a_flaky_dam_download_is_retried_not_quarantined(
    namespace: str, redis_client: redis.Redis
) -> None:
    from connector.dam.base import TransientDamError

    dam = FakeDam({"A": TransientDamError("DAM answered 503", retry_after=2.0)})
    t = transform_with(handler(dam, FakeUploader(), redis_client))
    with pytest.raises(TransientDamError):
        t.transform(DamAsset("A", "dam", {"original": "u"}, filename="a.pdf"))


def test_an_unchanged_asset_is_not_even_downloaded_again(
    namespace: str, redis_client: redis.Redis
) -> None:
    from datetime import UTC, datetime

    def version(updated: datetime) -> DamAsset:
        return DamAsset(
            id="A",
            source="dam",
            properties={"original": "x"},
            filename="guide.pdf",
            media_url="http://dam/media/A/guide.pdf",
            updated=updated,
        )

    monday, tuesday = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    dam = FakeDam({"A": b"%PDF-1 v1"})
    up = FakeUploader()
    assert handler(dam, up, redis_client).media_code(version(monday), "g", PDF) == "a/b/1_guide.pdf"
    # another worker, same version: neither a download nor an upload
    again = handler(dam, FakeUploader(), redis_client)
    assert again.media_code(version(monday), "g", PDF) == "a/b/1_guide.pdf"
    assert dam.opened == ["A"]
    # the DAM replaced the file (and bumped `updated`): downloaded, hashed, uploaded again
    dam.files["A"] = b"%PDF-1 v2"
    assert (
        handler(dam, up, redis_client).media_code(version(tuesday), "g", PDF) == "a/b/2_guide.pdf"
    )
    assert dam.opened == ["A", "A"]
