"""Build the adapter a source configuration names (no code per DAM: REST, folder or S3)."""

from __future__ import annotations

import redis

from connector.config.model import SourceConfig
from connector.dam.base import DamError, DamSource
from connector.dam.folder import FolderSource
from connector.dam.graphql import source_class
from connector.dam.ratelimit import DamRequestBudget
from connector.redis_conn import Keys


def build_source(
    source: SourceConfig, redis_client: redis.Redis | None = None, keys: Keys | None = None
) -> DamSource:
    """The `DamSource` for `source`; DamError when its type-specific section is missing.

    With `redis_client`, a REST source's requests go through a fleet-wide budget held in
    Redis (rate, requests in flight, Retry-After gate shared by every worker process);
    without it, through an in-process one (one-off CLI commands, tests).
    """
    if source.type == "rest":
        rest = source.rest
        if rest is None:
            raise DamError(f"source {source.name!r}: type rest needs a `rest` section")
        throttle = None
        if redis_client is not None:
            throttle = DamRequestBudget(
                redis_client,
                keys or Keys(),
                source.name,
                requests_per_second=rest.requests_per_second,
                max_in_flight=rest.max_in_flight,
                # a lease outlives any one request or download (then it expires by itself)
                lease_ttl=2 * max(rest.timeout, source.media.timeout) + 30,
            )
        # a GraphQL API (rest.graphql) is the same adapter with other requests
        return source_class(rest)(source.name, rest, source.media, throttle=throttle)
    if source.type == "folder":
        if source.folder is None:
            raise DamError(f"source {source.name!r}: type folder needs a `folder` section")
        return FolderSource(source.name, source.folder)
    if source.type == "s3":
        if source.s3 is None:
            raise DamError(f"source {source.name!r}: type s3 needs an `s3` section")
        from connector.dam.s3 import S3Source  # boto3 is the optional extra [s3]

        return S3Source(source.name, source.s3, source.media)
    raise DamError(
        f"source {source.name!r}: unknown type {source.type!r} (rest, folder or s3)"
    )
