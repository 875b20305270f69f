"""One converter per Akeneo asset attribute type, chosen by the PIM's own structure.

Kept whole (~440 lines): one short converter per attribute type and the table that picks
them; split by type, the table and the shared checks would be scattered over many files.

The attribute type comes from the cached PIM structure (`Attribute.type`), never from the
config: the PIM is the authority on what `data` it accepts. Each converter turns one DAM
value into the `data` of an Akeneo value, or raises `ConversionError(field, reason)` with
a reason a person can act on. Converters never talk to the network themselves: missing
options are *collected* in the context (created by the transformer once the whole record
converted), media files are *planned* through the context's `MediaFileHandler` (uploaded
by the transformer when it executes the plan).
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from connector.config.model import AttributeMapping
from connector.dam.base import DamAsset
from connector.pim.structure import Attribute
from connector.rules import MAX_CODE_LENGTH, is_code, matches_code

if TYPE_CHECKING:
    from connector.transform.media import MediaFileHandler

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)\Z")
_TRUE = frozenset({"true", "yes", "1", "y", "on"})
_FALSE = frozenset({"false", "no", "0", "n", "off"})
# Epoch numbers above this are milliseconds (year 5138 in seconds).
_EPOCH_MS_THRESHOLD = 10**11


class ConversionError(Exception):
    """A DAM value cannot become the `data` of attribute `field`."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class PendingOption:
    """An option that must exist in the PIM before the asset is written."""

    family: str
    attribute: str
    code: str
    label: str


@dataclass
class PendingMedia:
    """A media file an asset needs in the PIM, as planned (see `MediaFileHandler.plan`).

    `code` is set when the PIM already has the content (reused: nothing to upload);
    otherwise the file must be uploaded (`filename`, `sha256`, `size` describe it) before
    the asset is written. `binary` optionally keeps the downloaded content for that upload
    (the real run; never serialised); `close()` releases it.
    """

    family: str
    attribute: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    code: str | None = None
    reuse: str | None = None  # "fingerprint" | "sha256" | None (must upload)
    fingerprint: str | None = None
    binary: IO[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def needs_upload(self) -> bool:
        return self.code is None

    @property
    def placeholder(self) -> str:
        """The planned `data` of the value: the code, or what it waits for."""
        if self.code is not None:
            return self.code
        return f"(upload {self.filename} sha256:{self.sha256})"

    def close(self) -> None:
        if self.binary is not None:
            self.binary.close()
            self.binary = None


@dataclass
class ConversionContext:
    """What a converter may need besides the value."""

    family: str
    attribute: Attribute
    mapping: AttributeMapping
    asset: DamAsset | None = None
    auto_create_options: bool = False
    known_options: frozenset[str] = frozenset()  # created earlier by this process
    pending_options: list[PendingOption] = field(default_factory=list)
    media: MediaFileHandler | None = None
    pending_media: list[PendingMedia] = field(default_factory=list)
    keep_binaries: bool = False  # planning for a real run: keep downloads for the upload
    base_url: str | None = None  # relative media links are joined with it (media.base_url)

    @property
    def code(self) -> str:
        return self.attribute.code

    def fail(self, reason: str) -> ConversionError:
        return ConversionError(self.attribute.code, reason)


Converter = Callable[[Any, ConversionContext], Any]
CONVERTERS: dict[str, Converter] = {}


def register(*types: str) -> Callable[[Converter], Converter]:
    """Register a converter for one or more attribute types (later registrations win)."""

    def add(func: Converter) -> Converter:
        for t in types:
            CONVERTERS[t] = func
        return func

    return add


def converter_for(attribute: Attribute) -> Converter:
    try:
        return CONVERTERS[attribute.type]
    except KeyError:
        raise ConversionError(
            attribute.code, f"attribute type {attribute.type!r} is not supported"
        ) from None


def convert(value: Any, ctx: ConversionContext) -> Any:
    """The Akeneo `data` for `value` (never None: absent values are omitted upstream)."""
    return converter_for(ctx.attribute)(value, ctx)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- text


def php_regex(expression: str) -> re.Pattern[str]:
    """Compile an Akeneo `validation_regexp` (PHP/PCRE style, delimited: ``/^\\d+$/i``)."""
    flags = 0
    body = expression
    if len(expression) >= 2 and not expression[0].isalnum() and expression[0] not in "\\ ":
        delimiter = {"(": ")", "[": "]", "{": "}", "<": ">"}.get(expression[0], expression[0])
        end = expression.rfind(delimiter)
        if end > 0:
            body = expression[1:end]
            for flag in expression[end + 1 :]:
                flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X, "u": 0}.get(flag, 0)
    return re.compile(body, flags)


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return ""


