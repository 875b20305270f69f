"""DAM id → Akeneo asset code: deterministic, injective, always valid.

Akeneo asset codes must match ``^[a-zA-Z0-9_]+$``, be at most 255 characters long and be
unique across *all* asset families — and Akeneo compares them **without regard to letter
case** (its asset index is case-insensitive on codes). DAM ids are arbitrary strings
(Bynder: upper-case UUIDs with dashes; Cloudinary: ``folder/name``; hot folders: relative
paths). The code is derived from the id alone, so the same DAM asset always gets the same
code, on any worker, in any process, whatever family it lands in; and two different ids
never get codes that are equal *ignoring case*.

A code is a **body** followed, when the id has upper-case ASCII letters, by a **case
marker**:

1. **Body, readable form** — ids made of ASCII letters/digits, optionally separated by
   *single* dashes, neither leading nor trailing (``^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$``;
   this covers UUIDs and plain ids): every ``-`` becomes ``_``, letters keep their case.
   Such a body never contains ``__`` and never starts or ends with ``_``.

2. **Body, escaped form** — every other id: ASCII letters and digits are kept; every
   other character becomes an escape token that starts with ``__`` (so the body contains
   ``__`` and can never equal a readable body):

   ======================  ======================================
   ``_``                    ``___``
   code point ≤ 0xFF       ``__x`` + 2 lower-case hex digits
   code point ≤ 0xFFFF     ``__u`` + 4 lower-case hex digits
   code point > 0xFFFF     ``__w`` + 6 lower-case hex digits
   ======================  ======================================

3. **Case marker** — absent when the id has no upper-case ASCII letter; ``__cu`` when all
   its ASCII letters are upper case; else ``__c`` + the lower-case hex of a bit mask whose
   bit *i* is set when the *i*-th ASCII letter of the id is upper case.

``0a3c2a6e-4c32-4e1b`` → ``0a3c2a6e_4c32_4e1b``; ``0A3C2A6E-4C32-4E1B`` →
``0A3C2A6E_4C32_4E1B__cu``; ``products/allie.png`` → ``products__x2fallie__x2epng``;
``my_id`` → ``my___id``; ``Ab`` → ``Ab__c1``.

Why this is injective even ignoring case: read case-insensitively, the body tokens form a
prefix code (after ``__`` the next character — ``_``, ``x``, ``u``, ``w`` or the marker's
``c`` — says what follows), so the folded code gives back the id with its ASCII letters
folded, and the marker gives back which of them were upper case. Both readable and
escaped bodies are decodable (`decode_asset_code`).

**Long ids.** When the full code is 255 characters or longer, it becomes its first 189
characters + ``_h`` + the 64 hex digits of ``sha256(id as UTF-8)``: exactly 255
characters, while every unhashed code has at most 254, so hashed and unhashed codes never
meet. Two long ids could only share a code if their SHA-256 digests are equal: about
n²/2²⁵⁷ for n long ids — negligible. Hashed codes cannot be decoded back.

**Source prefixes.** Two sources feeding one family may have overlapping DAM ids (two hot
folders, two DAMs with numeric ids); a source's ``code_prefix`` keeps their codes apart:
the code is ``<prefix>__s<encoding of the id>`` (hashed as above when that reaches 255
characters). A prefix is 1 to 40 ASCII letters/digits. Why such codes never meet:

- an unprefixed code never holds ``__s`` right after a run of letters/digits that starts
  it: those are single-character tokens, so a ``__`` there starts an escape token or the
  case marker, whose next character is ``_``, ``x``, ``u``, ``w`` or ``c``
  (case-insensitively, never ``s``), and a readable body has no ``__`` at all;
- two prefixes that differ ignoring case either differ at some position they both have,
  or one is shorter and its separator's ``_`` faces a letter/digit of the longer;
- the separator lies within the first 43 characters, inside the 189 a hashed code keeps.
"""

from __future__ import annotations

import hashlib
import re

from connector.rules import (
    MAX_CODE_LENGTH,
    MAX_SOURCE_PREFIX_LENGTH,
    SOURCE_PREFIX_SEPARATOR,
    is_source_prefix,
    matches_code,
)

_READABLE_ID = re.compile(r"^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\Z")
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
    return f"__w{point:06x}"


_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _case_marker(dam_id: str) -> str:
    letters = [c for c in dam_id if c in _LETTERS]
    upper = [c in _UPPER for c in letters]
    if not any(upper):
        return ""
    if all(upper):
        return "__cu"
    mask = sum(1 << i for i, is_upper in enumerate(upper) if is_upper)
    return f"__c{mask:x}"


def encode_id(dam_id: str) -> str:
    """The full (untruncated) encoding of `dam_id`; see the module docstring."""
    if _READABLE_ID.fullmatch(dam_id):
        body = dam_id.replace("-", "_")
    else:
        body = "".join(_escape(c) for c in dam_id)
    return body + _case_marker(dam_id)


def check_source_prefix(prefix: str) -> None:
    """ValueError unless `prefix` keeps every prefixed code valid and apart (docstring)."""
    if not is_source_prefix(prefix):
        raise ValueError(
            f"a code prefix must be 1 to {MAX_SOURCE_PREFIX_LENGTH} ASCII letters or digits "
            f"(the connector adds the separator {SOURCE_PREFIX_SEPARATOR!r}), got {prefix!r}"
        )


def asset_code(dam_id: str, prefix: str | None = None) -> str:
    """A valid, unique Akeneo asset code for `dam_id` of a source with code prefix
    `prefix` (None or "": no prefix, today's codes). ValueError on an empty id or a prefix
    outside the rule."""
    if not isinstance(dam_id, str) or dam_id == "":
        raise ValueError("a DAM id must be a non-empty string")
    head = ""
    if prefix:
        check_source_prefix(prefix)
        head = prefix + SOURCE_PREFIX_SEPARATOR
    encoded = head + encode_id(dam_id)
    if len(encoded) < MAX_CODE_LENGTH:
        return encoded
    digest = hashlib.sha256(dam_id.encode("utf-8", "surrogatepass")).hexdigest()
    return encoded[:_PREFIX_KEPT] + _HASH_MARK + digest


def is_hashed_code(code: str) -> bool:
    """True when `code` is a truncated+hashed code (those cannot be decoded)."""
    return len(code) == MAX_CODE_LENGTH and _HASHED_CODE.fullmatch(code) is not None


def decode_asset_code(code: str) -> str:
    """The DAM id an (unhashed) code came from; ValueError when `code` is not one of ours."""
    if not matches_code(code) or len(code) >= MAX_CODE_LENGTH:
        raise ValueError(f"not a decodable asset code: {code!r}")
    foreign = ValueError(f"not a code produced by asset_code: {code!r}")
    body = code
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if body[i : i + 2] != "__":
            out.append(char)
            i += 1
            continue
        kind = body[i + 2] if i + 2 < len(body) else ""
        if kind == "c":  # the case marker ends the code
            body = body[:i]
            break
        if kind == "_":
            out.append("_")
            i += 3
            continue
        width = {"x": 2, "u": 4, "w": 6}.get(kind)
        digits = body[i + 3 : i + 3 + (width or 0)]
        if width is None or len(digits) != width or not re.fullmatch(r"[0-9a-f]+", digits):
            raise foreign
        out.append(chr(int(digits, 16)))
        i += 3 + width
    if "__" not in body:  # readable form: single underscores were dashes
        if body.startswith("_") or body.endswith("_"):
            raise foreign
        decoded = body.replace("_", "-")
    else:
        decoded = "".join(out)
    if encode_id(decoded) != code:
        raise foreign
    return decoded
