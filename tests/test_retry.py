"""connector/retry.py: the one retry policy (classification, waits, the in-process loop),
and the intake flush task retried by Celery's own options with a countdown from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from connector.dam.base import TransientDamError
from connector.dam.ratelimit import DamThrottledError
from connector.pim.errors import PermanentPimError, TransientPimError
from connector.retry import (
    backoff_delay,
    is_redis_outage,
    is_transient,
    is_transient_status,
    retry_after_of,
    retry_countdown,
    retrying,
    transient_errors,
)

ROOT = Path(__file__).resolve().parent.parent


class Boom(Exception):
    pass


def _flaky(outcomes: list[Any]) -> Any:
    def body() -> Any:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return body


def test_one_status_rule_for_both_sides() -> None:
    for status in (408, 420, 425, 429, 500, 501, 502, 503, 504, 599):
        assert is_transient_status(status), status
    for status in (200, 304, 400, 401, 403, 404, 413, 415, 422):
        assert not is_transient_status(status), status


def test_one_table_of_transient_errors() -> None:
    table = transient_errors()
    for exc in (TransientPimError("x"), TransientDamError("x"), DamThrottledError("x"),
                redis.ConnectionError(), redis.TimeoutError(), ConnectionError(),
                TimeoutError()):
        assert isinstance(exc, table) and is_transient(exc), exc
    for other in (PermanentPimError("x"), ValueError(), redis.ResponseError()):
        assert not isinstance(other, table) and not is_transient(other), other
    wrapped = TransientPimError("token store unavailable")
    wrapped.__cause__ = redis.ConnectionError("down")
    assert is_redis_outage(wrapped) and is_redis_outage(redis.TimeoutError())
    assert not is_redis_outage(TransientPimError("429"))


def test_backoff_doubles_up_to_the_cap_and_retry_after_wins() -> None:
    assert [backoff_delay(n, 0.5, 5.0, jitter=False) for n in range(1, 7)] == [
        0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(10_000, 1.0, 30.0, jitter=False) == 30.0  # no float overflow
    for attempt in range(1, 8):
        ceiling = min(20.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= backoff_delay(attempt, 2.0, 20.0) <= ceiling
    assert backoff_delay(1, 2.0, 20.0, retry_after=15.0) >= 15.0
    assert backoff_delay(1, 2.0, 20.0, retry_after=3600.0) == 20.0


def test_countdown_honours_the_retry_after_an_error_carries() -> None:
    assert retry_after_of(TransientDamError("x", retry_after=12)) == 12.0
    assert retry_after_of(TransientPimError("x")) is None
    assert retry_after_of(None) is None
    assert 12.0 <= retry_countdown(0, TransientDamError("x", retry_after=12), 2.0, 300.0) <= 12.0
    assert retry_countdown(5, TransientDamError("x", retry_after=900), 2.0, 300.0) == 300.0
    assert 1.0 <= retry_countdown(0, None, 2.0, 300.0) <= 2.0


def test_retrying_sleeps_the_schedule_then_returns() -> None:
    sleeps: list[float] = []
    told: list[tuple[int, float | None]] = []
    body = _flaky([Boom(), Boom(), "done"])
    result = retrying(body, retry_if=lambda e: isinstance(e, Boom),
                      wait=lambda n, e: 0.1 * n, attempts=3, sleep=sleeps.append,
                      on_retry=lambda n, e, d: told.append((n, d)))
    assert result == "done"
    assert sleeps == [0.1, 0.2]
    assert told == [(1, 0.1), (2, 0.2)]


def test_retrying_lets_other_errors_through_at_once() -> None:
    sleeps: list[float] = []
    with pytest.raises(ValueError):
        retrying(_flaky([ValueError("bug"), "never"]), retry_if=lambda e: isinstance(e, Boom),
                 wait=lambda n, e: 1.0, attempts=5, sleep=sleeps.append)
    assert sleeps == []


def test_retrying_gives_up_after_its_attempts() -> None:
    sleeps: list[float] = []
    with pytest.raises(Boom):  # no give_up: the last error itself
        retrying(_flaky([Boom("1"), Boom("2")]), retry_if=lambda e: isinstance(e, Boom),
                 wait=lambda n, e: 1.0, attempts=2, sleep=sleeps.append)
    assert sleeps == [1.0]
    with pytest.raises(TransientDamError, match="after 3 attempts") as caught:
        retrying(_flaky([Boom(), Boom(), Boom()]), retry_if=lambda e: isinstance(e, Boom),
                 wait=lambda n, e: None, attempts=3, sleep=sleeps.append,
                 give_up=lambda n, e: TransientDamError(f"after {n} attempts"))
    assert caught.value.__suppress_context__
    assert sleeps == [1.0]  # `None`: nothing slept here


def test_retrying_gives_up_when_the_next_wait_ends_past_its_patience() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    outage = [redis.ConnectionError(str(i)) for i in range(10)]
    with pytest.raises(redis.ConnectionError, match=r"^4$"):
        retrying(_flaky(outage), retry_if=is_redis_outage,
                 wait=lambda n, e: backoff_delay(n, 0.5, 5.0, jitter=False),
                 patience=10.0, sleep=sleep, clock=lambda: now[0])
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # 7.5 s slept; 5 more would end past 10


def test_a_wait_may_end_the_retries_with_its_own_error() -> None:
    def wait(n: int, exc: BaseException) -> float:
        raise TransientDamError("Retry-After too long", retry_after=3600)

    with pytest.raises(TransientDamError, match="too long"):
        retrying(_flaky([Boom(), "never"]), retry_if=lambda e: isinstance(e, Boom),
                 wait=wait, attempts=5, sleep=lambda s: None)


_FLUSH_PROBE = textwrap.dedent(
    """
    import json
    from celery.exceptions import Retry
    import tasks.intake as ti
    from connector.intake.events import Event
    from connector.pim.errors import TransientPimError

    source = ti.config().sources[0]
    store = ti.store_for(source)
    store.record([Event("upsert", "A"), Event("upsert", "B")], via="test")

    def fail(*args, **kwargs):
        raise TransientPimError("PIM answered 429", retry_after=RETRY_AFTER)

    scheduled = []
    ti._sync = fail
    ti.schedule_flush = lambda name, countdown: scheduled.append(countdown)
    countdowns, final = [], None

    class Stub:
        def apply_async(self):
            return None

    def signature_from_request(request=None, args=None, kwargs=None, **options):
        countdowns.append(options.get("countdown"))
        return Stub()

    ti.flush.signature_from_request = signature_from_request
    for retries in range(MAX_RETRIES + 2):
        ti.flush.push_request(retries=retries, called_directly=False, id="task-1",
                              args=(source.name,), kwargs={})
        try:
            ti.flush.run(source.name)
        except Retry:
            pass
        except TransientPimError:
            final = retries
            break
        finally:
            ti.flush.pop_request()
    print(json.dumps({"countdowns": countdowns, "final": final,
                      "failed": sorted(store.failed()), "pending": store.pending_ids()}))
    """
)


def _flush_run(tmp_path: Path, namespace: str, retry_after: float | None) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    name = next(iter(data["sources"]))
    data["sources"][name]["realtime"] = {"max_retries": 3, "window": "1s"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update({"CONNECTOR_CONFIG": str(config), "DAM_TOKEN": "t", "PYTHONPATH": str(ROOT),
                "CONNECTOR_NAMESPACE": f"{namespace}-{retry_after}"})
    code = f"RETRY_AFTER = {retry_after!r}\nMAX_RETRIES = 3\n" + _FLUSH_PROBE
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_flush_is_retried_by_celery_then_parks_its_batch(tmp_path: Path, namespace: str,
                                                           redis_url: str) -> None:
    try:
        found = _flush_run(tmp_path, namespace, None)
        assert found["final"] == 3  # realtime.max_retries retries, then the error itself
        # Celery builds the retry message before it checks the limit: the last one is dropped
        assert len(found["countdowns"]) == 4
        for retries, countdown in enumerate(found["countdowns"]):
            ceiling = min(300.0, 2.0 * 2 ** retries)
            assert ceiling / 2 <= countdown <= ceiling, (retries, found)
        assert found["failed"] == ["A", "B"] and found["pending"] == []
        assert all(c >= 40.0 for c in _flush_run(tmp_path, namespace, 40.0)["countdowns"])
    finally:
        client = redis.Redis.from_url(redis_url)
        for suffix in ("None", "40.0"):
            for key in client.scan_iter(match=f"{namespace}-{suffix}:*"):
                client.delete(key)