@register("text")
def convert_text(value: Any, ctx: ConversionContext) -> str:
    """Strings; numbers are accepted and written as their decimal text."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ctx.fail(f"expected text, got {type(value).__name__} {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ctx.fail(f"expected text, got {value!r}")
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise ctx.fail("text contains a NUL character")
    limit = ctx.attribute.max_characters
    if limit is not None and len(text) > limit:
        raise ctx.fail(f"text is too long ({len(text)} characters, at most {limit} allowed)")
    if text == "":
        return text
    rule = ctx.attribute.validation_rule
    if rule == "email" and not _EMAIL.match(text):
        raise ctx.fail(f"{_describe(text)} is not an e-mail address")
    if rule == "url" and (not _URL.match(text) or not _netloc(text)):
        raise ctx.fail(f"{_describe(text)} is not an http(s) URL")
    if rule in ("regular_expression", "regexp") and ctx.attribute.validation_regexp:
        try:
            pattern = php_regex(ctx.attribute.validation_regexp)
        except re.error as exc:
            raise ctx.fail(f"the attribute's validation_regexp cannot be used: {exc}") from exc
        if not pattern.search(text):
            raise ctx.fail(f"{_describe(text)} does not match {ctx.attribute.validation_regexp}")
    return text


# ---------------------------------------------------------------- number


def _decimal(value: Any, ctx: ConversionContext) -> Decimal:
    if isinstance(value, bool):
        raise ctx.fail(f"expected a number, got boolean {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ctx.fail(f"expected a finite number, got {value!r}")
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if not _NUMBER.match(text):
            raise ctx.fail(f"{_describe(value)} is not a number")
        try:
            return Decimal(text)
        except InvalidOperation as exc:  # pragma: no cover - the regex rules this out
            raise ctx.fail(f"{_describe(value)} is not a number") from exc
    raise ctx.fail(f"expected a number, got {type(value).__name__} {_describe(value)}")


def _bound(text: str | None) -> Decimal | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        return Decimal(str(text).strip())
    except InvalidOperation:
        return None


@register("number")
def convert_number(value: Any, ctx: ConversionContext) -> str:
    """int, float or numeric string → Akeneo's decimal string ("12", "12.5")."""
    number = _decimal(value, ctx)
    integral = number == number.to_integral_value()
    if ctx.attribute.decimals_allowed is False and not integral:
        raise ctx.fail(f"{_describe(value)} has decimals but the attribute allows none")
    low, high = _bound(ctx.attribute.min_value), _bound(ctx.attribute.max_value)
    if low is not None and number < low:
        raise ctx.fail(f"{_describe(value)} is below the minimum {ctx.attribute.min_value}")
    if high is not None and number > high:
        raise ctx.fail(f"{_describe(value)} is above the maximum {ctx.attribute.max_value}")
    if integral:
        return str(int(number))
    text = format(number.normalize(), "f")
    return text


# ---------------------------------------------------------------- boolean


