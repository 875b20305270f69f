"""The PIM's asset-family structure, cached in Redis for the whole fleet.

Every transform task needs the attribute types, locale/channel flags and option codes of a
family; asking the PIM for them per task would spend the request budget on the same answer
thousands of times. The structure is fetched once per family per TTL for the whole fleet
(single-flight: one Redis lock per family, the others wait for the value), stored as the
JSON of `AssetFamilyStructure.to_dict()`, and memoised in-process for a few seconds so that
a page of 100 assets costs no Redis round-trip per asset.

Redis keys (all through `Keys`):
- `structure:family:<code>`  the JSON (or `{"missing": true}` for a family the PIM lacks)
- `structure:lock:<code>`    the single-flight lock (token value, PX expiry)
- `structure:stats`          hash of fleet-wide counters: hits, misses, fetches
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis

from connector.pim.structure import AssetFamilyStructure, Attribute

if TYPE_CHECKING:
    from connector.redis_conn import Keys

OPTION_TYPES = frozenset({"single_option", "multiple_options"})

# Deletes the lock only when it still holds our token (another process may own it by now).
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class StructureSource(Protocol):
    """The part of `AkeneoClient` the cache needs (kept narrow so fakes stay small)."""

    def get_asset_family(self, code: str) -> dict[str, Any] | None: ...

    def get_attributes(self, family: str) -> list[dict[str, Any]]: ...

    def get_options(self, family: str, attribute: str) -> list[dict[str, Any]]: ...


class UnknownFamilyError(KeyError):
    """The PIM has no asset family with this code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code

    def __str__(self) -> str:
        # KeyError would print the repr of the code only; say what is missing and where.
        return f"asset family {self.code!r} does not exist in the PIM"


class StructureUnavailableError(RuntimeError):
    """Waited for another process's fetch of a family's structure and it never came."""


def fetch_structure(client: StructureSource, code: str) -> AssetFamilyStructure:
    """Read one family, its attributes and their options from the PIM (no cache)."""
    family = client.get_asset_family(code)
    if family is None:
        raise UnknownFamilyError(code)
    attributes: dict[str, Attribute] = {}
    for data in client.get_attributes(code):
        options: list[str] = []
        if data.get("type") in OPTION_TYPES:
            options = [o["code"] for o in client.get_options(code, data["code"])]
        attributes[data["code"]] = Attribute.from_api(data, options)
    return AssetFamilyStructure(
        code=family.get("code") or code,
        attributes=attributes,
        attribute_as_main_media=family.get("attribute_as_main_media"),
        labels=dict(family.get("labels") or {}),
        product_link_rules=tuple(family.get("product_link_rules") or ()),
        fetched_at=time.time(),
    )


