"""Dry run and explain never write: real Celery worker, sandbox DAM and PIM over HTTP.

The demo config has a media_file attribute (user guides: the PDF itself) and
auto-created options (packshot tags). A `--dry-run --full` sync and `explain` must make
no PIM request but GETs (the OAuth token aside) and change no Redis state outside the
run's own records, while reporting the uploads and options they would make; the real
sync of the same data then makes exactly those, with the planned values.

Size: E2E_DRY_ASSETS sandbox records (default 150: 23 user guides, 5 new tag options).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.pipeline import run_report
from tests.e2e.expected import family_of
from tests.e2e.world import ROOT, SOURCE, World, env_int

pytestmark = pytest.mark.timeout(300)

CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
TOKEN_PATH = "/api/oauth/v1/token"
FAMILIES = ("packshots", "user_guides", "videos")
# Keys that only mirror reads or pace requests (rate-limit budgets and gates, the OAuth
# token, structure-cache statistics and single-flight locks), the broker's, the runs' own
# records and the metrics counters (the dry run's reads are real requests, so they count):
# everything else is connector state a dry run must leave alone.
_NOT_STATE = re.compile(
    r"^(run:|runs:|lock:run:|celery:|pim:token|pim:budget:|dam:[^:]+:budget:"
    r"|structure:stats|structure:lock:|metrics$)"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    broker = os.environ.get("E2E_BROKER_URL") or redis_url
    w = World(Path(tmp_path_factory.mktemp("dry")), broker, env_int("E2E_DRY_ASSETS", 150))
    try:
        w.start()
        w.start_worker(concurrency=2)
        assert w.services is not None
        for family in FAMILIES:  # the structure cache is a copy of PIM reads: fill it first
            w.services.cache.family(family)
        yield w
    finally:
        w.stop()


def cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONNECTOR, *args], cwd=ROOT, env=world.env(), capture_output=True,
                          text=True, timeout=240, check=False)


def state(world: World) -> dict[str, Any]:
    """Every connector-state key of the test namespace with its content."""
    from connector.redis_conn import get_redis

    redis: Any = get_redis(world.redis_url)  # the synchronous client
    prefix = world.namespace + ":"
    out: dict[str, Any] = {}
    for raw in redis.scan_iter(match=prefix + "*", count=1000):
        key = raw.decode()[len(prefix):]
        if _NOT_STATE.match(key):
            continue
        kind = redis.type(raw).decode()
        value: Any
        if kind == "string":
            value = redis.get(raw)
        elif kind == "hash":
            value = redis.hgetall(raw)
        elif kind == "set":
            value = redis.smembers(raw)
        elif kind == "zset":
            value = redis.zrange(raw, 0, -1, withscores=True)
        elif kind == "list":
            value = redis.lrange(raw, 0, -1)
        else:
            value = kind
        out[key] = value
    return out


def pim_writes(world: World, since: float) -> list[str]:
    assert world.pim is not None
    return [f"{r['method']} {r['path']}" for r in world.pim.log(since)
            if r["method"] not in ("GET", "HEAD") and r["path"] != TOKEN_PATH]


def tag_options(world: World) -> set[str]:
    assert world.pim is not None
    return {o["code"] for o in world.pim.store.list_options("packshots", "tags")}


def dam_tags(world: World) -> set[str]:
    """Tags of the DAM's packshots: the options a first sync needs (tags: auto-created)."""
    assert world.dam is not None
    bad = {b["id"] for b in world.dam.bad_records()}
    records = [world.dam.record(i) for i in world.dam.ids() if i not in bad]
    return {t for r in records if r and family_of(r) == "packshots" for t in r.get("tags") or ()}


def first_of(world: World, family: str) -> str:
    assert world.dam is not None
    bad = {b["id"] for b in world.dam.bad_records()}
    return next(i for i in world.dam.ids()
                if i not in bad and family_of(world.dam.record(i)) == family)  # type: ignore[arg-type]