@register("boolean")
def convert_boolean(value: Any, ctx: ConversionContext) -> bool:
    """bool, 1/0, or "true"/"false"/"yes"/"no"/"1"/"0" (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ctx.fail(f"{_describe(value)} is not a boolean (true/false, yes/no, 1/0)")


# ---------------------------------------------------------------- date


@register("date")
def convert_date(value: Any, ctx: ConversionContext) -> str:
    """ISO date/datetime string or epoch seconds (milliseconds when huge) → ISO 8601 with
    an offset (``2019-09-04T00:13:57+00:00``). Dates alone become midnight UTC; naive
    datetimes are taken as UTC."""
    moment: datetime
    if isinstance(value, bool):
        raise ctx.fail(f"expected a date, got boolean {value!r}")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ctx.fail(f"expected a date, got {value!r}")
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ctx.fail(f"{_describe(value)} is not a valid epoch time") from exc
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ctx.fail(f"{_describe(value)} is not an ISO date or datetime") from exc
    else:
        raise ctx.fail(f"expected a date, got {type(value).__name__} {_describe(value)}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- options


@functools.lru_cache(maxsize=8192)
def normalise_option_code(label: str) -> str:
    """A DAM label as an Akeneo option code: accents dropped, every run of other characters
    → ``_``, lower case (``"Light Blue"`` → ``light_blue``)."""
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    code = re.sub(r"[^a-zA-Z0-9]+", "_", ascii_text).strip("_").lower()
    return code


def _option_code(label: Any, ctx: ConversionContext) -> tuple[str, str]:
    """(code, label) for one DAM option value, existing spelling preferred."""
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise ctx.fail(f"expected an option label, got {type(label).__name__} {_describe(label)}")
    text = str(label).strip()
    mapped = ctx.mapping.option_map.get(text)
    if mapped is None:
        folded = text.casefold()
        mapped = next(
            (v for k, v in ctx.mapping.option_map.items() if k.strip().casefold() == folded),
            None,
        )
    code = mapped if mapped is not None else normalise_option_code(text)
    if not code or not matches_code(code):
        raise ctx.fail(f"{_describe(label)} cannot be turned into an option code")
    if len(code) > MAX_CODE_LENGTH:
        raise ctx.fail(f"option code for {_describe(label)} is longer than 255 characters")
    return _existing_option(code.casefold(), ctx) or code, text


def _existing_option(folded: str, ctx: ConversionContext) -> str | None:
    """The spelling of an option the PIM has (or this process created) whose code folds
    to `folded`; None when there is none. One dict lookup: the attribute's options are
    folded once per structure (`Attribute.options_by_folded_code`)."""
    for known in ctx.known_options:  # created by this process: few, and they win
        if known.casefold() == folded:
            return known
    return ctx.attribute.options_by_folded_code.get(folded)


def _resolve_options(labels: list[Any], ctx: ConversionContext) -> list[str]:
    codes: list[str] = []
    missing: list[tuple[str, str]] = []
    for label in labels:
        code, text = _option_code(label, ctx)
        if code in codes:
            continue
        codes.append(code)
        if _existing_option(code.casefold(), ctx) is None:
            missing.append((code, text))
    if missing:
        if not ctx.auto_create_options:
            names = ", ".join(code for code, _ in missing)
            raise ctx.fail(
                f"unknown option(s) {names} (not in the PIM; enable auto_create_options "
                "for this family or map them with option_map)"
            )
        for code, text in missing:
            pending = PendingOption(ctx.family, ctx.attribute.code, code, text)
            if pending not in ctx.pending_options:
                ctx.pending_options.append(pending)
    return codes


@register("single_option")
def convert_single_option(value: Any, ctx: ConversionContext) -> str:
    """A label (or code) → an option code that exists (or will be created)."""
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ctx.fail(f"expected one option, got {len(value)}")
        value = value[0]
    return _resolve_options([value], ctx)[0]


@register("multiple_options")
def convert_multiple_options(value: Any, ctx: ConversionContext) -> list[str]:
    """A list, or one string split on the mapping's separator → option codes (deduplicated,
    order kept)."""
    if isinstance(value, str):
        separator = ctx.mapping.separator or ","
        items: list[Any] = [p.strip() for p in value.split(separator)]
    elif isinstance(value, list | tuple):
        items = [p.strip() if isinstance(p, str) else p for p in value]
    else:
        raise ctx.fail(f"expected a list of options, got {type(value).__name__} {_describe(value)}")
    items = [p for p in items if not (p is None or p == "")]
    return _resolve_options(items, ctx)


# ---------------------------------------------------------------- media


_VIDEO_IDS = frozenset({"youtube", "vimeo"})  # media_link types whose data is an id


@register("media_link")
def convert_media_link(value: Any, ctx: ConversionContext) -> str:
    """The URL minus the attribute's prefix and suffix (the PIM rebuilds the full URL).

    A relative URL (`/files/a.png`, `files/a.png`) is joined with the source's media base
    URL first, as the adapter does for the binaries it downloads: a link pushed relative
    would point nowhere. Not for YouTube/Vimeo links (their data is a video id) nor for a
    value that already starts with the attribute's prefix."""
    if not isinstance(value, str) or not value.strip():
        raise ctx.fail(f"expected a URL, got {type(value).__name__} {_describe(value)}")
    text = value.strip()
    prefix = ctx.attribute.prefix or ""
    if (
        ctx.base_url
        and not (prefix and text.startswith(prefix))
        and ctx.attribute.media_type not in _VIDEO_IDS
        and not urlsplit(text).scheme
        and "://" not in text.split("?", 1)[0]  # a broken absolute URL stays as it is
    ):
        text = urljoin(ctx.base_url.rstrip("/") + "/", text)
    suffix = ctx.attribute.suffix or ""
    if prefix:
        if not text.startswith(prefix):
            raise ctx.fail(f"{_describe(text)} does not start with the prefix {prefix!r}")
        text = text[len(prefix) :]
    if suffix:
        if not text.endswith(suffix):
            raise ctx.fail(f"{_describe(value)} does not end with the suffix {suffix!r}")
        text = text[: -len(suffix)]
    if not text:
        raise ctx.fail(f"{_describe(value)} is empty once prefix and suffix are removed")
    return text


@register("media_file")
def convert_media_file(value: Any, ctx: ConversionContext) -> str:
    """The asset's own binary (the mapped value only has to be present: the file comes
    from the DAM through the source adapter). Planned only: the handler finds the code the
    PIM already has or describes the upload needed (collected in the context, done by the
    transformer when it executes the plan); the returned data is `PendingMedia.placeholder`."""
    if ctx.media is None or ctx.asset is None:
        raise ctx.fail("media_file attributes need a media handler (none configured)")
    pending = ctx.media.plan(ctx.asset, ctx.family, ctx.attribute, keep_binary=ctx.keep_binaries)
    ctx.pending_media.append(pending)
    return pending.placeholder


# ---------------------------------------------------------------- record


@register("record")
def convert_record(value: Any, ctx: ConversionContext) -> str:
    """A reference-entity record code."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ctx.fail(f"expected a record code, got {type(value).__name__} {_describe(value)}")
    code = str(value).strip()
    if not is_code(code):
        raise ctx.fail(f"{_describe(value)} is not a valid record code")
    return code