class StructureCache:
    """Fleet-wide cache of asset-family structures (see module docstring).

    `memo_ttl` is the in-process memo lifetime in seconds (0 disables it). An invalidation
    clears this process's memo at once; other processes see it when their memo expires.
    """

    def __init__(
        self,
        client: StructureSource,
        redis: redis.Redis,
        keys: Keys,
        ttl: int = 900,
        *,
        memo_ttl: float = 5.0,
        missing_ttl: int = 60,
        lock_timeout: float = 60.0,
        wait_timeout: float | None = None,
        poll_interval: float = 0.02,
    ) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        self.ttl = max(1, int(ttl))
        self.memo_ttl = memo_ttl
        self.missing_ttl = max(1, min(int(missing_ttl), self.ttl))
        self.lock_timeout = lock_timeout
        # Waiters give up after the lock holder's own deadline plus a margin.
        self.wait_timeout = lock_timeout + 5.0 if wait_timeout is None else wait_timeout
        self.poll_interval = poll_interval
        self.memo_hits = 0  # in-process only: counting them in Redis would cost the round-trip
        self._memo: dict[str, tuple[float, AssetFamilyStructure]] = {}
        self._memo_lock = threading.Lock()
        self._release = self.redis.register_script(_RELEASE_LOCK)

    # ------------------------------------------------------------------ keys

    def _value_key(self, code: str) -> str:
        return self.keys.of("structure", "family", code)

    def _lock_key(self, code: str) -> str:
        return self.keys.of("structure", "lock", code)

    def _stats_key(self) -> str:
        return self.keys.of("structure", "stats")

    def _get(self, key: str) -> bytes | None:
        # redis-py's stubs type every reply as "Awaitable | Any"; this client is synchronous.
        return cast("bytes | None", self.redis.get(key))

    def _count(self, name: str) -> None:
        self.redis.hincrby(self._stats_key(), name, 1)

    # ------------------------------------------------------------------ memo

    def _memo_get(self, code: str) -> AssetFamilyStructure | None:
        if self.memo_ttl <= 0:
            return None
        with self._memo_lock:
            entry = self._memo.get(code)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._memo[code]
                return None
            self.memo_hits += 1
            return entry[1]

    def _memo_put(self, structure: AssetFamilyStructure) -> None:
        if self.memo_ttl <= 0:
            return
        with self._memo_lock:
            self._memo[structure.code] = (time.monotonic() + self.memo_ttl, structure)

    def _memo_drop(self, code: str | None) -> None:
        with self._memo_lock:
            if code is None:
                self._memo.clear()
            else:
                self._memo.pop(code, None)

    # ------------------------------------------------------------------ reads

    def _decode(self, code: str, raw: bytes | str) -> AssetFamilyStructure:
        data = json.loads(raw)
        if data.get("missing"):
            raise UnknownFamilyError(code)
        return AssetFamilyStructure.from_dict(data)

    def cached(self, code: str) -> AssetFamilyStructure | None:
        """What Redis holds for `code` right now, without fetching or counting."""
        raw = self._get(self._value_key(code))
        if raw is None:
            return None
        try:
            return self._decode(code, raw)
        except UnknownFamilyError:
            return None

    def cached_codes(self) -> list[str]:
        """Codes of the families Redis holds a structure for (missing markers excluded)."""
        prefix = self._value_key("")
        codes = []
        for key in self.redis.scan_iter(match=prefix + "*", count=500):
            name = key.decode() if isinstance(key, bytes) else key
            codes.append(name[len(prefix) :])
        return sorted(c for c in codes if self.cached(c) is not None)

    def expires_in(self, code: str) -> int | None:
        """Seconds until the cached structure of `code` expires (None when not cached)."""
        ttl = int(self.redis.ttl(self._value_key(code)))  # type: ignore[arg-type]
        return ttl if ttl >= 0 else None

    def family(self, code: str) -> AssetFamilyStructure:
        """The structure of `code`: memo → Redis → one fleet-wide fetch from the PIM.

        Raises `UnknownFamilyError` when the PIM has no such family (that answer is cached
        for `missing_ttl` seconds too), PIM errors when the fetch itself fails.
        """
        memo = self._memo_get(code)
        if memo is not None:
            return memo
        raw = self._get(self._value_key(code))
        if raw is not None:
            self._count("hits")
            structure = self._decode(code, raw)
            self._memo_put(structure)
            return structure
        self._count("misses")
        structure = self._load_single_flight(code)
        self._memo_put(structure)
        return structure

    def families(self, codes: Iterable[str]) -> dict[str, AssetFamilyStructure]:
        return {code: self.family(code) for code in codes}

    def _load_single_flight(self, code: str) -> AssetFamilyStructure:
        """Fetch under the family's lock, or wait for whoever holds it to store the value."""
        lock_key = self._lock_key(code)
        deadline = time.monotonic() + self.wait_timeout
        while True:
            token = uuid.uuid4().hex
            if self.redis.set(lock_key, token, nx=True, px=int(self.lock_timeout * 1000)):
                try:
                    # The holder before us may have stored the value just before releasing.
                    raw = self._get(self._value_key(code))
                    if raw is not None:
                        return self._decode(code, raw)
                    return self._fetch_and_store(code)
                finally:
                    self._release(keys=[lock_key], args=[token])
            raw = self._get(self._value_key(code))
            if raw is not None:
                return self._decode(code, raw)
            if time.monotonic() > deadline:
                raise StructureUnavailableError(
                    f"waited {self.wait_timeout:.0f}s for another process to fetch the "
                    f"structure of asset family {code!r}"
                )
            time.sleep(self.poll_interval)  # polling another process's fetch, with a deadline

    def _fetch_and_store(self, code: str) -> AssetFamilyStructure:
        self._count("fetches")
        try:
            structure = fetch_structure(self.client, code)
        except UnknownFamilyError:
            marker = json.dumps({"missing": True})
            self.redis.set(self._value_key(code), marker, ex=self.missing_ttl)
            raise
        self.redis.set(self._value_key(code), json.dumps(structure.to_dict()), ex=self.ttl)
        return structure

    # ------------------------------------------------------------------ writes

    def invalidate(self, code: str | None = None) -> None:
        """Forget one family (or all): the next read anywhere in the fleet refetches it."""
        self._memo_drop(code)
        if code is not None:
            self.redis.delete(self._value_key(code))
            return
        keys = list(self.redis.scan_iter(match=self._value_key("") + "*", count=500))
        if keys:
            self.redis.delete(*keys)

    def refresh(self, codes: Iterable[str]) -> dict[str, AssetFamilyStructure]:
        """Refetch these families now (e.g. after the structure was changed on purpose)."""
        result = {}
        for code in codes:
            self.invalidate(code)
            result[code] = self.family(code)
        return result

    def note_option(self, family: str, attribute: str, option_code: str) -> None:
        """Record an option we just created, so the cached structure need not be refetched.

        Does nothing when the family is not cached (the next fetch will include the option).
        The update is a WATCH/MULTI transaction: concurrent notes never lose each other.
        """
        key = self._value_key(family)
        updated: list[AssetFamilyStructure] = []

        def add_option(pipe: redis.client.Pipeline) -> None:
            updated.clear()
            raw = pipe.get(key)
            if raw is None:
                return
            data = json.loads(raw)  # type: ignore[arg-type]
            attr = (data.get("attributes") or {}).get(attribute)
            if data.get("missing") or attr is None:
                return
            options = list(attr.get("options") or [])
            if option_code.casefold() in {o.casefold() for o in options}:
                updated.append(AssetFamilyStructure.from_dict(data))
                return
            options.append(option_code)
            attr["options"] = options
            pipe.multi()
            pipe.set(key, json.dumps(data), keepttl=True)
            updated.append(AssetFamilyStructure.from_dict(data))

        self.redis.transaction(add_option, key)
        if updated:
            self._memo_put(updated[0])
        else:
            self._memo_drop(family)

    # ------------------------------------------------------------------ counters

    def stats(self) -> dict[str, int]:
        """Fleet-wide counters: hits (Redis had it), misses, fetches (PIM reads)."""
        raw: dict[Any, Any] = self.redis.hgetall(self._stats_key())  # type: ignore[assignment]
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {name: values.get(name, 0) for name in ("hits", "misses", "fetches")}

