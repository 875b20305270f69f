"""S3 adapter: the objects of a bucket (under a prefix) are the DAM, read with boto3.

The id of an asset is its object key; its folder is the key's directory, so folder
selectors work as for a hot folder. The change date is `LastModified`. S3 cannot filter a
listing by date, so `changed_since` lists every key under the prefix (ListObjectsV2, up to
`page_size` ≤ 1000 keys a request, continuation tokens) and filters client-side; only the
objects that pass cost more requests: one HeadObject (user metadata, content type) and one
GetObjectTagging each, when `metadata`/`tags` are on. A run over N keys with C changed
makes ceil(N / page_size) + 2·C requests; `get` makes 2, a download 1 (GetObject).

A tag-only edit (PutObjectTagging) does not move `LastModified`: polling cannot see it,
the SQS intake (`s3:ObjectTagging:*` events) can. Deletions are found by reconciliation
(`all_ids`: the listing only) or arrive as `ObjectRemoved` events through SQS.

Binaries are read with GetObject (the source's own credentials, no URL to follow, so no
SSRF surface) and streamed into a temporary file, stopping at `media.max_bytes`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from connector.aws import AwsSettings, client, error_code, http_status
from connector.config.model import MediaConfig, S3SourceConfig
from connector.dam.auth import DamAuthError
from connector.dam.base import (
    DamAsset,
    DamError,
    DamSource,
    Page,
    PaginationLoopError,
    TransientDamError,
)
from connector.dam.media import MediaError, MediaTooLargeError, spool_capped

log = logging.getLogger(__name__)

_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
     "InvalidToken", "AllAccessDisabled", "AuthorizationHeaderMalformed"}
)
_TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
     "InternalError", "RequestTimeTooSkewed"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CHUNK = 1024 * 1024


class S3Source(DamSource):
    """A `DamSource` over the keys of one bucket under one prefix."""

    def __init__(
        self,
        name: str,
        config: S3SourceConfig,
        media: MediaConfig | None = None,
        *,
        s3_client: Any = None,
    ) -> None:
        self.name = name
        self.config = config
        self.media = media or MediaConfig()
        self.requests: Counter[str] = Counter()  # API calls by operation (tests, logs)
        self._client = s3_client

    def __repr__(self) -> str:
        return f"S3Source(name={self.name!r}, bucket={self.config.bucket!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            cfg = self.config
            settings = AwsSettings(
                region=cfg.region,
                endpoint_url=cfg.endpoint_url,
                access_key_id=cfg.access_key_id,
                secret_access_key=cfg.secret_access_key,
                session_token=cfg.session_token,
                timeout=cfg.timeout,
                max_retries=cfg.max_retries,
                addressing_style=cfg.addressing_style,
            )
            self._client = client("s3", settings, f"source {self.name!r} (type s3)")
        return self._client

    # ------------------------------------------------------------ DamSource

    def changed_since(self, since: datetime | None) -> Iterator[Page]:
        for page, _token in self.changed_pages(since):
            if page.assets:
                yield page

    def changed_pages(
        self, since: datetime | None, resume: str | None = None
    ) -> Iterator[tuple[Page, str | None]]:
        """The token is the page's last key: S3 lists keys in order, and a resumed listing
        starts after it (StartAfter), without re-reading the pages before."""
        threshold = _aware(since) if since is not None else None
        start_after = json.loads(resume)["after"] if resume else None
        for objects, last_key, more in self._pages(start_after):
            page = Page()
            for obj in objects:
                modified = _aware(obj["LastModified"])
                if threshold is not None and modified < threshold:
                    continue
                asset = self._asset(obj["Key"], obj, modified)
                if asset is not None:
                    page.assets.append(asset)
            token = json.dumps({"after": last_key}) if more and last_key else None
            yield page, token

    def get(self, asset_id: str) -> DamAsset | None:
        if not self._ours(asset_id):
            return None
        head = self._call("HeadObject", Key=asset_id, missing_ok=True)
        if head is None:
            return None
        return self._asset(asset_id, {}, _aware(head["LastModified"]), head=head)

    def open_binary(self, asset: DamAsset) -> AbstractContextManager[IO[bytes]]:
        """The object's bytes in a temporary file (removed on exit), capped at
        `media.max_bytes` (announced ContentLength or bytes actually read)."""
        return self._open(asset.id)

    def all_ids(self) -> Iterator[str]:
        """Every key under the prefix: the listing only, no per-object request."""
        for objects in self._listing():
            for obj in objects:
                yield str(obj["Key"])

    def close(self) -> None:
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            self._client = None

    # ------------------------------------------------------------ listing

    def _listing(self) -> Iterator[list[dict[str, Any]]]:
        """The objects of each ListObjectsV2 page (directory markers left out)."""
        for objects, _last, _more in self._pages():
            yield objects

    def _pages(
        self, start_after: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], str | None, bool]]:
        """Each ListObjectsV2 page: our objects, the page's last key (markers included) and
        whether more pages follow; from the key after `start_after` when given."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"MaxKeys": self.config.page_size}
            if self.config.prefix:
                params["Prefix"] = self.config.prefix
            if token:
                params["ContinuationToken"] = token
            elif start_after:
                params["StartAfter"] = start_after
            reply = self._call("ListObjectsV2", **params)
            contents = reply.get("Contents") or ()
            last = str(contents[-1].get("Key", "")) if contents else None
            more = bool(reply.get("IsTruncated"))
            yield [o for o in contents if self._ours(str(o.get("Key", "")))], last, more
            if not more:
                return
            token = reply.get("NextContinuationToken")
            if not token:
                raise DamError(
                    f"{self.name}: S3 said the listing of bucket {self.config.bucket!r} is "
                    "truncated but gave no NextContinuationToken"
                )
            if token in seen:
                raise PaginationLoopError(
                    f"{self.name}: S3 handed out the same continuation token twice while "
                    f"listing bucket {self.config.bucket!r}: stopped instead of looping"
                )
            seen.add(token)

    def _ours(self, key: str) -> bool:
        """A key this source reads: under the prefix, not a directory marker."""
        return bool(key) and key.startswith(self.config.prefix) and not key.endswith("/")

    # ------------------------------------------------------------ records

    def _asset(
        self,
        key: str,
        listed: dict[str, Any],
        modified: datetime,
        head: dict[str, Any] | None = None,
    ) -> DamAsset | None:
        """The record of one key; None when it vanished between listing and HeadObject."""
        if head is None and self.config.metadata:
            head = self._call("HeadObject", Key=key, missing_ok=True)
            if head is None:
                return None
        tags: dict[str, str] = {}
        if self.config.tags:
            reply = self._call("GetObjectTagging", Key=key, missing_ok=True)
            if reply is None:
                return None
            tags = {str(t["Key"]): str(t.get("Value", "")) for t in reply.get("TagSet") or ()}
        head = head or {}
        path = PurePosixPath(key)
        folder = key.rsplit("/", 1)[0] if "/" in key else None
        size = listed.get("Size", head.get("ContentLength"))
        etag = str(listed.get("ETag") or head.get("ETag") or "").strip('"') or None
        properties: dict[str, Any] = {
            "key": key,
            "name": path.name,
            "folder": folder,
            "extension": path.suffix.lstrip(".").lower() or None,
            "size": size,
            "etag": etag,
            "last_modified": modified.isoformat(),
            # HeadObject leaves StorageClass out for STANDARD; the listing names it
            "storage_class": listed.get("StorageClass") or head.get("StorageClass")
            or "STANDARD",
            "content_type": head.get("ContentType"),
            "metadata": dict(head.get("Metadata") or {}),
            "tags": tags,
        }
        return DamAsset(
            id=key,
            source=self.name,
            properties=properties,
            updated=modified,
            filename=path.name,
            folder=folder,
            tags=tuple(f"{k}={v}" if v else k for k, v in sorted(tags.items())),
            media_url=f"s3://{self.config.bucket}/{key}",
        )

    # ------------------------------------------------------------ media

    @contextmanager
    def _open(self, key: str) -> Iterator[IO[bytes]]:
        path = self._download(key)
        try:
            with path.open("rb") as stream:
                yield stream
        finally:
            path.unlink(missing_ok=True)

    def _download(self, key: str) -> Path:
        cap = self.media.max_bytes
        where = f"s3://{self.config.bucket}/{key}"
        reply = self._call("GetObject", Key=key, missing_ok=True)
        if reply is None:
            raise MediaError(f"{self.name}: {where} no longer exists")
        body = reply["Body"]
        try:
            announced = reply.get("ContentLength")
            if isinstance(announced, int) and announced > cap:
                raise MediaTooLargeError(
                    f"{where} is {announced} bytes (ContentLength), over the {cap}-byte cap"
                )
            return spool_capped(
                body.iter_chunks(_CHUNK), cap=cap, where=f"{self.name}: download of {where}",
                name=key, transport_error=lambda exc: _is_botocore(exc) or isinstance(exc, OSError),
            )
        finally:
            body.close()

    # ------------------------------------------------------------ calls

    def _call(self, operation: str, *, missing_ok: bool = False, **params: Any) -> Any:
        """One API call (botocore retries throttling and 5xx itself); its failure as the
        DamError the pipeline understands. `missing_ok`: None for a missing key."""
        self.requests[operation] += 1
        method = getattr(self.client, _snake(operation))
        try:
            return method(Bucket=self.config.bucket, **params)
        except Exception as exc:
            if not _is_botocore(exc):
                raise
            code, status = error_code(exc), http_status(exc)
            if missing_ok and (code in _MISSING_CODES or status == 404) and code != "NoSuchBucket":
                return None
            raise self._error(operation, exc, code, status) from None

    def _error(self, operation: str, exc: Exception, code: str, status: int) -> DamError:
        base = f"sources.{self.name}.s3"
        bucket = self.config.bucket
        kind = type(exc).__name__
        if kind in ("NoCredentialsError", "PartialCredentialsError"):
            return DamAuthError(
                f"{self.name}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment, or access_key_id and "
                f"secret_access_key (${{VAR}} references) in {base}",
                key=f"{base}.access_key_id",
            )
        if code in _AUTH_CODES or status in (401, 403):
            return DamAuthError(
                f"{self.name}: S3 refused {operation} on bucket {bucket!r} "
                f"({code or status}): check the credentials and that they allow "
                "s3:ListBucket, s3:GetObject and s3:GetObjectTagging",
                key=f"{base}.access_key_id",
            )
        if code == "NoSuchBucket":
            return DamError(f"{self.name}: bucket {bucket!r} does not exist (check {base}.bucket"
                            " and region)", key=f"{base}.bucket")
        if code in _TRANSIENT_CODES or status >= 500 or status == 429 or not code:
            # no code: a connection/timeout error from botocore, after its own retries
            return TransientDamError(
                f"{self.name}: S3 {operation} on bucket {bucket!r} failed: {code or kind}"
            )
        return DamError(f"{self.name}: S3 {operation} on bucket {bucket!r} failed: {code}")


def _is_botocore(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(("botocore", "urllib3"))


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
