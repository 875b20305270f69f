"""The write side of the pipeline metrics: deltas kept in memory, flushed to Redis in one go.

Every process of the fleet (prefork children, other hosts, the CLI) adds to the same hash,
`<namespace>:metrics`, field `<name>|<label value>|…` (names and label names in
`connector.metrics.collector.COUNTERS`). A PIM request or a download costs a dict update;
Redis sees one pipeline of HINCRBYFLOATs per flush: after every Celery task
(tasks/wiring.py), and from inside `add` when the last flush is older than
`FLUSH_EVERY` seconds (a long fetch). Rare events (a run starting or finishing) are
written with the run's own Redis commands instead (`fields` + `hincr_all`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from typing import Any

import redis

from connector.redis_conn import Keys

log = logging.getLogger(__name__)

FLUSH_EVERY = 10.0
SEP = "|"

_lock = threading.Lock()
_pending: dict[tuple[str, str], float] = defaultdict(float)  # (hash key, field) → delta
_client: redis.Redis | None = None
_last_flush = time.monotonic()


def metrics_key(keys: Keys) -> str:
    """The hash of the fleet-wide counters."""
    return keys.of("metrics")


def field(name: str, *labels: str) -> str:
    """The hash field of one series (label values in the order the collector names them)."""
    return SEP.join((name, *(label.replace(SEP, "_") for label in labels)))


def bind(client: redis.Redis) -> None:
    """Let `add` flush by itself every FLUSH_EVERY seconds through `client` (entry points)."""
    global _client
    _client = client


def add(name: str, *labels: str, by: float = 1, keys: Keys | None = None) -> None:
    """Count `by` for one series, in memory (no I/O unless a periodic flush is due)."""
    if not by:
        return
    target = metrics_key(keys or Keys())
    with _lock:
        _pending[(target, field(name, *labels))] += by
        due = _client is not None and time.monotonic() - _last_flush > FLUSH_EVERY
    if due and _client is not None:
        flush(_client)


def flush(client: redis.Redis, only: Keys | None = None) -> None:
    """Write the pending deltas (of `only`'s namespace, or all) in one pipeline; a Redis
    error keeps them for the next flush."""
    global _last_flush
    target = metrics_key(only) if only is not None else None
    with _lock:
        items = [(k, v) for k, v in _pending.items() if target is None or k[0] == target]
        for key, _ in items:
            del _pending[key]
        _last_flush = time.monotonic()
    if not items:
        return
    try:
        hincr_all(client.pipeline(transaction=False), items).execute()
    except redis.RedisError as exc:
        log.warning("metrics not flushed (%s); kept for the next flush", type(exc).__name__)
        with _lock:
            for key, value in items:
                _pending[key] += value


def hincr_all(pipe: Any, items: list[tuple[tuple[str, str], float]]) -> Any:
    """Queue one HINCRBYFLOAT on `pipe` per ((key, field), delta). Always the float form:
    a seconds counter may get a whole delta, and HINCRBY refuses a field holding "1.5"."""
    for (key, name), value in items:
        pipe.hincrbyfloat(key, name, value)
    return pipe


def reset() -> None:
    """Forget unflushed deltas (a forked child: they belong to its parent) and the lock."""
    global _lock, _last_flush
    _lock = threading.Lock()
    _pending.clear()
    _last_flush = time.monotonic()


def pending() -> dict[tuple[str, str], float]:
    """A copy of the unflushed deltas (tests)."""
    with _lock:
        return dict(_pending)


# ---------------------------------------------------------------- label hygiene

#: Akeneo collections: a path segment after one of them is an identifier, never a label
_COLLECTIONS = {
    "asset-families": "family",
    "assets": "code",
    "attributes": "attribute",
    "options": "option",
    "asset-media-files": "code",
    "products": "identifier",
    "products-uuid": "uuid",
    "product-models": "code",
    "families": "family",
    "categories": "code",
    "channels": "code",
    "locales": "code",
    "reference-entities": "entity",
    "records": "code",
    "media-files": "code",
}
_PREFIXES = ("/api/rest/v1", "/api/oauth/v1")
_WORD = re.compile(r"^[a-z][a-z-]*$")


def endpoint_template(path: str) -> str:
    """`/api/rest/v1/asset-families/shoes/assets/x1` → `…/asset-families/{family}/assets/{code}`.

    Only literal collection names survive; every other segment becomes a placeholder, so
    the label has a fixed, small set of values whatever codes the PIM holds.
    """
    for prefix in _PREFIXES:
        if path == prefix or path.startswith(prefix + "/"):
            break
    else:
        return "other"
    out = [prefix]
    previous: str | None = None
    for segment in path[len(prefix):].strip("/").split("/"):
        if not segment:
            continue
        expecting_name = previous is None
        if expecting_name and (
            segment in _COLLECTIONS or (prefix.endswith("oauth/v1") and _WORD.match(segment))
        ):
            out.append(segment)
            previous = segment
        else:
            out.append("{" + _COLLECTIONS.get(previous or "", "id") + "}")
            previous = None
    return "/".join(out)
