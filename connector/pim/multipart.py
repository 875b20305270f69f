"""A streaming `multipart/form-data` body with one file part: constant memory for any size.

requests' `files=` builds the whole body in memory (the file read whole, then copied into
the body), twice the file's size for a media upload. `MultipartFile` is the same bytes —
the part's headers are rendered by urllib3's `RequestField`, exactly as `files=` renders
them — read piece by piece: the opening boundary and headers, the file from where it
stood, the closing boundary. It is seekable and has a length, so requests sends it with
a `Content-Length` (not chunked, which some PIM front ends refuse) and reads it in blocks.

Why not requests-toolbelt's `MultipartEncoder`: a body of one part is three pieces and a
length; this module is that and nothing more, and it needs no new dependency (urllib3
comes with requests) and no untyped package. A new `MultipartFile` is made per attempt,
so a retried request (a 401 renewal) starts from the file's first byte again.
"""

from __future__ import annotations

import io
import os
from typing import IO

from urllib3.fields import RequestField
from urllib3.filepost import choose_boundary


class MultipartFile(io.RawIOBase):
    """`multipart/form-data` with field `name` holding `fileobj` from offset `start` on
    (a seekable binary file, not closed here). `content_type` is the header to send."""

    def __init__(self, name: str, filename: str, fileobj: IO[bytes], start: int = 0) -> None:
        super().__init__()
        boundary = choose_boundary()
        field = RequestField(name=name, data=b"", filename=filename)
        field.make_multipart(content_type=None)  # as requests' files= does without a type
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self._head = f"--{boundary}\r\n".encode("latin-1") + field.render_headers().encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
        self._file = fileobj
        self._start = start
        self._size = max(0, fileobj.seek(0, os.SEEK_END) - start)
        fileobj.seek(start)
        self._file_at = 0  # where `fileobj` stands, relative to `start`
        self._pos = 0

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` from the pieces (head, file, tail) in turn; 0 at the end. One read
        spans pieces: a small upload is one block, so one send and one TLS record."""
        view = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(view):
            got = self._read_piece(view[filled:])
            if not got:
                break
            filled += got
        return filled

    def _read_piece(self, view: memoryview) -> int:
        """Copy into `view` from the piece the position is in; 0 at the end."""
        head, size = len(self._head), self._size
        if self._pos < head:
            piece = self._head[self._pos : self._pos + len(view)]
        elif self._pos < head + size:
            offset = self._pos - head
            if offset != self._file_at:
                self._file.seek(self._start + offset)
            piece = self._file.read(min(len(view), size - offset))
            if not piece:
                raise OSError(f"the file to upload shrank while it was sent ({offset} of {size})")
            self._file_at = offset + len(piece)
        else:
            offset = self._pos - head - size
            piece = self._tail[offset : offset + len(view)]
        view[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)
