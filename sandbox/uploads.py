"""Media uploads that the sandbox PIM takes in constant memory.

werkzeug writes a form's file into a temporary file, and reading that back whole would
hold a 1 GiB test upload in the test's own process. Here the file part is written into a
`DigestSink` instead: it hashes (SHA-256) and counts every byte as it arrives and keeps
the bytes only up to `KEEP_BYTES` — enough for every test that reads an upload back; a
larger upload is kept as size and hash only (`GET` of it says so).
"""

from __future__ import annotations

import hashlib
import io
from typing import IO, Any, cast

from werkzeug.wrappers import Request

#: Uploads up to this size are kept whole (readable back); larger ones as size + sha256.
KEEP_BYTES = 32 * 1024 * 1024


class DigestSink(io.RawIOBase):
    """A write-only file that keeps the SHA-256, the size and (up to `keep`) the bytes."""

    def __init__(self, keep: int = KEEP_BYTES) -> None:
        super().__init__()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._keep = keep
        self._kept: io.BytesIO | None = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.size += len(chunk)
        if self._kept is not None:
            if self.size <= self._keep:
                self._kept.write(chunk)
            else:
                self._kept = None  # too large to keep: size and hash only
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return 0  # werkzeug rewinds after writing; nothing is read back through here

    @property
    def content(self) -> bytes | None:
        """The bytes, or None when the upload was larger than `keep`."""
        return self._kept.getvalue() if self._kept is not None else None


class StreamingRequest(Request):
    """A werkzeug request whose uploaded files go into a `DigestSink`."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return cast(IO[bytes], DigestSink())  # a RawIOBase: what werkzeug needs of a file
