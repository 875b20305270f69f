"""Pure functions of the DAM side: dotted paths, paginators, dates, token bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.config.model import PaginationConfig
from connector.dam.base import PaginationLoopError
from connector.dam.dates import format_since, parse_datetime
from connector.dam.pagination import PAGINATORS, PageResponse, build_paginator
from connector.dam.paths import MISSING, get_path, has_path
from connector.dam.ratelimit import TokenBucket
from connector.dam.rest import parse_retry_after

# ---------------------------------------------------------------- paths

RECORD = {
    "id": "A1",
    "context": {"custom": {"sku": "allie-jean", "empty": None}},
    "renditions": [{"url": "u0"}, {"url": "u1"}],
    "a.b": "dotted key",
    "tags": "x",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", RECORD),
        ("id", "A1"),
        ("context.custom.sku", "allie-jean"),
        ("renditions.1.url", "u1"),
        ("renditions.-1.url", "u1"),
        ("a.b", "dotted key"),
        ("context.custom.empty", None),
    ],
)
def test_get_path_finds_values(path, expected):
    assert get_path(RECORD, path) == expected


@pytest.mark.parametrize(
    "path", ["nope", "context.nope.sku", "renditions.2.url", "renditions.x", "tags.0", "id.x"]
)
def test_get_path_missing_gives_default_never_raises(path):
    assert get_path(RECORD, path) is None
    assert get_path(RECORD, path, "dflt") == "dflt"
    assert not has_path(RECORD, path)


def test_has_path_counts_null_as_present():
    assert has_path(RECORD, "context.custom.empty")
    assert get_path(RECORD, "context.custom.empty", MISSING) is None


@given(st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=10,
), st.text(max_size=12))
def test_get_path_total_on_any_json(obj, path):
    get_path(obj, path)  # never raises, whatever the shape


# ---------------------------------------------------------------- paginators


def _resp(count, body=None, headers=None, url="http://dam/api", fp=None):
    return PageResponse(url, headers or {}, body, count, fp or tuple(f"id{i}" for i in
                                                                       range(count)))


def test_page_number_stops_on_short_page_and_counts_up():
    p = build_paginator(PaginationConfig(type="page_number", page_size=2, page_param="p",
                                         size_param="n"))
    assert p.params() == {"p": "1", "n": "2"}
    p.advance(_resp(2, fp=("a", "b")))
    assert p.params() == {"p": "2", "n": "2"}
    p.advance(_resp(1, fp=("c",)))
    assert p.finished


def test_offset_moves_by_what_came_back():
    p = build_paginator(PaginationConfig(type="offset", page_size=3))
    p.advance(_resp(3, fp=("a", "b", "c")))
    assert p.params() == {"offset": "3", "limit": "3"}
    p.advance(_resp(0, fp=()))
    assert p.finished


def test_same_full_page_twice_is_a_loop():
    p = build_paginator(PaginationConfig(type="page_number", page_size=2))
    p.advance(_resp(2, fp=("a", "b")))
    with pytest.raises(PaginationLoopError, match="same page twice"):
        p.advance(_resp(2, fp=("a", "b")))


def test_body_cursor_at_dotted_path_and_loop_detection():
    p = build_paginator(PaginationConfig(type="cursor", cursor_path="paging.next",
                                         cursor_param="c", page_size=5))
    assert p.params() == {"limit": "5"}
    p.advance(_resp(5, body={"paging": {"next": "T1"}}, fp=("1",)))
    assert p.params() == {"limit": "5", "c": "T1"}
    p.advance(_resp(5, body={"paging": {"next": "T2"}}, fp=("2",)))
    with pytest.raises(PaginationLoopError, match="T1"):
        p.advance(_resp(5, body={"paging": {"next": "T1"}}, fp=("3",)))


def test_body_cursor_null_or_missing_ends():
    p = build_paginator(PaginationConfig(type="cursor"))
    p.advance(_resp(5, body={"next_cursor": None}))
    assert p.finished


def test_header_cursor():
    p = build_paginator(PaginationConfig(type="header_cursor", cursor_header="X-Next"))
    p.advance(_resp(1, headers={"X-Next": "abc"}))
    assert p.params()["cursor"] == "abc"
    p.advance(_resp(1, headers={}, fp=("z",)))
    assert p.finished


def test_link_header_relative_url_resolved_and_repeat_detected():
    p = build_paginator(PaginationConfig(type="link_header", page_size=7))
    assert p.params() == {"limit": "7"} and p.next_url() is None
    p.advance(_resp(7, headers={"Link": '</api?page=2>; rel="next", </api?page=9>; rel="last"'},
                    url="http://dam:8/api?limit=7", fp=("1",)))
    assert p.next_url() == "http://dam:8/api?page=2"
    assert p.params() == {}
    with pytest.raises(PaginationLoopError):
        p.advance(_resp(7, headers={"Link": '<http://dam:8/api?page=2>; rel="next"'},
                        fp=("2",)))


def test_unknown_pagination_type_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown pagination type 'bogus'"):
        build_paginator(PaginationConfig(type="bogus"))  # type: ignore[arg-type]
    assert set(PAGINATORS) == {"none", "page_number", "offset", "cursor", "header_cursor",
                               "link_header"}


# ---------------------------------------------------------------- dates

WHEN = datetime(2026, 11, 20, 10, 0, 5, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("iso", "2026-11-20T10:00:05Z"),
        ("epoch", str(int(WHEN.timestamp()))),
        ("epoch_ms", str(int(WHEN.timestamp() * 1000))),
        ("%Y-%m-%d %H:%M:%S", "2026-11-20 10:00:05"),
    ],
)
def test_format_since(fmt, expected):
    assert format_since(WHEN, fmt) == expected


def test_format_since_converts_to_utc_and_naive_is_utc():
    paris = WHEN.astimezone(timezone(timedelta(hours=1)))
    assert format_since(paris, "iso") == "2026-11-20T10:00:05Z"
    assert format_since(WHEN.replace(tzinfo=None), "iso") == "2026-11-20T10:00:05Z"


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20T10:00:05Z",
        "2026-11-20T11:00:05+01:00",
        "2026-11-20 10:00:05",
        int(datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC).timestamp()),
        str(int(datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC).timestamp() * 1000)),
        "Fri, 20 Nov 2026 10:00:05 GMT",
    ],
)
def test_parse_datetime_formats(value):
    assert parse_datetime(value) == datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("value", ["not-a-date", "", True, None, {"a": 1}, "2026-13-45"])
def test_parse_datetime_rejects(value):
    with pytest.raises(ValueError):
        parse_datetime(value)


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = "Fri, 20 Nov 2026 10:00:30 GMT"
    now = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(later, now=lambda: now) == 30.0


# ---------------------------------------------------------------- token bucket


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


def test_token_bucket_spaces_requests_at_the_rate():
    t = FakeTime()
    bucket = TokenBucket(4.0, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        bucket.acquire()
    assert t.slept == pytest.approx([0.25] * 4)
    t.now += 10  # idle: only `burst` (1) token accumulates
    bucket.acquire()
    bucket.acquire()
    assert t.slept[-1] == pytest.approx(0.25)


def test_token_bucket_unlimited():
    t = FakeTime()
    bucket = TokenBucket(0, clock=t.clock, sleep=t.sleep)
    for _ in range(100):
        bucket.acquire()
    assert t.slept == []
