"""Akeneo's rules for codes and locale codes: one definition for every module that checks them.

Why one module: the config schemas, the structure file, the DAM id → asset code encoding and
the value converters all check the same two rules; copies drifted apart once (the structure
file accepted ``en_us`` and refused ``zh_Hans_CN``), so they all import them from here.

- A **code** (asset family, attribute, option, record, asset, channel) is made of ASCII
  letters, digits and ``_`` (Akeneo: ``^[a-zA-Z0-9_]+$``), at most 255 characters.
- A **locale code** is a language (2-3 lower-case letters), an optional script (one
  upper-case then three lower-case letters) and a region (2-3 upper-case letters or
  digits): ``en_US``, ``zh_Hans_CN``, ``es_419``. Akeneo's locale list is made of such codes;
  lower-case regions (``en_us``) are not Akeneo locales.

The patterns are written without anchors: use the ``is_*`` helpers or ``fullmatch``.
"""

from __future__ import annotations

import re

MAX_CODE_LENGTH = 255
CODE_PATTERN = r"[A-Za-z0-9_]+"
CODE_RE = re.compile(CODE_PATTERN)

LOCALE_PATTERN = r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?_[A-Z0-9]{2,3}"
LOCALE_RE = re.compile(LOCALE_PATTERN)

# A source's code prefix (see connector.transform.codes): letters/digits only, so that the
# separator below can never be confused with a part of the prefix.
MAX_SOURCE_PREFIX_LENGTH = 40
SOURCE_PREFIX_PATTERN = rf"[A-Za-z0-9]{{1,{MAX_SOURCE_PREFIX_LENGTH}}}"
SOURCE_PREFIX_RE = re.compile(SOURCE_PREFIX_PATTERN)
SOURCE_PREFIX_SEPARATOR = "__s"


def matches_code(value: object) -> bool:
    """Whether `value` is a string of code characters (length not checked)."""
    return isinstance(value, str) and CODE_RE.fullmatch(value) is not None


def is_code(value: object) -> bool:
    """Whether `value` is a valid Akeneo code: code characters, at most 255 of them."""
    return matches_code(value) and len(str(value)) <= MAX_CODE_LENGTH


def is_locale(value: object) -> bool:
    """Whether `value` is a locale code such as ``en_US`` or ``zh_Hans_CN``."""
    return isinstance(value, str) and LOCALE_RE.fullmatch(value) is not None


def is_source_prefix(value: object) -> bool:
    """Whether `value` is a valid source code prefix (1 to 40 ASCII letters/digits)."""
    return isinstance(value, str) and SOURCE_PREFIX_RE.fullmatch(value) is not None
