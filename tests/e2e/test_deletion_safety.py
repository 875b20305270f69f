"""Deletions are safe, guarded and visible, end to end: sandbox DAM → real `celery -A tasks
worker` → sandbox PIM over HTTP, real Redis, the CLI through click's CliRunner.

- a DAM record that turns bad (unparsable date) still exists: reconcile deletes nothing;
- a DAM that suddenly lists nothing, or a deletion feed naming too many assets: nothing is
  deleted, the command or run fails naming the numbers; `--allow-mass-deletion` overrides
  once;
- a DELETE the PIM refuses (403) is a dead letter of kind `deletion`, listed, the run exits
  1, and `failures retry` re-applies it once the PIM accepts;
- DELETEs answered 429/503 are retried (Retry-After honoured) and end deleted, no dead letter.

The tests share one small world and each leaves the PIM in step with the DAM.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.pipeline import dead_letters, reconcile, set_services
from connector.transform.codes import asset_code
from tests.e2e.expected import pim_assets
from tests.e2e.world import SOURCE, World, env_int

pytestmark = pytest.mark.timeout(300)

GUARD = "(limit 500 or 10 %): nothing deleted; check the DAM, or run " \
        f"`connector reconcile {SOURCE} --apply --allow-mass-deletion` once"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[World]:
    broker = os.environ.get("E2E_BROKER_URL") or redis_url
    w = World(Path(tmp_path_factory.mktemp("deletions")), broker,
              env_int("E2E_DELETION_ASSETS", 60))
    try:
        w.start()
        w.start_worker(concurrency=2)
        first = w.sync()
        assert first["state"] == "succeeded", first
        yield w
    finally:
        w.stop()


def _cli(world: World, *args: str) -> Result:
    """The CLI in this process, on the world's services (its Celery app, its namespace)."""
    set_services(world.services)
    try:
        return CliRunner().invoke(main, list(args), env=world.env())
    finally:
        set_services(None)


def _pim(world: World) -> set[str]:
    assert world.pim is not None
    return set(pim_assets(world.pim))


def _landed(world: World, n: int) -> list[str]:
    """n DAM ids whose asset is in the PIM now."""
    assert world.dam is not None
    codes = _pim(world)
    found = [dam_id for dam_id in world.dam.ids() if asset_code(dam_id) in codes]
    assert len(found) >= n, (len(found), n)
    return found[:n]


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


def test_a_record_that_turns_bad_still_exists_and_is_never_deleted(world: World) -> None:
    assert world.dam is not None
    victim = _landed(world, 1)[0]
    world.dam.edit(victim, {"dateModified": "not-a-date"}, raw=True)
    try:
        result = _cli(world, "reconcile", SOURCE, "--apply", "--json")
        assert result.exit_code == 0, result.output
        report = _json(result)[0]
        assert report["orphans"] == 0, report
        assert asset_code(victim) in _pim(world)
        run = world.sync()  # the bad record is quarantined, not taken for a deletion
        assert run["counts"]["deleted"] == 0 and run["counts"]["quarantined"] >= 1, run
        assert asset_code(victim) in _pim(world)
    finally:
        world.dam.edit(victim, {})  # a sound record again


def test_a_dam_listing_nothing_deletes_nothing_until_allowed_once(world: World) -> None:
    assert world.dam is not None
    before = _pim(world)
    n = len(before)
    world.dam.configure(list_empty=True)
    try:
        refused = _cli(world, "reconcile", SOURCE, "--apply")
        assert refused.exit_code == 1, refused.output
        assert f"reconcile would delete {n:,} of {n:,} assets of source {SOURCE} {GUARD}" in (
            refused.output)
        # the beat's reconcile (apply=True, no override) refuses the same way
        from connector.pipeline import MassDeletionError

        with pytest.raises(MassDeletionError):
            reconcile(SOURCE, apply=True, services=world.services)
        assert _pim(world) == before
        allowed = _cli(world, "reconcile", SOURCE, "--apply", "--allow-mass-deletion", "--json")
        assert allowed.exit_code == 0, allowed.output
        assert _json(allowed)[0]["deletions"]["deleted"] == n
        assert _pim(world) == set()
    finally:
        world.dam.configure(list_empty=False)
    restored = world.sync(full=True)
    assert restored["counts"]["created"] == n, restored
    assert _pim(world) == before


