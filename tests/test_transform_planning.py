"""Planning mode of the Transformer: what a record needs (options to create, files to
upload) without doing any of it; the real run executes the same plan."""

from __future__ import annotations

import hashlib
from typing import Any

import redis

from connector.config.model import (
    AttributeMapping,
    Config,
    FamilyConfig,
    Selector,
    SourceConfig,
    ValueSource,
)
from connector.dam.base import DamAsset
from connector.pim.errors import PermanentPimError
from connector.pim.structure import AssetFamilyStructure
from connector.redis_conn import Keys
from connector.transform.plan import PlannedAsset
from connector.transform.result import Quarantined, TransformedAsset
from connector.transform.transformer import Transformer
from tests.test_transform_media import PDF, FakeDam, FakeUploader, handler, transform_with
from tests.test_transform_transformer import Writer, auto_config, packshot, transformer


def _namespace_keys(client: redis.Redis) -> dict[bytes, Any]:
    """Every key of this test's namespace with its value (a write anywhere shows)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{Keys().namespace}:*", count=1000):
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        else:
            out[key] = kind
    return out


def guide(dam_id: str = "A", filename: str = "guide_fr.pdf", **props: Any) -> DamAsset:
    return DamAsset(dam_id, "dam", {"original": "u", "title": 1, **props}, filename=filename)


def test_planning_creates_no_option_and_lists_it() -> None:
    writer = Writer()
    t = transformer(auto_config(), options=writer)
    planned = t.plan(packshot(property_colors="red,Light Blue"))
    assert isinstance(planned, PlannedAsset)
    assert writer.calls == []
    assert planned.asset.values["main_colors"][0]["data"] == ["red", "light_blue"]
    (effect,) = planned.effects()
    assert effect["effect"] == "create_option"
    assert (effect["family"], effect["attribute"], effect["code"]) == (
        "packshots", "main_colors", "light_blue"
    )
    assert effect["text"] == "would create option `main_colors.light_blue`"
    # planning again still plans it (nothing was created), and still writes nothing
    again = t.plan(packshot(property_colors="Light Blue"))
    assert isinstance(again, PlannedAsset) and len(again.effects()) == 1
    assert writer.calls == []


def test_the_real_run_executes_the_plan_and_gets_the_planned_values() -> None:
    writer = Writer()
    t = transformer(auto_config(), options=writer)
    planned = t.plan(packshot(property_colors="red,Light Blue"))
    assert isinstance(planned, PlannedAsset)
    done = t.execute(planned)
    assert isinstance(done, TransformedAsset)
    assert done == planned.asset  # no media: the plan's values are the final ones
    assert writer.calls == [("packshots", "main_colors", "light_blue", "Light Blue")]
    assert t.transform(packshot(property_colors="red,Light Blue")) == done
    assert len(writer.calls) == 1  # created once per process


def test_a_refused_option_quarantines_at_execution() -> None:
    t = transformer(auto_config(), options=Writer(PermanentPimError("bad code", status=422)))
    planned = t.plan(packshot(property_colors="Light Blue"))
    assert isinstance(planned, PlannedAsset)
    result = t.execute(planned)
    assert isinstance(result, Quarantined)
    assert result.reason == "the PIM refused to create option light_blue: 422 bad code"


def test_planning_a_media_file_downloads_but_uploads_and_records_nothing(
    namespace: str, redis_client: redis.Redis
) -> None:
    content = b"%PDF-1 guide " * 40
    dam, up = FakeDam({"A": content}), FakeUploader()
    t = transform_with(handler(dam, up, redis_client))
    before = _namespace_keys(redis_client)
    planned = t.plan(guide())
    assert isinstance(planned, PlannedAsset)
    assert up.uploads == [] and dam.opened == ["A"]
    assert _namespace_keys(redis_client) == before  # no sha256 / asset record written
    (effect,) = planned.effects()
    digest = hashlib.sha256(content).hexdigest()
    assert effect["effect"] == "upload_media"
    assert (effect["filename"], effect["sha256"], effect["size"]) == (
        "guide_fr.pdf", digest, len(content)
    )
    assert effect["text"] == f"would upload `guide_fr.pdf` (sha256 {digest[:12]}…, 520 B)"
    # the planned value says what it waits for; it never reaches the PIM as such
    assert planned.asset.values["file"][0]["data"] == f"(upload guide_fr.pdf sha256:{digest})"


def test_executing_a_media_plan_uploads_once_and_fills_the_code(
    namespace: str, redis_client: redis.Redis
) -> None:
    dam, up = FakeDam({"A": b"%PDF a", "B": b"%PDF a"}), FakeUploader()
    t = transform_with(handler(dam, up, redis_client))
    planned = t.plan(guide(), keep_binaries=True)
    assert isinstance(planned, PlannedAsset)
    done = t.execute(planned)
    assert isinstance(done, TransformedAsset)
    assert done.values["file"] == [{"locale": None, "channel": None, "data": "a/b/1_guide_fr.pdf"}]
    assert up.uploads == [("guide_fr.pdf", b"%PDF a")]
    assert dam.opened == ["A"]  # the binary kept from planning was uploaded: no 2nd GET
    # same content elsewhere: the plan already knows the code, nothing to upload
    reuse = t.plan(guide("B", "other.pdf"))
    assert isinstance(reuse, PlannedAsset) and reuse.effects() == []
    assert reuse.asset.values["file"][0]["data"] == "a/b/1_guide_fr.pdf"


def test_a_plan_without_kept_binary_downloads_again_to_upload(
    namespace: str, redis_client: redis.Redis
) -> None:
    dam, up = FakeDam({"A": b"%PDF a"}), FakeUploader()
    t = transform_with(handler(dam, up, redis_client))
    planned = t.plan(guide())
    assert isinstance(planned, PlannedAsset)
    done = t.execute(planned)
    assert isinstance(done, TransformedAsset)
    assert up.uploads == [("guide_fr.pdf", b"%PDF a")] and dam.opened == ["A", "A"]
    # the DAM file changed between plan and execution: never upload unplanned content
    dam2, up2 = FakeDam({"A": b"%PDF b"}), FakeUploader()
    t2 = transform_with(handler(dam2, up2, redis_client))
    stale = t2.plan(guide("A", "moved.pdf"))
    assert isinstance(stale, PlannedAsset)
    dam2.files["A"] = b"%PDF changed"
    result = t2.execute(stale)
    assert isinstance(result, Quarantined) and result.field == "file"
    assert "changed since it was planned" in result.reason
    assert up2.uploads == []


def test_a_record_failing_elsewhere_is_not_downloaded(
    namespace: str, redis_client: redis.Redis
) -> None:
    dam = FakeDam({"A": b"%PDF a"})
    t = transform_with(handler(dam, FakeUploader(), redis_client))
    result = t.plan(guide(title="x"))
    assert isinstance(result, Quarantined) and result.field == "title"
    assert dam.opened == []


def test_quarantine_and_skips_are_the_same_in_planning() -> None:
    t = transformer()
    assert t.plan(packshot(width="wide")) == t.transform(packshot(width="wide"))


def test_media_planning_uses_a_known_fingerprint_without_download(
    namespace: str, redis_client: redis.Redis
) -> None:
    from datetime import UTC, datetime

    asset = DamAsset("A", "dam", {"original": "u", "title": 1}, filename="g.pdf",
                     media_url="http://dam/A/g.pdf", updated=datetime(2026, 1, 1, tzinfo=UTC))
    dam, up = FakeDam({"A": b"%PDF a"}), FakeUploader()
    t = transform_with(handler(dam, up, redis_client))
    assert isinstance(t.transform(asset), TransformedAsset)
    planned = t.plan(asset)
    assert isinstance(planned, PlannedAsset) and planned.effects() == []
    assert planned.asset.values["file"][0]["data"] == "a/b/1_g.pdf"
    assert dam.opened == ["A"]


def test_planning_a_media_file_without_handler_quarantines() -> None:
    fam = FamilyConfig(
        name="g", match=Selector(always=True),
        mapping=(AttributeMapping("file", ValueSource(property="original")),),
    )
    source = SourceConfig(name="dam", type="rest")
    structure = AssetFamilyStructure("g", {"file": PDF})
    t = Transformer(Config(families=(fam,), sources=(source,)), source, lambda c: structure)
    result = t.plan(guide())
    assert isinstance(result, Quarantined) and "media handler" in result.reason
