"""media_file attributes: DAM binary → PIM media file code, uploaded once per content.

The binary is read through the DAM source (`DamSource.open_binary`, which for REST DAMs
goes through the SafeDownloader's host allow-list) into a spooled temporary file while its
SHA-256 is computed and its size capped. When the same content was uploaded before (any
asset, any worker: the hash → media-file-code map lives in Redis under
``Keys.of("media", "sha256", <hex>)``) the earlier code is reused and nothing is uploaded.

A second shortcut skips even the download: the code is also remembered per asset with the
asset's *fingerprint* (its DAM `updated` time, binary URL and file name). A full re-sync of
unchanged assets then costs no DAM binary request at all; any change of the fingerprint
(the DAM bumps `updated` when the file is replaced) downloads and hashes again.

Two steps: `plan` finds the code or describes the upload (filename, sha256, size) and
writes nothing (dry runs and `explain` stop there); `execute` uploads and records.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tempfile
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import redis

from connector.dam.base import DamAsset, DamError, DamSource, TransientDamError
from connector.pim.errors import PermanentPimError, PimAuthError, TransientPimError
from connector.pim.structure import Attribute
from connector.redis_conn import Keys
from connector.retry import backoff_delay, retry_after_of, retrying
from connector.transform.converters import ConversionError, PendingMedia

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024
#: longest wait, in seconds, between two tries of one upload (a longer Retry-After included)
UPLOAD_RETRY_MAX = 30.0


class MediaUploader(Protocol):
    """The part of the PIM client this module uses."""

    def upload_media_file(self, path_or_fileobj: Any, filename: str) -> str: ...


class MediaFileHandler:
    """Downloads, caps, hashes and uploads asset binaries; reuses codes by content hash."""

    def __init__(
        self,
        source: DamSource,
        uploader: MediaUploader,
        redis_client: redis.Redis,
        keys: Keys | None = None,
        max_bytes: int = 200 * 1024 * 1024,
        code_ttl: int | None = None,
        upload_attempts: int = 3,
        upload_retry_delay: float = 0.25,
    ) -> None:
        self.source = source
        self.uploader = uploader
        self.redis = redis_client
        self.keys = keys or Keys()
        self.max_bytes = max_bytes
        self.code_ttl = code_ttl
        self.upload_attempts = max(1, upload_attempts)
        self.upload_retry_delay = upload_retry_delay

    def hash_key(self, sha256_hex: str) -> str:
        return self.keys.of("media", "sha256", sha256_hex)

    def asset_key(self, asset: DamAsset, attribute: str) -> str:
        return self.keys.of("media", "asset", asset.source, attribute, asset.id)

    @staticmethod
    def fingerprint(asset: DamAsset) -> str | None:
        """What identifies this version of the binary without reading it (None: unknown)."""
        if asset.updated is None:
            return None
        return f"{asset.updated.isoformat()}|{asset.media_url or ''}|{asset.filename or ''}"

    def media_code(self, asset: DamAsset, family: str, attribute: Attribute) -> str:
        """The PIM media-file code of `asset`'s binary (plan, then execute the plan).
        ConversionError for data problems (unreadable, too big, wrong extension, rejected
        by the PIM); transient PIM errors (after a few quick retries) and PimAuthError
        propagate: neither is the asset's fault."""
        pending = self.plan(asset, family, attribute, keep_binary=True)
        try:
            return self.execute(asset, pending)
        finally:
            pending.close()

    def plan(
        self, asset: DamAsset, family: str, attribute: Attribute, keep_binary: bool = False
    ) -> PendingMedia:
        """What `asset`'s binary needs, without writing anything (no upload, no Redis
        record): the code the PIM already has (same fingerprint, or same content), or the
        upload to make. Downloading to hash is a DAM read; `keep_binary` keeps the download
        for `execute` (the real run) instead of reading the DAM twice."""
        field = attribute.code
        filename = self.filename_of(asset)
        self._check_extension(field, filename, attribute)
        fingerprint = self.fingerprint(asset)
        if fingerprint is not None:
            known: list[Any] = self.redis.hmget(  # type: ignore[assignment]
                self.asset_key(asset, field), ["fingerprint", "code"]
            )
            if known[0] is not None and known[1] is not None and known[0].decode() == fingerprint:
                return PendingMedia(family, field, filename, code=str(known[1].decode()),
                                    reuse="fingerprint", fingerprint=fingerprint)
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
        try:
            digest, size = self._download(asset, spool, self._limit(attribute), field)
            cached = self.redis.get(self.hash_key(digest))
        except BaseException:
            spool.close()
            raise
        pending = PendingMedia(family, field, filename, sha256=digest, size=size,
                               fingerprint=fingerprint)
        if cached:
            pending.code = cached.decode() if isinstance(cached, bytes) else str(cached)
            pending.reuse = "sha256"
        if pending.code is None and keep_binary:
            pending.binary = spool
        else:
            spool.close()
        return pending

    def execute(self, asset: DamAsset, pending: PendingMedia) -> str:
        """Carry out a plan: upload when needed (once per content, fleet-wide), remember
        the code by content hash and by the asset's fingerprint. Returns the code."""
        if pending.reuse == "fingerprint" and pending.code is not None:
            return pending.code
        field, filename = pending.attribute, pending.filename
        code = pending.code
        uploaded = False
        if code is None:
            # uploaded meanwhile? Asked only of a plan without the download (a dry run's,
            # maybe old): a plan that kept it (transform) looked the hash up a moment ago
            cached = None if pending.binary is not None else self.redis.get(
                self.hash_key(str(pending.sha256)))
            if cached:
                code = cached.decode() if isinstance(cached, bytes) else str(cached)
            else:
                code = self._upload_planned(asset, pending)
                uploaded = True
                log.info("uploaded media file for asset %s (%s): %s", asset.id, filename, code)
        # what to remember, in one round trip: the code by content hash (after an upload)
        # and by the asset's fingerprint
        pipe = self.redis.pipeline(transaction=False)
        if uploaded:
            pipe.set(self.hash_key(str(pending.sha256)), code, ex=self.code_ttl)
        if pending.fingerprint is not None:
            key = self.asset_key(asset, field)
            pipe.hset(key, mapping={"fingerprint": pending.fingerprint, "code": code})
            if self.code_ttl:
                pipe.expire(key, self.code_ttl)
        if len(pipe):
            pipe.execute()
        return code

    def _upload_planned(self, asset: DamAsset, pending: PendingMedia) -> str:
        """Upload the planned content: the kept download, or a new one that must hash the
        same (the file must not change between what was planned and what is uploaded)."""
        if pending.binary is not None:
            try:
                return self._upload(pending.binary, pending.filename, pending.attribute)
            finally:
                pending.close()
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            digest, _ = self._download(asset, spool, self.max_bytes, pending.attribute)
            if digest != pending.sha256:
                raise ConversionError(
                    pending.attribute,
                    f"the file {pending.filename!r} changed since it was planned "
                    "(it is synced on the next run)",
                )
            return self._upload(spool, pending.filename, pending.attribute)

    def _upload(self, spool: IO[bytes], filename: str, field: str) -> str:
        """Upload, retrying the PIM's transient refusals (429/5xx/timeouts) a few times here.

        Why here: one chunk's transform uploads dozens of files; if one flaky upload failed
        the whole chunk, a PIM that refuses a share of requests would make such a chunk
        exhaust its task retries before every file got through. The wait honours the PIM's
        Retry-After (the client's budget also holds every process back until then).
        """
        def upload() -> str:
            spool.seek(0)
            return self.uploader.upload_media_file(spool, filename)

        try:
            return retrying(
                upload,
                retry_if=lambda exc: isinstance(exc, TransientPimError),
                wait=lambda n, exc: backoff_delay(
                    n, self.upload_retry_delay, UPLOAD_RETRY_MAX, retry_after_of(exc),
                    jitter=False,
                ),
                attempts=self.upload_attempts,
            )
        except PimAuthError:
            raise  # our credentials, not the file: never quarantine the asset for it
        except PermanentPimError as exc:
            raise ConversionError(
                field, f"the PIM rejected the file {filename!r}: {exc}"
            ) from exc

    @staticmethod
    def filename_of(asset: DamAsset) -> str:
        if asset.filename:
            return posixpath.basename(asset.filename.replace("\\", "/")) or asset.filename
        if asset.media_url:
            name = posixpath.basename(urlsplit(asset.media_url).path)
            if name:
                return name
        return f"{asset.id}.bin"

    @staticmethod
    def _check_extension(field: str, filename: str, attribute: Attribute) -> None:
        allowed = {e.lower().lstrip(".") for e in attribute.allowed_extensions}
        if not allowed:
            return
        extension = os.path.splitext(filename)[1].lower().lstrip(".")
        if extension not in allowed:
            raise ConversionError(
                field,
                f"file {filename!r} has extension {extension or '(none)'!r}; "
                f"allowed: {', '.join(sorted(allowed))}",
            )

    def _limit(self, attribute: Attribute) -> int:
        limit = self.max_bytes
        if attribute.max_file_size:
            try:
                megabytes = float(attribute.max_file_size)
            except ValueError:
                megabytes = 0.0
            if megabytes > 0:
                limit = min(limit, int(megabytes * 1024 * 1024))
        return limit

    def _download(
        self, asset: DamAsset, spool: IO[bytes], limit: int, field: str
    ) -> tuple[str, int]:
        """(sha256 hex, size) of the binary, written into `spool`."""
        sha = hashlib.sha256()
        size = 0
        try:
            with self.source.open_binary(asset) as stream:
                while True:
                    chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise ConversionError(
                            field, f"file is larger than the {limit} bytes allowed"
                        )
                    sha.update(chunk)
                    spool.write(chunk)
        except (ConversionError, TransientDamError):
            raise  # a flaky DAM is retried by the task, not held against the record
        except (DamError, OSError, ValueError) as exc:
            raise ConversionError(field, f"cannot read the file from the DAM: {exc}") from exc
        if size == 0:
            raise ConversionError(field, "the DAM returned an empty file")
        return sha.hexdigest(), size