def test_dry_run_and_explain_write_nothing_then_the_real_sync_does_what_they_planned(
    world: World,
) -> None:
    assert world.pim is not None and world.services is not None
    options_before = tag_options(world)
    before, since = state(world), time.time()

    dry = cli(world, "sync", SOURCE, "--dry-run", "--full", "--wait")
    assert dry.returncode == 1, dry.stdout + dry.stderr  # 1: the sandbox's bad records
    writes = pim_writes(world, since)
    assert writes == [], f"{len(writes)} PIM writes, e.g. {writes[:3]}"
    assert state(world) == before
    assert world.pim.store.media == {} and tag_options(world) == options_before

    (run_id,) = world.services.runs.run_ids(SOURCE, 1)
    report = run_report(run_id, services=world.services)
    counts = report["counts"]
    assert report["dry_run"] and counts["dry_run"]
    assert counts["would_create"] == counts["created"] > 0
    planned = counts["planned"]
    uploads = {e["sha256"]: e for e in planned if e["effect"] == "upload_media"}
    options = {e["code"] for e in planned if e["effect"] == "create_option"}
    assert counts["would_upload"] == len(uploads) > 10, counts  # one per distinct content
    assert counts["would_create_options"] == len(options) == 5, counts
    assert options == dam_tags(world) - options_before
    assert all(e["filename"].endswith(".pdf") and e["size"] > 0 for e in uploads.values())
    # the CLI says what it would do, never "pushed"/"created"
    assert "(dry run: nothing was written)" in dry.stdout
    assert f"would upload {len(uploads)} files" in dry.stdout
    assert "would create 5 options" in dry.stdout
    assert "would create option `tags.autumn`" in dry.stdout
    assert re.search(r"would upload `[^`]+\.pdf` \(sha256 [0-9a-f]{12}…, [\d.]+ k?B\)", dry.stdout)
    assert "pushed" not in dry.stderr and "(dry run)" in dry.stderr
    # value by value, for the assets it would create too, and bounded
    assert re.search(r"\n  create    packshots/\S+ \(DAM [^)]+\)\n"
                     r"      \w+\[[^]]*\]: PIM \(none\) → DAM ", dry.stdout), dry.stdout
    shown = dry.stdout.count("\n  create    ") + dry.stdout.count("\n  update    ")
    assert shown == 20
    assert f"  … and {counts['created'] - 20} more assets (--json lists all" in dry.stdout
    status = cli(world, "status", SOURCE)
    assert status.returncode == 0 and f"dry run: would create {counts['created']}" in status.stdout

    # explain: same planning, nothing written either
    guide, packshot = first_of(world, "user_guides"), first_of(world, "packshots")
    since = time.time()
    explained = {}
    for dam_id in (guide, packshot):
        out = cli(world, "explain", dam_id, "--json")
        assert out.returncode == 0, out.stderr
        explained[dam_id] = json.loads(out.stdout)
    text = cli(world, "explain", guide)
    assert re.search(r"· would upload `[^`]+\.pdf`", text.stdout), text.stdout
    assert pim_writes(world, since) == [] and state(world) == before
    (upload,) = explained[guide]["planned_effects"]
    assert upload["effect"] == "upload_media" and upload["sha256"] in uploads

    # the real sync makes exactly the planned writes, and the planned values
    real = world.sync(full=True)
    assert real["state"] == "succeeded", real
    assert "dry_run" not in real["counts"]
    stored = {hashlib.sha256(m.content).hexdigest() for m in world.pim.store.media.values()}
    assert stored == set(uploads)
    assert tag_options(world) - options_before == options
    for dam_id, info in explained.items():
        planned_asset = info["transformed"]
        (landed,) = [a for a in world.pim.dump_assets(planned_asset["family"])
                     if a["code"] == planned_asset["code"]]
        for attribute, values in planned_asset["values"].items():
            for value in values:
                (pim_value,) = [v for v in landed["values"][attribute]
                                if (v["locale"], v["channel"]) == (value["locale"],
                                                                   value["channel"])]
                data = value["data"]
                if isinstance(data, str) and data.startswith("(upload "):  # planned upload
                    content = world.pim.store.get_media(pim_value["data"]).content
                    assert data.endswith(f"sha256:{hashlib.sha256(content).hexdigest()})")
                else:
                    assert pim_value["data"] == data, (dam_id, attribute)


def test_a_dry_run_after_the_sync_plans_no_upload_and_reports_deletions(world: World) -> None:
    """Known files are reused (fingerprint): nothing to upload; a DAM deletion is reported
    as "would delete" and the PIM asset stays."""
    assert world.pim is not None and world.dam is not None and world.services is not None
    gone = first_of(world, "videos")
    code = world.services.assets.get(SOURCE, gone).code  # type: ignore[union-attr]
    assert world.dam.delete(gone)
    before, since = state(world), time.time()

    dry = world.sync(dry_run=True)  # since the watermark: the deletion is in it
    assert pim_writes(world, since) == [] and state(world) == before
    counts = dry["counts"]
    assert counts["would_upload"] == counts["would_create_options"] == 0, counts
    assert counts["would_delete"] == 1 and counts["would_create"] == 0, counts
    (deletion,) = [e for e in counts["planned"] if e["effect"] == "delete"]
    assert deletion["text"] == f"would delete videos/{code} (DAM {gone} is gone)"
    assert any(a["code"] == code for a in world.pim.dump_assets("videos"))