def test_a_deletion_feed_over_the_limit_fails_the_run_and_deletes_nothing(world: World) -> None:
    assert world.dam is not None
    n = len(_pim(world))
    gone = _landed(world, n // 4)
    for dam_id in gone:
        world.dam.delete(dam_id)
    run = world.sync()
    assert run["state"] == "failed", run
    assert f"would delete {len(gone):,} of {n:,} assets of source {SOURCE} {GUARD}" in (
        run["error"] or ""), run["error"]
    assert run["counts"]["deleted"] == 0
    assert {asset_code(d) for d in gone} <= _pim(world)
    # the operator checked the DAM: they are gone there → one reconcile with the override
    allowed = _cli(world, "reconcile", SOURCE, "--apply", "--allow-mass-deletion", "--json")
    assert allowed.exit_code == 0, allowed.output
    assert _json(allowed)[0]["deletions"]["deleted"] == len(gone)
    assert not {asset_code(d) for d in gone} & _pim(world)
    after = world.sync()  # the same feed again: already done, nothing left to guard
    assert after["state"] == "succeeded", after


def test_a_refused_deletion_is_a_dead_letter_listed_and_retried(world: World) -> None:
    assert world.dam is not None and world.pim is not None
    victim = _landed(world, 1)[0]
    world.pim.update_settings(forbid_delete_codes=[asset_code(victim)])  # 403 for it
    world.dam.delete(victim)
    result = _cli(world, "sync", SOURCE, "--wait", "--json")
    assert result.exit_code == 1, result.output
    counts = _json(result)["runs"][0]["counts"]
    assert counts["deletion_failed"] == 1, counts
    listed = _cli(world, "failures", "list", SOURCE, "--json")
    letters = _json(listed)[SOURCE]
    assert [(d["dam_id"], d["kind"], d["status"]) for d in letters] == [
        (victim, "deletion", 403)], letters
    assert "not allowed to delete" in letters[0]["message"]
    shown = _cli(world, "failures", "list", SOURCE)
    assert "deletion" in shown.output and "403" in shown.output, shown.output
    assert asset_code(victim) in _pim(world)
    # the PIM accepts now: the retry re-applies the deletion policy (no push)
    world.pim.update_settings(forbid_delete_codes=[])
    retried = _cli(world, "failures", "retry", SOURCE, "--all", "--wait", "--json")
    assert retried.exit_code == 0, retried.output
    assert asset_code(victim) not in _pim(world)
    assert dead_letters(SOURCE, services=world.services) == []


def test_transient_delete_answers_are_retried_honouring_retry_after(world: World) -> None:
    assert world.dam is not None and world.pim is not None
    victims = _landed(world, 3)
    world.pim.update_settings(delete_errors=[429, 503], retry_after=1, reject_early=True)
    since = time.time()
    try:
        for dam_id in victims:
            world.dam.delete(dam_id)
        run = world.sync()
    finally:
        world.pim.update_settings(delete_errors=[], reject_early=False)
    assert run["state"] == "succeeded", run
    assert run["counts"]["deletion_failed"] == 0 and run["counts"]["deleted"] >= 3, run
    assert dead_letters(SOURCE, services=world.services) == []
    assert not {asset_code(d) for d in victims} & _pim(world)
    # (the feed may name earlier deletions again within the watermark overlap: 404s)
    deletes = [c for c in world.pim.log(since) if c["method"] == "DELETE"]
    statuses = [c["status"] for c in deletes]
    assert (statuses.count(429), statuses.count(503)) == (1, 1), deletes
    for code in map(asset_code, victims):
        assert [c["status"] for c in deletes if c["path"].endswith(f"/{code}")][-1] == 204
    assert not any(c["early"] for c in deletes), deletes
