"""The validated configuration, as plain frozen dataclasses.

`connector.config.load_config(path)` builds a `Config` from the user's YAML/JSON file
(after `${VAR}` interpolation and marshmallow validation). Everything else in the
connector reads these objects, never the raw file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.settings import Secret

# ---------------------------------------------------------------- PIM side


@dataclass(frozen=True)
class PimConfig:
    timeout: float = 30.0                 # seconds, every HTTP call
    max_in_flight: int = 4                # concurrent requests per connection (fleet-wide)
    # the same for the media connection (AKENEO_MEDIA_*), when one is set
    media_max_in_flight: int = 4
    requests_per_second: float = 100.0    # fleet-wide request rate
    option_writes_per_second: float = 3.0 # fleet-wide option PATCH rate
    structure_cache_ttl: int = 900        # seconds
    token_refresh_margin: int = 60        # refresh this many seconds before expiry
    locales: tuple[str, ...] = ()         # activated locales; empty = take from structure/any
    channels: tuple[str, ...] = ()


# ---------------------------------------------------------------- DAM side

AuthType = Literal["none", "bearer", "basic", "api_key", "oauth2_client_credentials"]


@dataclass(frozen=True)
class AuthConfig:
    type: AuthType = "none"
    token: Secret | None = None           # bearer
    username: str | None = None           # basic
    password: Secret | None = None        # basic
    header: str = "X-API-Key"             # api_key
    value: Secret | None = None           # api_key
    token_url: str | None = None          # oauth2_client_credentials
    client_id: str | None = None
    client_secret: Secret | None = None
    scope: str | None = None


PaginationType = Literal["none", "page_number", "offset", "cursor", "header_cursor", "link_header"]


@dataclass(frozen=True)
class PaginationConfig:
    type: PaginationType = "none"
    page_size: int = 100
    size_param: str = "limit"             # page_number / offset / cursor: page size parameter
    page_param: str = "page"              # page_number
    start_page: int = 1                   # page_number
    offset_param: str = "offset"          # offset
    cursor_param: str = "cursor"          # cursor / header_cursor: request parameter
    cursor_path: str = "next_cursor"      # cursor: dotted path of the token in the body
    cursor_header: str = "X-Next-Cursor"  # header_cursor: response header with the token


SinceFormat = str  # "iso" | "epoch" | "epoch_ms" | a strftime pattern


@dataclass(frozen=True)
class ListEndpointConfig:
    path: str                              # e.g. /api/v4/media/
    since_param: str | None = None         # query parameter for "changed since"
    since_format: SinceFormat = "iso"
    # the since parameter's value around the date, e.g. 'last_updated>="{since}"' (a search
    # expression); None = the date alone
    since_template: str | None = None
    params: dict[str, str] = field(default_factory=dict)  # extra fixed query parameters
    items_path: str = ""                   # dotted path to the list in the body; "" = body
    id_field: str = "id"                   # dotted path inside one item
    updated_field: str = "updated"         # dotted path inside one item


@dataclass(frozen=True)
class GraphQLConfig:
    """A GraphQL listing (connector/dam/graphql.py): `{query, variables}` POSTed as JSON to
    `rest.list.path`; records and the Relay cursor found at paths of the answer."""

    query: str                             # the listing query text
    items_path: str                        # data.assets.nodes, or data.assets.edges[*].node
    variables: dict[str, Any] = field(default_factory=dict)  # fixed variables (JSON values)
    since_variable: str | None = None      # the changed-since variable; None = full listing
    since_format: SinceFormat = "iso"
    cursor_path: str | None = None         # data.assets.pageInfo.endCursor; None = one page
    has_next_path: str | None = None       # data.assets.pageInfo.hasNextPage
    cursor_variable: str = "after"
    page_size_variable: str | None = "first"
    page_size: int = 100
    get_query: str | None = None           # one asset, with an `$id` variable
    get_item_path: str | None = None       # data.asset


@dataclass(frozen=True)
class RestSourceConfig:
    base_url: str
    list: ListEndpointConfig
    auth: AuthConfig = field(default_factory=AuthConfig)
    pagination: PaginationConfig = field(default_factory=PaginationConfig)
    get_path: str | None = None            # e.g. /api/v4/media/{id}/ ; None = not supported
    deletions: ListEndpointConfig | None = None
    media_url_field: str | None = None     # dotted path of the binary's URL in an item
    filename_field: str | None = None      # dotted path of the file name
    folder_field: str | None = None        # dotted path of the folder/category path
    tags_field: str | None = None          # dotted path of the tag list (or separated string)
    requests_per_second: float = 10.0      # fleet-wide (every worker process together)
    timeout: float = 30.0
    max_retries: int = 5                   # per request: 429/5xx/timeouts on the DAM side
    max_in_flight: int = 4                 # fleet-wide concurrent requests to this DAM
    backoff_base: float = 0.5              # seconds; first retry delay without Retry-After
    backoff_max: float = 30.0              # seconds; longest in-process retry delay
    graphql: GraphQLConfig | None = None   # a GraphQL API instead of REST listings


@dataclass(frozen=True)
class FolderSourceConfig:
    path: str
    sidecar_suffix: str = ".json"          # photo.jpg + photo.jpg.json
    include: tuple[str, ...] = ("*",)      # glob patterns on file names
    exclude: tuple[str, ...] = (".*", "*.json", "*.tmp", "*.part")


S3AddressingStyle = Literal["auto", "path", "virtual"]


@dataclass(frozen=True)
class S3SourceConfig:
    """An S3 bucket (or S3-compatible store) as the DAM (connector/dam/s3.py).

    Credentials: the three secrets when given (`${VAR}` only), else boto3's standard chain
    (AWS_* environment variables, shared config, instance role)."""

    bucket: str
    prefix: str = ""                       # only keys under it; "" = the whole bucket
    region: str | None = None              # None: AWS_REGION / AWS_DEFAULT_REGION / profile
    endpoint_url: str | None = None        # S3-compatible stores (MinIO, R2, ...); None: AWS
    addressing_style: S3AddressingStyle = "auto"
    access_key_id: Secret | None = field(default=None, repr=False)
    secret_access_key: Secret | None = field(default=None, repr=False)
    session_token: Secret | None = field(default=None, repr=False)
    page_size: int = 1000                  # ListObjectsV2 MaxKeys (S3 caps it at 1000)
    metadata: bool = True                  # HeadObject per changed object: user metadata
    tags: bool = True                      # GetObjectTagging per changed object
    timeout: float = 30.0                  # seconds, connect and read
    max_retries: int = 5                   # botocore's own retries (standard mode)


@dataclass(frozen=True)
class ScheduleConfig:
    every: float | None = None             # seconds
    crontab: str | None = None             # "*/5 * * * *"


DeletionAction = Literal["delete", "flag", "ignore"]


@dataclass(frozen=True)
class MaxDeletions:
    """The mass-deletion guard: a reconcile or run that would delete (or flag) more than
    `count` assets, or more than `percent` % (rounded up) of the source's assets in the
    PIM, deletes nothing and fails (a DAM answering an empty list must not empty the PIM)."""

    count: int = 500
    percent: float = 10.0

    def limit(self, total: int) -> int:
        """How many of `total` PIM assets may go in one reconcile or run."""
        share = math.ceil(round(self.percent * total / 100, 9))  # round: no float drift
        return min(self.count, share)


@dataclass(frozen=True)
class DeletionPolicy:
    action: DeletionAction = "ignore"
    attribute: str | None = None           # flag: attribute to set/clear
    value: Any = None                      # flag: data to write (None clears)
    max_deletions: MaxDeletions = field(default_factory=MaxDeletions)


@dataclass(frozen=True)
class MediaConfig:
    allowed_hosts: tuple[str, ...] = ()    # added to the DAM's own host (always allowed)
    base_url: str | None = None            # base of relative media URLs; None: rest.base_url
    max_bytes: int = 200 * 1024 * 1024
    timeout: float = 60.0


# ---------------------------------------------------------------- real-time intake
# (connector/config/model_intake.py; re-exported here: every config class has one address)
from connector.config.model_intake import SNS_DEFAULT_HOSTS as SNS_DEFAULT_HOSTS  # noqa: E402
from connector.config.model_intake import EventAction as EventAction  # noqa: E402
from connector.config.model_intake import EventFieldsConfig as EventFieldsConfig  # noqa: E402
from connector.config.model_intake import QueueIntakeConfig as QueueIntakeConfig  # noqa: E402
from connector.config.model_intake import RealtimeConfig as RealtimeConfig  # noqa: E402
from connector.config.model_intake import SnsConfig as SnsConfig  # noqa: E402
from connector.config.model_intake import WebhookConfig as WebhookConfig  # noqa: E402
from connector.config.model_intake import (  # noqa: E402
    WebhookVerification as WebhookVerification,
)


@dataclass(frozen=True)
class SourceConfig:
    name: str
    type: Literal["rest", "folder", "s3"]
    rest: RestSourceConfig | None = None
    folder: FolderSourceConfig | None = None
    s3: S3SourceConfig | None = None
    families: tuple[str, ...] = ()         # family names this source feeds; empty = all
    schedule: ScheduleConfig | None = None
    reconcile_schedule: ScheduleConfig | None = None
    deletion_policy: DeletionPolicy = field(default_factory=DeletionPolicy)
    media: MediaConfig = field(default_factory=MediaConfig)
    webhook: WebhookConfig | None = None
    queue: QueueIntakeConfig | None = None
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    code_prefix: str | None = None         # keeps codes apart from other sources' (codes.py)

    def id_space(self) -> tuple[str, ...]:
        """Where this source's DAM ids come from: sources reading the same DAM location (a
        webhook source and a queue source over one DAM) share ids, hence PIM assets."""
        if self.type == "rest" and self.rest is not None:
            return ("rest", self.rest.base_url.rstrip("/"), self.rest.list.path)
        if self.type == "folder" and self.folder is not None:
            return ("folder", os.path.normpath(self.folder.path))
        if self.type == "s3" and self.s3 is not None:
            return ("s3", self.s3.endpoint_url or "", self.s3.bucket, self.s3.prefix)
        return ("source", self.name)


# ---------------------------------------------------------------- transformation


@dataclass(frozen=True)
class Selector:
    """Picks a fact out of a DAM asset.

    Exactly one of: `property` (dotted path; truthy / equals / in), `folder` (prefix of the
    asset's folder), `tag` (the asset carries it), `filename_regex` (search on the file
    name), `expression` (a small safe expression over the record, see docs), `always`.
    """

    property: str | None = None
    equals: Any = None
    in_: tuple[Any, ...] | None = None
    folder: str | None = None
    tag: str | None = None
    filename_regex: str | None = None
    expression: str | None = None
    always: bool = False


@dataclass(frozen=True)
class ValueSource:
    """Where one value comes from: a property, a constant, or a regex over a property."""

    property: str | None = None            # dotted path in the DAM record
    constant: Any = None
    regex: str | None = None               # applied to `property` (or the filename); group
    group: str | int = 1                   # name or number of the group to keep


@dataclass(frozen=True)
class AttributeMapping:
    attribute: str                         # PIM attribute code
    source: ValueSource
    expected_type: str | None = None       # optional; checked by `connector check`
    separator: str = ","                   # multiple_options given as one string
    locale: str | None = None              # force a locale for this value
    channel: str | None = None             # force a channel for this value
    option_map: dict[str, str] = field(default_factory=dict)  # DAM label → option code
    auto_create_options: bool | None = None  # None = the family's auto_create_options


@dataclass(frozen=True)
class LocaleRule:
    property: str | None = None
    filename_regex: str | None = None      # group "locale" or group 1
    default: str | None = None             # for localizable attributes with no locale found
    map: dict[str, str] = field(default_factory=dict)  # "fr" → "fr_FR"


@dataclass(frozen=True)
class ProductLinkConfig:
    mode: Literal["none", "rules", "direct"] = "none"
    identifier_property: str | None = None
    identifier_regex: str | None = None    # named group "identifier" (or group 1)
    product_attribute: str | None = None   # direct: the products' asset-collection attribute
    unlink_previous: bool = True           # direct: a changed reference unlinks the old product


@dataclass(frozen=True)
class FamilyConfig:
    name: str                              # PIM asset family code
    match: Selector                        # which DAM assets belong to this family
    mapping: tuple[AttributeMapping, ...]
    locale: LocaleRule = field(default_factory=LocaleRule)
    channel: str | None = None             # channel for scopable attributes
    auto_create_options: bool = False
    product_asset: Selector = field(default_factory=lambda: Selector(always=True))
    product_link: ProductLinkConfig = field(default_factory=ProductLinkConfig)


# ---------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class SyncConfig:
    chunk_size: int = 100                  # DAM assets per transform task
    push_batch_size: int = 100             # assets per PIM request (≤ 100)
    max_retries: int = 8
    backoff_base: float = 2.0              # seconds
    backoff_max: float = 300.0             # seconds
    watermark_overlap: float = 60.0        # seconds subtracted from the run start
    run_lock_ttl: int = 3600               # seconds; renewed while a run is alive
    quarantine_ttl: int = 30 * 24 * 3600
    # a fetch reads DAM pages this long, then goes on in a new task (steps/slices.py)
    fetch_slice_seconds: float = 240.0
    fetch_slice_pages: int | None = None   # also stop after this many pages (tests)
    # a run whose progress has not moved this long gets its unfinished steps queued
    # again (connector/pipeline/watchdog.py): longer than backoff_max + a task's limit
    stall_after: float = 900.0


@dataclass(frozen=True)
class AlertsConfig:
    """Webhooks told about failed runs and new dead letters (connector/alerts.py)."""

    webhooks: tuple[Secret, ...] = ()      # Slack-compatible URLs, from the environment
    debounce_seconds: float = 300.0        # dead letters: one message per source per window
    timeout: float = 5.0                   # seconds per webhook request
    allowed_private_hosts: tuple[str, ...] = ()  # may resolve to loopback/private addresses
    freshness_seconds: float | None = None  # oldest change not in the PIM older: alert


@dataclass(frozen=True)
class Config:
    families: tuple[FamilyConfig, ...]
    sources: tuple[SourceConfig, ...]
    # which DAM assets are product assets at all (checked before the family's own rule)
    product_asset: Selector = field(default_factory=lambda: Selector(always=True))
    pim: PimConfig = field(default_factory=PimConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    path: str | None = None                # the file it came from

    def family(self, name: str) -> FamilyConfig:
        for f in self.families:
            if f.name == name:
                return f
        raise KeyError(name)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def families_of(self, source: SourceConfig) -> tuple[FamilyConfig, ...]:
        if not source.families:
            return self.families
        return tuple(f for f in self.families if f.name in source.families)

    def code_prefix_conflicts(self) -> list[tuple[str, str]]:
        """(source name, message) for each source whose asset codes could meet another
        source's in a family both feed: one of them would silently overwrite the other."""
        found: dict[tuple[str, str, str], list[str]] = {}  # (source, other, kind) → families
        for family in self.families:
            feeders = [s for s in self.sources if family.name in
                       {f.name for f in self.families_of(s)}]
            space_first: dict[tuple[str, ...], SourceConfig] = {}
            prefix_first: dict[str, SourceConfig] = {}  # prefix ignoring case → first source
            for source in feeders:
                earlier = space_first.get(source.id_space())
                if earlier is not None:
                    if (source.code_prefix or "") != (earlier.code_prefix or ""):
                        found.setdefault((source.name, earlier.name, "space"), []).append(
                            family.name)
                    continue
                space_first[source.id_space()] = source
                folded = (source.code_prefix or "").lower()
                other = prefix_first.setdefault(folded, source)
                if other is not source:
                    kind = "same" if folded else "none"
                    found.setdefault((source.name, other.name, kind), []).append(family.name)
        return [
            (name, _prefix_conflict_message(self.source(name), self.source(other), kind, fams))
            for (name, other, kind), fams in found.items()
        ]


def _prefix_conflict_message(
    source: SourceConfig, other: SourceConfig, kind: str, families: list[str]
) -> str:
    feeds = ("family " if len(families) == 1 else "families ") + ", ".join(families)
    if kind == "space":
        where = {"rest": "base_url and list path", "s3": "bucket and prefix"}.get(
            source.type, "folder path"
        )
        return (
            f"reads the same DAM as source {other.name} (same {where}) and both feed {feeds}, "
            f"so it must use the same code_prefix ({other.code_prefix!r} there, "
            f"{source.code_prefix!r} here): otherwise one DAM asset becomes two PIM assets"
        )
    if kind == "same":
        return (
            f"code_prefix {source.code_prefix!r} equals source {other.name}'s "
            f"{other.code_prefix!r} ignoring case (Akeneo compares codes ignoring case) and "
            f"both feed {feeds}: choose a distinct prefix"
        )
    return (
        f"sources {other.name} and {source.name} both feed {feeds} and neither has a "
        f"code_prefix, so assets with the same DAM id would overwrite each other: give "
        f"{source.name} a code_prefix (1 to 40 letters or digits)"
    )
