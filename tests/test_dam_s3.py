"""The S3 adapter (connector/dam/s3.py) against moto's S3 in server mode: listing across
continuation tokens, metadata and tags as properties, changed-since, downloads with the
size cap, errors, the config section, and a sync through the pipeline to the sandbox PIM."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.config import ConfigError, load_config
from connector.config.model import MediaConfig, S3SourceConfig
from connector.dam.base import DamError
from connector.dam.factory import build_source
from connector.dam.media import MediaTooLargeError
from connector.dam.s3 import S3Source
from tests.aws_moto import REGION, Aws
from tests.helpers import wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _source(aws: Aws, bucket: str, max_bytes: int = 10_000, **kw: object) -> S3Source:
    config = S3SourceConfig(bucket=bucket, endpoint_url=aws.url, region=REGION, **kw)  # type: ignore[arg-type]
    return S3Source("bucket", config, MediaConfig(max_bytes=max_bytes))


def test_listing_follows_continuation_tokens_under_the_prefix(aws: Aws) -> None:
    bucket = aws.bucket()
    for i in range(25):
        aws.s3.put_object(Bucket=bucket, Key=f"guides/g{i:02d}.pdf", Body=b"%PDF")
    aws.s3.put_object(Bucket=bucket, Key="guides/sub/", Body=b"")  # a "folder" marker
    aws.s3.put_object(Bucket=bucket, Key="other/x.pdf", Body=b"%PDF")
    source = _source(aws, bucket, prefix="guides/", page_size=10, metadata=False, tags=False)

    pages = list(source.changed_since(None))

    assert [len(p.assets) for p in pages] == [10, 10, 5]
    assert [a.id for p in pages for a in p.assets] == [f"guides/g{i:02d}.pdf" for i in range(25)]
    assert source.requests == {"ListObjectsV2": 3}
    assert sorted(source.all_ids()) == [f"guides/g{i:02d}.pdf" for i in range(25)]
    assert source.requests == {"ListObjectsV2": 6}  # the id listing costs no per-key request


def test_a_resumed_listing_starts_after_the_last_key_of_the_page(aws: Aws) -> None:
    """A fetch in parts (steps/slices.py): the token is the page's last key, and the
    listing goes on from there (StartAfter) instead of re-reading the pages before it."""
    bucket = aws.bucket()
    keys = [f"guides/g{i:02d}.pdf" for i in range(25)]
    for key in keys:
        aws.s3.put_object(Bucket=bucket, Key=key, Body=b"%PDF")
    source = _source(aws, bucket, prefix="guides/", page_size=10, metadata=False, tags=False)

    first, token = next(iter(source.changed_pages(None)))
    assert [a.id for a in first.assets] == keys[:10] and token is not None
    rest = list(source.changed_pages(None, token))

    assert [a.id for page, _ in rest for a in page.assets] == keys[10:]
    assert [t is None for _, t in rest] == [False, True]
    assert source.requests == {"ListObjectsV2": 3}  # one for the first page, two after it


def test_metadata_and_tags_become_properties(aws: Aws) -> None:
    bucket = aws.bucket()
    aws.s3.put_object(
        Bucket=bucket, Key="guides/fr/allie jean_user_guide_fr_FR.pdf", Body=b"%PDF-1.4",
        ContentType="application/pdf", Metadata={"title": "Allie jean", "sku": "allie-jean"},
        Tagging="status=approved&product=",
    )
    source = _source(aws, bucket)

    [page] = list(source.changed_since(None))
    [asset] = page.assets

    assert asset.id == "guides/fr/allie jean_user_guide_fr_FR.pdf"
    assert (asset.filename, asset.folder) == ("allie jean_user_guide_fr_FR.pdf", "guides/fr")
    assert asset.tags == ("product", "status=approved")
    assert asset.media_url == f"s3://{bucket}/guides/fr/allie jean_user_guide_fr_FR.pdf"
    props = asset.properties
    assert props["metadata"] == {"title": "Allie jean", "sku": "allie-jean"}
    assert props["tags"] == {"status": "approved", "product": ""}
    assert (props["content_type"], props["size"], props["extension"]) == (
        "application/pdf", 8, "pdf")
    assert asset.updated is not None and props["last_modified"] == asset.updated.isoformat()
    assert source.requests == {"ListObjectsV2": 1, "HeadObject": 1, "GetObjectTagging": 1}
    assert source.get(asset.id) == asset
    assert source.get("guides/missing.pdf") is None
    assert source.get("elsewhere.pdf") is None  # outside the prefix: never ours
    assert source.get("guides/fr/") is None


def test_changed_since_lists_everything_but_fetches_details_of_changed_objects_only(
    aws: Aws,
) -> None:
    bucket = aws.bucket()
    for i in range(12):
        aws.s3.put_object(Bucket=bucket, Key=f"old-{i:02d}.pdf", Body=b"%PDF")
    listed = aws.s3.list_objects_v2(Bucket=bucket)["Contents"]
    newest_old = max(o["LastModified"] for o in listed)
    same_second = sorted(o["Key"] for o in listed if o["LastModified"] == newest_old)
    # S3's LastModified has whole seconds: let the clock pass the old objects' second
    wait_for(lambda: datetime.now(UTC) >= newest_old + timedelta(seconds=1), timeout=5,
             what="the next second")
    aws.s3.put_object(Bucket=bucket, Key="new.pdf", Body=b"%PDF", Metadata={"title": "New"})
    source = _source(aws, bucket, page_size=5)

    changed = [a for p in source.changed_since(newest_old + timedelta(seconds=1))
               for a in p.assets]

    assert [a.id for a in changed] == ["new.pdf"]
    assert changed[0].properties["metadata"] == {"title": "New"}
    # every key is listed (S3 cannot filter by date), details only for the changed one
    assert source.requests == {"ListObjectsV2": 3, "HeadObject": 1, "GetObjectTagging": 1}
    # the watermark is inclusive: an object modified in the watermark's second is seen
    again = [a.id for p in source.changed_since(newest_old) for a in p.assets]
    assert again == ["new.pdf", *same_second]


def test_download_streams_the_object_and_stops_at_the_cap(aws: Aws) -> None:
    bucket = aws.bucket()
    aws.s3.put_object(Bucket=bucket, Key="small.pdf", Body=b"x" * 900)
    aws.s3.put_object(Bucket=bucket, Key="big.pdf", Body=b"y" * 1500)
    source = _source(aws, bucket, max_bytes=1000, metadata=False, tags=False)
    assets = {a.id: a for p in source.changed_since(None) for a in p.assets}

    with source.open_binary(assets["small.pdf"]) as stream:
        assert stream.read() == b"x" * 900
        spooled = Path(stream.name)
    assert not spooled.exists()  # the temporary file is gone with the context
    with pytest.raises(MediaTooLargeError) as exc:
        source.open_binary(assets["big.pdf"]).__enter__()
    assert str(exc.value) == (
        f"s3://{bucket}/big.pdf is 1500 bytes (ContentLength), over the 1000-byte cap")
    aws.s3.delete_object(Bucket=bucket, Key="small.pdf")
    with pytest.raises(DamError, match=r"small\.pdf no longer exists"):
        source.open_binary(assets["small.pdf"]).__enter__()


def test_a_missing_bucket_and_missing_credentials_say_what_to_fix(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(aws, "no-such-bucket-here")
    with pytest.raises(DamError) as exc:
        list(source.changed_since(None))
    assert str(exc.value) == (
        "bucket: bucket 'no-such-bucket-here' does not exist (check sources.bucket.s3.bucket "
        "and region)")
    assert exc.value.key == "sources.bucket.s3.bucket"

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DamError) as exc:
        list(_source(aws, aws.bucket()).changed_since(None))
    assert "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in str(
        exc.value)


def test_without_boto3_the_source_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 → ImportError
    source = S3Source("bucket", S3SourceConfig(bucket="dam-assets"))
    with pytest.raises(DamError) as exc:
        list(source.changed_since(None))
    assert str(exc.value) == (
        "source 'bucket' (type s3) needs boto3, which is not installed: "
        "pip install 'dam-akeneo-connector[s3]'")


def test_config_section_and_example(tmp_path: Path) -> None:
    config = load_config(EXAMPLES / "s3.yaml", env={"S3_BUCKET": "dam-assets"})
    source = config.source("bucket")
    assert source.s3 is not None and (source.s3.bucket, source.s3.prefix) == (
        "dam-assets", "guides/")
    assert source.queue is not None and source.queue.transport == "sqs"
    assert isinstance(build_source(source), S3Source)

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "families: {user_guides: {match: {always: true}, mapping: {title: {constant: x}}}}\n"
        "sources:\n"
        "  b:\n"
        "    type: s3\n"
        "    s3: {bucket: 's3://x', access_key_id: '${KEY}', page_size: 5000}\n"
        "    folder: {path: /tmp}\n"
        "    queue: {transport: sqs, name: q, group: g, prefetch: 50}\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_config(bad, env={"KEY": "k"})
    text = str(exc.value)
    for expected in (
        "sources.b.s3.bucket: must be an S3 bucket name",
        "sources.b.s3.page_size: must be at most 1000 (S3 lists at most 1000 keys a page)",
        "sources.b.folder: only used when type is folder",
        'sources.b.queue.group: not used by transport "sqs"',
        "sources.b.queue.prefetch: must be at most 10 for sqs",
    ):
        assert expected in text, text


def test_connector_check_probes_the_bucket(aws: Aws) -> None:
    """`connector check`'s DAM probe goes through the adapter: a reachable bucket is
    sampled, a missing one is a finding under the key to change."""
    import dataclasses

    from connector.structure.dam_probe import probe_source

    bucket = aws.bucket()
    aws.s3.put_object(Bucket=bucket, Key="guides/a_user_guide_en_US.pdf", Body=b"%PDF")
    source = load_config(EXAMPLES / "s3.yaml", env={"S3_BUCKET": bucket}).source("bucket")
    assert source.s3 is not None
    source = dataclasses.replace(
        source, s3=dataclasses.replace(source.s3, endpoint_url=aws.url, region=REGION))
    assert source.s3 is not None
    found = probe_source(source, 5)
    assert (found.reachable, found.sampled, found.findings) == (True, 1, [])
    found.close()
    missing = dataclasses.replace(
        source, s3=dataclasses.replace(source.s3, bucket="no-such-bucket-here"))
    found = probe_source(missing, 5)
    assert [f.path for f in found.findings] == ["sources.bucket.s3.bucket"]
    found.close()
