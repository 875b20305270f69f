"""`connector check`, the DAM side: one probe per adapter, read-only.

A wrong token, a DAM that is down, a wrong `items_path` or `id_field` all used to pass
`check` and fail only in the first sync. Each probe reads what a sync would read first —
the listing, then the listing with the changed-since filter — and files every problem under
the config key to change. Probes go through the adapters themselves (`RestSource`,
`FolderSource`), so `check` judges exactly what a sync would do, with fewer retries: a DAM
that is down is reported in seconds, not after a sync's backoff.

What the sampled records mean for the mapping (product filter, families, property paths,
example payloads) is `connector.structure.sample`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.config.model import SourceConfig
from connector.dam.auth import DamAuthError
from connector.dam.base import BadRecord, DamAsset, DamError, DamSource, Page, TransientDamError
from connector.dam.dates import since_value
from connector.dam.folder import FolderSource
from connector.dam.graphql import source_class
from connector.dam.paths import has_path
from connector.structure.check import Finding, Severity

# `check` fails fast: one retry, short waits (a sync retries more, see RestSourceConfig)
_CHECK_RETRIES = 1
_CHECK_BACKOFF = 0.2


@dataclass
class SourceSample:
    """What one source's probe found: reachability, the sampled records, its findings."""

    name: str
    type: str
    reachable: bool = False
    assets: list[DamAsset] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    since_filter: str = "not probed"   # accepted | ignored | refused | not configured | …
    adapter: DamSource | None = None   # kept open for example payloads (media downloads)

    @property
    def sampled(self) -> int:
        return len(self.assets) + len(self.bad)

    def raw_records(self) -> list[dict[str, Any]]:
        """The records as the DAM returned them (normalised or not), objects only."""
        raws = [a.properties for a in self.assets] + [b.raw for b in self.bad]
        return [r for r in raws if isinstance(r, dict)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "reachable": self.reachable,
            "sampled": self.sampled,
            "unreadable": len(self.bad),
            "since_filter": self.since_filter,
        }

    def close(self) -> None:
        if self.adapter is not None:
            self.adapter.close()


def probe_source(source: SourceConfig, sample: int) -> SourceSample:
    """Probe one configured source (REST or hot folder); never raises for DAM trouble."""
    if source.type == "rest" and source.rest is not None:
        rest = dataclasses.replace(
            source.rest,
            max_retries=min(source.rest.max_retries, _CHECK_RETRIES),
            backoff_base=_CHECK_BACKOFF,
            backoff_max=max(_CHECK_BACKOFF, min(source.rest.backoff_max, 1.0)),
        )
        adapter: DamSource = source_class(rest)(source.name, rest, source.media)
        return _probe_rest(source, adapter, sample)
    if source.type == "folder" and source.folder is not None:
        result = SourceSample(source.name, "folder", since_filter="not applicable",
                              adapter=FolderSource(source.name, source.folder))
        _take_sample(result, sample)
        return result
    if source.type == "s3" and source.s3 is not None:
        from connector.dam.s3 import S3Source  # boto3 is the optional extra [s3]

        s3 = dataclasses.replace(
            source.s3, max_retries=min(source.s3.max_retries, _CHECK_RETRIES)
        )
        result = SourceSample(source.name, "s3", since_filter="not applicable",
                              adapter=S3Source(source.name, s3, source.media))
        _take_sample(result, sample)
        return result
    return SourceSample(source.name, source.type, findings=[Finding(
        f"sources.{source.name}", f"type {source.type} needs a `{source.type}` section")])


# ---------------------------------------------------------------- sampling


def _pages(adapter: DamSource, since: datetime | None) -> Iterator[Page]:
    return iter(adapter.changed_since(since))


def _take_sample(result: SourceSample, sample: int) -> bool:
    """The first `sample` records of the full listing into `result`; False (with a
    finding) when the listing failed."""
    assert result.adapter is not None
    pages = _pages(result.adapter, None)
    try:
        for page in pages:
            result.reachable = True
            result.assets += page.assets
            result.bad += page.bad
            if result.sampled >= sample:
                break
        result.reachable = True
    except DamError as exc:
        result.findings.append(_dam_finding(result, exc))
        return False
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()
    del result.assets[sample:]
    del result.bad[max(0, sample - len(result.assets)):]
    return True


def _dam_finding(result: SourceSample, exc: DamError) -> Finding:
    """A DAM failure as a finding under the key to change."""
    base = f"sources.{result.name}"
    if isinstance(exc, DamAuthError):
        return Finding(exc.key or f"{base}.rest.auth", str(exc))
    if isinstance(exc, TransientDamError):
        where = {"rest": f"{base}.rest.base_url", "s3": f"{base}.s3.endpoint_url"}.get(
            result.type, f"{base}.folder.path"
        )
        return Finding(where, f"cannot reach the DAM: {exc}")
    return Finding(exc.key or base, str(exc))


