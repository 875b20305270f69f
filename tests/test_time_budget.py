"""One time budget (connector/timebudget.py): every countdown the config can set is
refused at load when it would outlive the broker's visibility timeout, and the Celery
task limits all come from the same constants."""

from __future__ import annotations

import re
from pathlib import Path

from connector import timebudget
from tests.test_config import base, errors_of, put

ROOT = Path(__file__).resolve().parent.parent


def test_a_backoff_max_beyond_the_visibility_timeout_is_refused_at_load() -> None:
    errors = errors_of(put(base(), "sync/backoff_max", "2h30m"))
    assert errors == [
        "sync.backoff_max: 9000 s must stay below the broker's visibility timeout 7200 s "
        "minus the longest task limit 3600 s (reconcile): at most 3600 s"
    ]


def test_a_realtime_window_beyond_the_visibility_timeout_is_refused_at_load() -> None:
    errors = errors_of(put(base(), "sources/bynder/realtime", {"window": 4000}))
    assert errors == [
        "sources.bynder.realtime.window: 4000 s must stay below the broker's visibility "
        "timeout 7200 s minus the longest task limit 3600 s (reconcile): at most 3600 s"
    ]


def test_countdowns_within_the_budget_load() -> None:
    from connector.config import parse_config

    data = put(put(base(), "sync/backoff_max", 3600), "sources/bynder/realtime", {"window": 60})
    config = parse_config(data, {"DAM_TOKEN": "x"})
    assert config.sync.backoff_max == 3600


def test_the_fixed_countdown_caps_fit_the_budget() -> None:
    from connector.intake import flush

    for cap in (timebudget.COUNTDOWN_MAX, flush.RETRY_BACKOFF_MAX):
        assert timebudget.countdown_problem(cap) is None
    assert timebudget.countdown_problem(timebudget.countdown_budget() + 1) is not None
    assert max(
        timebudget.TASK_TIME_LIMIT, timebudget.FETCH_TIME_LIMIT, timebudget.RECONCILE_TIME_LIMIT
    ) == timebudget.LONGEST_TASK_LIMIT


def test_celery_settings_and_task_decorators_use_the_constants() -> None:
    import celeryconfig
    from tasks.pipeline import RETRY_POLICY, fetch_changed_assets, reconcile_source

    assert (celeryconfig.task_soft_time_limit, celeryconfig.task_time_limit) == (
        timebudget.TASK_SOFT_TIME_LIMIT, timebudget.TASK_TIME_LIMIT)
    assert celeryconfig.broker_transport_options["visibility_timeout"] == (
        timebudget.VISIBILITY_TIMEOUT)
    assert (fetch_changed_assets.soft_time_limit, fetch_changed_assets.time_limit) == (
        timebudget.FETCH_SOFT_TIME_LIMIT, timebudget.FETCH_TIME_LIMIT)
    assert (reconcile_source.soft_time_limit, reconcile_source.time_limit) == (
        timebudget.RECONCILE_SOFT_TIME_LIMIT, timebudget.RECONCILE_TIME_LIMIT)
    assert RETRY_POLICY["retry_backoff_max"] == timebudget.COUNTDOWN_MAX
    # no number written next to a limit, a countdown cap or the visibility timeout
    # anywhere in the composition root: they are connector/timebudget.py's
    literal = re.compile(r"((soft_)?time_limit|TIME_LIMIT|COUNTDOWN\w*|VISIBILITY_TIMEOUT"
                         r"|visibility_timeout\W+)\s*[=:]\s*\d")
    for path in [ROOT / "celeryconfig.py", *sorted((ROOT / "tasks").glob("*.py"))]:
        found = literal.search(path.read_text())
        assert found is None, (path, found)
