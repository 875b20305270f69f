"""DAM id → Akeneo asset code: deterministic, injective, always valid.

Akeneo asset codes must match ``^[a-zA-Z0-9_]+$``, be at most 255 characters long and be
unique across *all* asset families. DAM ids are arbitrary strings (Bynder: upper-case
UUIDs with dashes; Cloudinary: ``folder/name``; hot folders: relative paths). The code is
derived from the id alone, so the same DAM asset always gets the same code, on any worker,
in any process, whatever family it lands in.

The rule (two disjoint encodings, chosen by the shape of the id):

1. **Readable form** — ids made of ASCII letters/digits, optionally separated by *single*
   dashes, neither leading nor trailing (``^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$``; this covers
   UUIDs and plain numeric/alphanumeric ids): every ``-`` becomes ``_``, nothing else
   changes. ``0A3C2A6E-4C32-4E1B`` → ``0A3C2A6E_4C32_4E1B``. Such a code never contains
   ``__`` and never starts or ends with ``_``.

2. **Escaped form** — every other id: ASCII letters and digits are kept; every other
   character becomes an escape token that starts with ``__`` (so the code contains ``__``
   and can never equal a readable-form code):

   ======================  ======================================
   ``_``                    ``___``
   code point ≤ 0xFF       ``__x`` + 2 lower-case hex digits
   code point ≤ 0xFFFF     ``__u`` + 4 lower-case hex digits
   code point > 0xFFFF     ``__U`` + 6 lower-case hex digits
   ======================  ======================================

   e.g. ``products/allie.png`` → ``products__x2fallie__x2epng``, ``my_id`` → ``my___id``,
   ``-a`` → ``__x2da``. The tokens form a prefix code (after ``__`` the next character
   says how many characters follow), so the encoding is injective and decodable
   (`decode_asset_code`).

Both forms are injective and their images are disjoint, so the whole rule is injective.

**Long ids.** When the encoded form is 255 characters or longer, the code becomes the
first 189 characters of it + ``_h`` + the 64 hex digits of ``sha256(id as UTF-8)``:
exactly 255 characters, while every unhashed code has at most 254, so hashed and unhashed
codes never meet. Two long ids could only share a code if their encodings share the
first 189 characters *and* their SHA-256 digests are equal: about n²/2²⁵⁷ for n long
ids — negligible. Hashed codes cannot be decoded back.

Caveat: the PIM compares codes as given; ids that differ only by letter case give codes
that differ only by letter case.
"""

from __future__ import annotations

import hashlib
import re

MAX_CODE_LENGTH = 255
CODE_PATTERN = re.compile(r"^[a-zA-Z0-9_]+$")

_READABLE_ID = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HASH_MARK = "_h"
_PREFIX_KEPT = MAX_CODE_LENGTH - len(_HASH_MARK) - 64  # 189
_HASHED_CODE = re.compile(rf"^[a-zA-Z0-9_]{{{_PREFIX_KEPT}}}_h[0-9a-f]{{64}}$")


def _escape(char: str) -> str:
    if char in _ALNUM:
        return char
    if char == "_":
        return "___"
    point = ord(char)
    if point <= 0xFF:
        return f"__x{point:02x}"
    if point <= 0xFFFF:
        return f"__u{point:04x}"
    return f"__U{point:06x}"


def encode_id(dam_id: str) -> str:
    """The full (untruncated) encoding of `dam_id`; see the module docstring."""
    if _READABLE_ID.match(dam_id):
        return dam_id.replace("-", "_")
    return "".join(_escape(c) for c in dam_id)


def asset_code(dam_id: str) -> str:
    """A valid, unique Akeneo asset code for `dam_id` (raises ValueError on an empty id)."""
    if not isinstance(dam_id, str) or dam_id == "":
        raise ValueError("a DAM id must be a non-empty string")
    encoded = encode_id(dam_id)
    if len(encoded) < MAX_CODE_LENGTH:
        return encoded
    digest = hashlib.sha256(dam_id.encode("utf-8", "surrogatepass")).hexdigest()
    return encoded[:_PREFIX_KEPT] + _HASH_MARK + digest


def is_hashed_code(code: str) -> bool:
    """True when `code` is a truncated+hashed code (those cannot be decoded)."""
    return len(code) == MAX_CODE_LENGTH and _HASHED_CODE.match(code) is not None


def decode_asset_code(code: str) -> str:
    """The DAM id an (unhashed) code came from; ValueError when `code` is not one of ours."""
    if not CODE_PATTERN.match(code) or len(code) >= MAX_CODE_LENGTH:
        raise ValueError(f"not a decodable asset code: {code!r}")
    if "__" not in code:
        if code.startswith("_") or code.endswith("_"):
            raise ValueError(f"not a code produced by asset_code: {code!r}")
        return code.replace("_", "-")
    out: list[str] = []
    i = 0
    while i < len(code):
        char = code[i]
        if char != "_":
            out.append(char)
            i += 1
            continue
        if code[i : i + 2] != "__" or i + 2 >= len(code):
            raise ValueError(f"not a code produced by asset_code: {code!r}")
        kind = code[i + 2]
        if kind == "_":
            out.append("_")
            i += 3
            continue
        width = {"x": 2, "u": 4, "U": 6}.get(kind)
        digits = code[i + 3 : i + 3 + (width or 0)]
        if width is None or len(digits) != width or not re.fullmatch(r"[0-9a-f]+", digits):
            raise ValueError(f"not a code produced by asset_code: {code!r}")
        out.append(chr(int(digits, 16)))
        i += 3 + width
    decoded = "".join(out)
    if encode_id(decoded) != code:
        raise ValueError(f"not a code produced by asset_code: {code!r}")
    return decoded