# ---------------------------------------------------------------- REST


def _probe_rest(source: SourceConfig, adapter: DamSource, sample: int) -> SourceSample:
    result = SourceSample(source.name, "rest", adapter=adapter)
    if not _take_sample(result, sample):
        return result
    assert source.rest is not None
    endpoint = source.rest.list
    key = f"sources.{source.name}.rest.list"
    raws = result.raw_records()
    if not result.sampled:
        result.findings.append(Finding(
            f"{key}.path",
            f"the listing of {adapter.name} returned no records: check {key}.path, "
            f"{key}.params and the permissions of the DAM account",
            "warning",
        ))
    _check_fields(result, raws, endpoint.id_field, endpoint.updated_field, key)
    _check_since(result, source, key)
    return result


def _check_fields(
    result: SourceSample, raws: list[dict[str, Any]], id_field: str, updated_field: str,
    key: str,
) -> None:
    """`id_field` and `updated_field` present and parsable in the sampled records."""
    if not raws:
        return
    missing_id = [b for b in result.bad if b.field == id_field]
    if missing_id:
        result.findings.append(Finding(
            f"{key}.id_field",
            f"{len(missing_id)} of {result.sampled} sampled records have no id in field "
            f"{id_field!r}: they are quarantined at every sync",
            "warning",
        ))
    if not any(has_path(r, updated_field) for r in raws):
        result.findings.append(Finding(
            f"{key}.updated_field",
            f"field {updated_field!r} is absent from all {len(raws)} sampled records "
            f"(the records have: {_keys(raws[0])}): set {key}.updated_field to the field "
            "holding the modification date",
        ))
        return
    unparsable = [b for b in result.bad if b.field == updated_field]
    if unparsable:
        severity: Severity = "error" if not result.assets else "warning"
        result.findings.append(Finding(
            f"{key}.updated_field",
            f"{len(unparsable)} of {result.sampled} sampled records have an unparsable date "
            f"in {updated_field!r} ({unparsable[0].reason})",
            severity,
        ))


def _check_since(result: SourceSample, source: SourceConfig, key: str) -> None:
    """One request with the changed-since filter: accepted, refused, or ignored."""
    assert source.rest is not None and result.adapter is not None
    endpoint = source.rest.list
    gql = source.rest.graphql
    list_key = key
    if gql is not None:  # a GraphQL listing: the date is a variable (rest.graphql)
        key = f"sources.{source.name}.rest.graphql"
        endpoint = dataclasses.replace(
            endpoint, since_param=gql.since_variable, since_format=gql.since_format,
            since_template=None,
        )
    since_key = "since_variable" if gql is not None else "since_param"
    if not endpoint.since_param:
        result.since_filter = "not configured"
        result.findings.append(Finding(
            f"{key}.{since_key}",
            "no changed-since filter: every scheduled sync lists the whole DAM",
            "warning",
        ))
        return
    dates = [a.updated for a in result.assets if a.updated is not None]
    # the newest sampled date: a DAM that applies the filter answers nothing older
    since = max(dates) if dates else datetime.now(UTC) - timedelta(days=1)
    value = since_value(since, endpoint.since_format, endpoint.since_template)
    sent = f"{endpoint.since_param}={value}"
    pages = _pages(result.adapter, since)
    try:
        first = next(pages, None)
    except DamError as exc:
        result.since_filter = "refused"
        hint = "" if exc.key else f". Check {key}.{since_key} and {key}.since_format"
        result.findings.append(Finding(
            f"{key}.{since_key}", f"the DAM refused the changed-since filter ({sent}): {exc}{hint}"
        ))
        return
    finally:
        close = getattr(pages, "close", None)
        if close is not None:
            close()
    older = [
        a for a in (first.assets if first else [])
        if a.updated is not None and a.updated < since - timedelta(seconds=1)
    ]
    if older:
        result.since_filter = "ignored"
        updated = older[0].updated.isoformat() if older[0].updated else "?"
        result.findings.append(Finding(
            f"{key}.{since_key}",
            f"the DAM ignored the changed-since filter ({sent}), or filters on another date "
            f"than {endpoint.updated_field!r}: it listed {older[0].id!r} whose "
            f"{endpoint.updated_field!r} is {updated}. Check {key}.{since_key}, "
            f"{key}.since_format and {list_key}.updated_field",
            "warning",
        ))
        return
    result.since_filter = "accepted"


def _keys(record: dict[str, Any]) -> str:
    keys = [str(k) for k in itertools.islice(record, 30)]
    return ", ".join(keys) + (" …" if len(record) > 30 else "") if keys else "no fields"
