"""marshmallow schemas: raw config tree (after `${VAR}` interpolation) → model dataclasses.

Why hand-made fields: the error messages are the user interface of this module. Each
field says what it wanted in plain words ("must be an integer, got a string"), never
echoes a value that came from the environment (it may be a secret), and keeps plain `str`
out of the `EnvStr` marker class. Unknown keys are reported with a "did you mean" hint.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, types, validates_schema
from marshmallow.error_store import merge_errors

from connector.config.expression import ExpressionError, compile_expression
from connector.config.model import (
    AttributeMapping,
    AuthConfig,
    Config,
    DeletionPolicy,
    EventFieldsConfig,
    FamilyConfig,
    FolderSourceConfig,
    ListEndpointConfig,
    LocaleRule,
    MaxDeletions,
    MediaConfig,
    PaginationConfig,
    PimConfig,
    ProductLinkConfig,
    QueueIntakeConfig,
    RealtimeConfig,
    RestSourceConfig,
    ScheduleConfig,
    Selector,
    SourceConfig,
    SyncConfig,
    ValueSource,
    WebhookConfig,
)
from connector.pim.structure import ATTRIBUTE_TYPES
from connector.settings import Secret
from connector.transform.codes import MAX_SOURCE_PREFIX_LENGTH, SOURCE_PREFIX_SEPARATOR

PathKey = str | int
ErrorPath = tuple[PathKey, ...]

# ====================================================================== interpolation


class EnvStr(str):
    """A string value that came (at least partly) from `${VAR}` references.

    Secret fields accept only these (a whole, default-less reference), and error
    messages never quote them.
    """

    variables: tuple[str, ...] = ()
    whole: bool = False          # the value was exactly one ${VAR} reference
    has_default: bool = False    # a ${VAR:-default} was used
    unset: bool = False          # a referenced variable was missing (an error is reported)


_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _interpolate_string(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with `${VAR}` / `${VAR:-default}` replaced; `$${` is a literal `${`."""
    if "${" not in text:
        return text, []
    parts: list[str] = []
    errors: list[str] = []
    variables: list[str] = []
    position = 0
    references = 0
    whole = False
    has_default = unset = False
    for match in _REFERENCE.finditer(text):
        parts.append(text[position : match.start()])
        position = match.end()
        if match.group(0) == "$${":
            parts.append("${")
            continue
        body = match.group(1)
        if body is None:
            errors.append('unterminated "${" (write "$${" for a literal "${")')
            continue
        body_match = _REFERENCE_BODY.fullmatch(body)
        if body_match is None:
            errors.append("invalid ${...} reference: write ${NAME} or ${NAME:-default}")
            continue
        name, default = body_match.group(1), body_match.group(2)
        references += 1
        variables.append(name)
        whole = match.start() == 0 and match.end() == len(text)
        value = env.get(name)
        if default is not None:
            has_default = True
            if not value:
                value = default
        if value is None:
            errors.append(f"environment variable {name} is not set")
            unset = True
            value = ""
        parts.append(value)
    parts.append(text[position:])
    result = "".join(parts)
    if not references:
        return result, errors
    marked = EnvStr(result)
    marked.variables = tuple(variables)
    marked.whole = whole and references == 1
    marked.has_default = has_default
    marked.unset = unset
    return marked, errors


def interpolate(
    node: Any, env: Mapping[str, str], path: ErrorPath = ()
) -> tuple[Any, list[tuple[ErrorPath, str]]]:
    """Replace `${VAR}` references in every string value of `node` (keys are left alone).

    Returns the new tree and the errors (path, message) of unset variables / bad syntax.
    """
    errors: list[tuple[ErrorPath, str]] = []
    if isinstance(node, str):
        value, messages = _interpolate_string(node, env)
        errors.extend((path, m) for m in messages)
        return value, errors
    if isinstance(node, Mapping):
        out: dict[Any, Any] = {}
        for key, item in node.items():
            out[key], sub = interpolate(item, env, (*path, str(key)))
            errors.extend(sub)
        return out, errors
    if isinstance(node, list | tuple):
        items: list[Any] = []
        for index, item in enumerate(node):
            value, sub = interpolate(item, env, (*path, index))
            items.append(value)
            errors.extend(sub)
        return items, errors
    return node, errors


def plain(value: Any) -> Any:
    """`value` with every EnvStr turned back into a plain str (for Any-typed fields)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def shown(value: Any) -> str:
    """A value for an error message; values from the environment are never echoed."""
    if isinstance(value, EnvStr):
        return "the value of " + ", ".join(f"${{{v}}}" for v in value.variables)
    try:
        text = json.dumps(plain(value), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _wrong_type(wanted: str, value: Any) -> ValidationError:
    hint = " (put it in quotes)" if wanted == "a string" and isinstance(value, int | float) else ""
    return ValidationError(f"must be {wanted}, got {_kind(value)}{hint}")


# ====================================================================== fields


class _Field(fields.Field[Any]):
    default_error_messages: types.ErrorMessages = {
        "required": "required",
        "null": "must have a value",
        "validator_failed": "invalid value",
    }


CODE_PATTERN = r"[A-Za-z0-9_]+"
CODE_MESSAGE = "must contain only letters, digits and _"
LOCALE_PATTERN = r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?_[A-Z0-9]{2,3}"
LOCALE_MESSAGE = 'must be a locale code such as "en_US"'
PROPERTY_PATTERN = r"[^.\s](?:[^.]*[^.\s])?(?:\.[^.\s](?:[^.]*[^.\s])?)*"
PROPERTY_MESSAGE = 'must be a dotted property path such as "property_sku" or "context.custom.sku"'


class Str(_Field):
    """A string; optionally non-empty and matching a pattern."""

    def __init__(
        self,
        *,
        pattern: str | None = None,
        pattern_message: str | None = None,
        allow_empty: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_message = pattern_message or f"must match {pattern}"
        self.allow_empty = allow_empty

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise _wrong_type("a string", value)
        if not value and not self.allow_empty:
            raise ValidationError("must not be empty")
        if value and self.pattern is not None and not self.pattern.fullmatch(value):
            raise ValidationError(self.pattern_message)
        return str(value)


def Code(**kwargs: Any) -> Str:  # reads like a field class
    return Str(pattern=CODE_PATTERN, pattern_message=CODE_MESSAGE, **kwargs)


def Locale(**kwargs: Any) -> Str:
    return Str(pattern=LOCALE_PATTERN, pattern_message=LOCALE_MESSAGE, **kwargs)


def PropertyPath(**kwargs: Any) -> Str:
    return Str(pattern=PROPERTY_PATTERN, pattern_message=PROPERTY_MESSAGE, **kwargs)


def _range_error(
    number: float, minimum: float | None, maximum: float | None, exclusive_minimum: bool
) -> str | None:
    if minimum is not None:
        if exclusive_minimum and number <= minimum:
            return f"must be greater than {minimum:g}"
        if not exclusive_minimum and number < minimum:
            return f"must be at least {minimum:g}"
    if maximum is not None and number > maximum:
        return f"must be at most {maximum:g}"
    return None


class _Number(_Field):
    def __init__(
        self,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
        maximum_reason: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum
        self.exclusive_minimum = exclusive_minimum
        self.maximum_reason = maximum_reason

    def _checked(self, number: float) -> None:
        message = _range_error(number, self.minimum, self.maximum, self.exclusive_minimum)
        if message:
            if self.maximum is not None and number > self.maximum and self.maximum_reason:
                message += f" ({self.maximum_reason})"
            raise ValidationError(message)


class Int(_Number):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise _wrong_type("an integer", value)
        if isinstance(value, int):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)
        ):
            number = int(value)
        else:
            raise ValidationError(f"must be an integer, got {shown(value)}")
        self._checked(number)
        return number


def _to_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


class Float(_Number):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        number = _to_float(value)
        if number is None:
            raise ValidationError(f"must be a number, got {shown(value)}")
        self._checked(number)
        return number


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)


def parse_duration(value: Any) -> float | None:
    """Seconds from a number, a numeric string, or "90s" / "5m" / "1h30m" / "1d"."""
    number = _to_float(value)
    if number is not None:
        return number
    if isinstance(value, str) and _DURATION.fullmatch(value):
        return sum(
            float(amount) * _DURATION_UNITS[unit.lower()]
            for amount, unit in _DURATION_PART.findall(value)
        )
    return None


class Duration(_Number):
    """Seconds: a number or a string such as "30s", "5m", "1h30m", "7d"."""

    def __init__(self, *, integer: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.integer = integer

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        seconds = parse_duration(value)
        if seconds is None:
            raise ValidationError(
                "must be a number of seconds or a duration such as 30s, 5m, 1h, 1d"
                f", got {shown(value)}"
            )
        self._checked(seconds)
        if self.integer:
            if not float(seconds).is_integer():
                raise ValidationError("must be a whole number of seconds")
            return int(seconds)
        return seconds


_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)


class ByteSize(_Number):
    """Bytes: an integer or a string such as "200MB" / "1.5GiB"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        size: float | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str):
            match = _SIZE.fullmatch(value)
            if match and match.group(2).lower() in _SIZE_UNITS:
                size = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if size is None:
            raise ValidationError(
                "must be a number of bytes or a size such as 500KB, 200MB, 1GiB"
                f", got {shown(value)}"
            )
        self._checked(size)
        return int(size)


class Bool(_Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValidationError(f"must be true or false, got {shown(value)}")


class Choice(_Field):
    def __init__(self, choices: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError("must be one of " + ", ".join(self.choices))
        return str(value)


class Raw(_Field):
    """Any JSON-compatible value (constants, `equals`), with EnvStr made plain."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return plain(value)


class StrList(_Field):
    """A list of strings (a single string is taken as a one-element list) → tuple."""

    def __init__(self, item: Str | None = None, *, min_items: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item or Str()
        self.min_items = min_items

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise _wrong_type("a list of strings", value)
        if len(value) < self.min_items:
            raise ValidationError(f"must list at least {self.min_items} item(s)")
        out: list[str] = []
        errors: dict[int, Any] = {}
        for index, item in enumerate(value):
            try:
                out.append(self.item.deserialize(item))
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError(errors)
        return tuple(out)


class StrDict(_Field):
    """A mapping of string → string; scalar values (numbers, booleans) become strings."""

    def __init__(self, value: _Field | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value_field = value or Str(allow_empty=True)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise _wrong_type("a mapping", value)
        out: dict[str, str] = {}
        errors: dict[str, Any] = {}
        for key, item in value.items():
            text: Any = item
            if isinstance(item, bool):
                text = "true" if item else "false"
            elif isinstance(item, int | float):
                text = str(item)
            try:
                out[str(key)] = self.value_field.deserialize(text)
            except ValidationError as exc:
                errors[str(key)] = exc.messages
        if errors:
            raise ValidationError(errors)
        return out


SECRET_MESSAGE = "must reference an environment variable, e.g. ${DAM_TOKEN}"


class SecretField(_Field):
    """A secret: only a whole `${VAR}` reference is accepted, never a literal."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Secret:
        if not isinstance(value, EnvStr) or not value.whole:
            raise ValidationError(SECRET_MESSAGE)
        if value.unset:  # already reported by the interpolation step
            raise ValidationError("environment variable is not set")
        if value.has_default:
            raise ValidationError(
                "a secret cannot have a default in the file; use ${" + value.variables[0] + "}"
            )
        if not value:
            raise ValidationError(f"environment variable {value.variables[0]} is empty")
        return Secret(str(value))


class Regex(Str):
    """A regular expression that must compile (and may need a named or numbered group)."""

    def __init__(self, *, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.group = group

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        pattern = compile_regex(text)
        if self.group and self.group not in pattern.groupindex and pattern.groups < 1:
            raise ValidationError(
                f'needs a group named "{self.group}" ((?P<{self.group}>...)) or at least one group'
            )
        return text


def compile_regex(text: str) -> re.Pattern[str]:
    """The compiled pattern, or a ValidationError with re's own explanation."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValidationError(f"invalid regular expression: {exc}") from None
    except (RecursionError, OverflowError):
        raise ValidationError("invalid regular expression: too complex") from None


class Expression(Str):
    """A selector expression (see connector.config.expression), checked at load time."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            compile_expression(text)
        except ExpressionError as exc:
            detail = "syntax error" if isinstance(value, EnvStr) else exc.message
            raise ValidationError(f"invalid expression, column {exc.column}: {detail}") from None
        return text


_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {}),
    (
        "day of week",
        0,
        6,
        {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
    ),
)
_CRON_ITEM = re.compile(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?")


def crontab_errors(text: str) -> list[str]:
    """Problems with a 5-field crontab ("minute hour day-of-month month day-of-week")."""
    parts = text.split()
    if len(parts) != 5:
        return [
            "must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        ]
    errors: list[str] = []
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if match is None:
                errors.append(f'{name}: "{item}" is not a value, range, list or */step')
                continue
            step = match.group(2)
            if step is not None and int(step) < 1:
                errors.append(f'{name}: step in "{item}" must be at least 1')
            if match.group(1) == "*":
                continue
            for bound in match.group(1).split("-"):
                number = names.get(bound.lower()) if not bound.isdigit() else int(bound)
                if number is None:
                    errors.append(f'{name}: "{bound}" is not a number')
                elif not low <= number <= high:
                    errors.append(f"{name}: {number} is out of range {low}-{high}")
    return errors


class Crontab(Str):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        errors = crontab_errors(text)
        if errors:
            raise ValidationError(errors)
        return " ".join(text.split())


class Nested(fields.Nested):
    """A nested section (a mapping validated by its own schema), with plain messages."""

    default_error_messages: types.ErrorMessages = {
        "required": "required",
        "null": "must have a value",
        "validator_failed": "invalid value",
        "type": "must be a mapping",
    }


class NamedMap(_Field):
    """A mapping name → entry; each entry is loaded by `load_one(name, raw)` → tuple.

    Errors come back keyed by the user's own names, so paths read `families.packshots...`.
    """

    def __init__(
        self,
        load_one: Callable[[str, Any], Any],
        *,
        what: str,
        name_pattern: str,
        name_message: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.load_one = load_one
        self.what = what
        self.name_pattern = re.compile(name_pattern)
        self.name_message = name_message

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        if not isinstance(value, Mapping):
            raise ValidationError(f"must be a mapping of {self.what} name → {self.what}")
        if not value:
            raise ValidationError(f"must define at least one {self.what}")
        out: list[Any] = []
        errors: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key)
            if not isinstance(key, str):
                errors[name] = [f"{self.what} name must be a string (put it in quotes)"]
            elif not self.name_pattern.fullmatch(key):
                errors[name] = [f"{self.what} name {self.name_message}"]
            try:
                out.append(self.load_one(name, item))
            except ValidationError as exc:
                errors[name] = merge_errors(errors.get(name), exc.messages)
        if errors:
            raise ValidationError(errors)
        return tuple(out)


# ====================================================================== schemas


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return "unknown key (allowed: " + ", ".join(sorted(known)) + ")"


class _Schema(Schema):
    """Base: unknown keys are errors (with a suggestion), type errors read plainly."""

    class Meta:
        unknown = EXCLUDE

    error_messages: ClassVar[dict[str, str]] = {  # type: ignore[misc]
        "type": "must be a mapping",
        "unknown": "unknown key",
    }

    def known_keys(self) -> set[str]:
        return {f.data_key or name for name, f in self.load_fields.items()}

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _reject_unknown_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        known = self.known_keys()
        errors = {
            str(key): [_suggest(str(key), known)]
            for key in original_data
            if str(key) not in known
        }
        if errors:
            raise ValidationError(errors)


def _given(original: Any, *keys: str) -> list[str]:
    if not isinstance(original, Mapping):
        return []
    return [k for k in keys if k in original]


def _type_specific(
    original: Any,
    kind_key: str,
    default_kind: str,
    allowed: Mapping[str, tuple[set[str], set[str]]],
    label: str,
) -> None:
    """Required keys per `type`, and keys that type does not use."""
    if not isinstance(original, Mapping):
        return
    kind = original.get(kind_key, default_kind)
    if not isinstance(kind, str) or kind not in allowed:
        return
    required, optional = allowed[kind]
    all_keys = set().union(*(r | o for r, o in allowed.values()))
    errors: dict[str, list[str]] = {}
    for key in sorted(required):
        if key not in original:
            errors[key] = [f'required for {label} "{kind}"']
    for key in original:
        if key in all_keys and key not in required and key not in optional:
            errors[str(key)] = [f'not used by {label} "{kind}"']
    if errors:
        raise ValidationError(errors)


# ---------------------------------------------------------------- PIM / sync


PIM_CREDENTIAL_KEYS = {
    "url": "AKENEO_URL",
    "base_url": "AKENEO_URL",
    "client_id": "AKENEO_CLIENT_ID",
    "client_secret": "AKENEO_CLIENT_SECRET",
    "secret": "AKENEO_CLIENT_SECRET",
    "username": "AKENEO_USERNAME",
    "password": "AKENEO_PASSWORD",
}


class PimSchema(_Schema):
    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _reject_unknown_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        """PIM credentials get a pointer to their environment variable, not a typo hint."""
        try:
            super()._reject_unknown_keys(data, original_data, **kwargs)
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {}
            for key in messages:
                if key in PIM_CREDENTIAL_KEYS:
                    messages[key] = [
                        "PIM credentials are not read from the file: set "
                        f"{PIM_CREDENTIAL_KEYS[key]} in the environment"
                    ]
            raise ValidationError(messages) from None

    timeout = Duration(minimum=0, exclusive_minimum=True)
    max_in_flight = Int(minimum=1)
    requests_per_second = Float(minimum=0, exclusive_minimum=True)
    option_writes_per_second = Float(minimum=0, exclusive_minimum=True)
    structure_cache_ttl = Duration(integer=True, minimum=1)
    token_refresh_margin = Duration(integer=True, minimum=0)
    locales = StrList(Locale())
    channels = StrList(Code())

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> PimConfig:
        return PimConfig(**data)


class SyncSchema(_Schema):
    chunk_size = Int(minimum=1, maximum=10000)
    push_batch_size = Int(
        minimum=1, maximum=100, maximum_reason="Akeneo accepts at most 100 assets per request"
    )
    max_retries = Int(minimum=0)
    backoff_base = Duration(minimum=0, exclusive_minimum=True)
    backoff_max = Duration(minimum=0, exclusive_minimum=True)
    watermark_overlap = Duration(minimum=0)
    run_lock_ttl = Duration(integer=True, minimum=1)
    quarantine_ttl = Duration(integer=True, minimum=1)

    @validates_schema(skip_on_field_errors=True)
    def _backoff_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        base = data.get("backoff_base", SyncConfig.backoff_base)
        top = data.get("backoff_max", SyncConfig.backoff_max)
        if top < base:
            raise ValidationError({"backoff_max": [f"must be at least backoff_base ({base:g})"]})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> SyncConfig:
        return SyncConfig(**data)


# ---------------------------------------------------------------- transformation

SELECTOR_KINDS = ("property", "folder", "tag", "filename_regex", "expression", "always")


class SelectorSchema(_Schema):
    property = PropertyPath()
    equals = Raw(allow_none=True)
    in_ = fields.List(Raw(allow_none=True), data_key="in", error_messages={
        "invalid": "must be a list", "null": "must have a value"})
    folder = Str()
    tag = Str()
    filename_regex = Regex()
    expression = Expression()
    always = Bool()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        given = _given(original_data, *SELECTOR_KINDS)
        wanted = "give exactly one of " + ", ".join(SELECTOR_KINDS)
        errors: dict[str, list[str]] = {}
        if not given:
            errors["_schema"] = [wanted]
        elif len(given) > 1:
            errors["_schema"] = [f"{wanted} (got {', '.join(given)})"]
        for key in ("equals", "in"):
            if key in original_data and "property" not in original_data:
                errors[key] = ["only used with property"]
        if "equals" in original_data and "in" in original_data:
            errors.setdefault("in", []).append("give either equals or in, not both")
        if original_data.get("always") is False and len(given) == 1:
            errors["always"] = ["must be true (leave it out otherwise)"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Selector:
        if data.get("in_") is not None:
            data["in_"] = tuple(data["in_"])
        return Selector(**data)


class MappingEntrySchema(_Schema):
    """The object form of one `families.X.mapping` entry (the key is the attribute)."""

    property = PropertyPath()
    constant = Raw()
    regex = Str()
    group = Raw()
    expected_type = Str(data_key="type")
    separator = Str()
    locale = Locale(allow_none=True)
    channel = Code(allow_none=True)
    option_map = StrDict(Code())
    auto_create_options = Bool(allow_none=True)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _value_source(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        errors: dict[str, list[str]] = {}
        has = {k: k in original_data for k in ("property", "constant", "regex", "group")}
        if not (has["property"] or has["constant"] or has["regex"]):
            errors["_schema"] = [
                "give property, constant or regex (with property or on the filename)"
            ]
        if has["group"] and not has["regex"]:
            errors["group"] = ["only used with regex"]
        group = original_data.get("group", 1)
        if has["group"] and (isinstance(group, bool) or not isinstance(group, str | int)):
            errors["group"] = ["must be a group name or number"]
        regex = original_data.get("regex")
        if isinstance(regex, str) and regex and "regex" in data:
            try:
                pattern = compile_regex(regex)
            except ValidationError as exc:
                errors["regex"] = list(exc.messages)
            else:
                # without `group`, a pattern with no groups keeps its whole match
                message = _group_problem(pattern, group) if has["group"] else None
                if message and not errors.get("group"):
                    errors["group"] = [message]
        if errors:
            raise ValidationError(errors)


def _group_problem(pattern: re.Pattern[str], group: Any) -> str | None:
    if isinstance(group, bool):
        return None
    if isinstance(group, str) and not group.isdigit():
        if group not in pattern.groupindex:
            return f'the regex has no group named "{group}"'
        return None
    if isinstance(group, int | str):
        number = int(group)
        if number > pattern.groups:
            return f"the regex has no group {number} (it has {pattern.groups})"
    return None


def _load_mapping_entry(attribute: str, raw: Any) -> AttributeMapping:
    if isinstance(raw, str):
        prop = PropertyPath().deserialize(raw)
        return AttributeMapping(attribute=attribute, source=ValueSource(property=prop))
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "must be a property path (string) or a mapping with property, constant or regex"
            f", got {_kind(raw)}"
        )
    type_error: list[str] = []
    kind = raw.get("type")
    if isinstance(kind, str) and kind not in ATTRIBUTE_TYPES:
        type_error = [
            f"unknown attribute type {shown(kind)} (known types: "
            + ", ".join(sorted(ATTRIBUTE_TYPES)) + ")"
        ]
    try:
        data = MappingEntrySchema().load(raw)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        if type_error:
            messages = merge_errors(type_error, messages)
        raise ValidationError(messages) from None
    if type_error:
        raise ValidationError(type_error)
    source = ValueSource(
        property=data.pop("property", None),
        constant=data.pop("constant", None),
        regex=data.pop("regex", None),
    )
    if "group" in data:
        group = data.pop("group")
        source = ValueSource(
            property=source.property,
            constant=source.constant,
            regex=source.regex,
            group=int(group) if isinstance(group, str) and group.isdigit() else group,
        )
    return AttributeMapping(attribute=attribute, source=source, **data)


class LocaleRuleSchema(_Schema):
    property = PropertyPath(allow_none=True)
    filename_regex = Regex(group="locale", allow_none=True)
    default = Locale(allow_none=True)
    map = StrDict(Locale())

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> LocaleRule:
        return LocaleRule(**data)


class ProductLinkSchema(_Schema):
    mode = Choice(("none", "rules", "direct"))
    identifier_property = PropertyPath(allow_none=True)
    identifier_regex = Regex(group="identifier", allow_none=True)
    product_attribute = Code(allow_none=True)
    unlink_previous = Bool()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _mode_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        _type_specific(
            original_data,
            "mode",
            "none",
            {
                "none": (set(), set()),
                "rules": (set(), {"identifier_property", "identifier_regex"}),
                "direct": (
                    {"product_attribute"},
                    {"identifier_property", "identifier_regex", "unlink_previous"},
                ),
            },
            "product link mode",
        )
        if (
            isinstance(original_data, Mapping)
            and original_data.get("mode") == "direct"
            and not _given(original_data, "identifier_property", "identifier_regex")
        ):
            raise ValidationError(
                'mode "direct" needs identifier_property or identifier_regex'
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ProductLinkConfig:
        return ProductLinkConfig(**data)


class FamilySchema(_Schema):
    match = Nested(SelectorSchema, required=True)
    mapping = NamedMap(
        _load_mapping_entry,
        what="mapping",
        name_pattern=CODE_PATTERN,
        name_message="(the PIM attribute code) " + CODE_MESSAGE,
        required=True,
    )
    locale = Nested(LocaleRuleSchema)
    channel = Code(allow_none=True)
    auto_create_options = Bool()
    product_asset = Nested(SelectorSchema)
    product_link = Nested(ProductLinkSchema)


def _load_family(name: str, raw: Any) -> FamilyConfig:
    data = FamilySchema().load(raw)
    return FamilyConfig(name=name, **data)


# ---------------------------------------------------------------- DAM side

AUTH_TYPES = ("bearer", "basic", "api_key", "oauth2_client_credentials", "none")
AUTH_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "bearer": ({"token"}, set()),
    "basic": ({"username", "password"}, set()),
    "api_key": ({"value"}, {"header"}),
    "oauth2_client_credentials": ({"token_url", "client_id", "client_secret"}, {"scope"}),
}

HEADER_PATTERN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"


class AuthSchema(_Schema):
    type = Choice(AUTH_TYPES)
    token = SecretField()
    username = Str()
    password = SecretField()
    header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")
    value = SecretField()
    token_url = Str(
        pattern=r"(https?://\S+|/\S*)",
        pattern_message="must be an http(s) URL, or a path starting with / (on base_url)",
    )
    client_id = Str()
    client_secret = SecretField()
    scope = Str()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        _type_specific(original_data, "type", "none", AUTH_KEYS, "auth type")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> AuthConfig:
        return AuthConfig(**data)


PAGINATION_TYPES = ("page_number", "offset", "cursor", "header_cursor", "link_header", "none")
PAGINATION_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "page_number": (set(), {"page_size", "size_param", "page_param", "start_page"}),
    "offset": (set(), {"page_size", "size_param", "offset_param"}),
    "cursor": (set(), {"page_size", "size_param", "cursor_param", "cursor_path"}),
    "header_cursor": (set(), {"page_size", "size_param", "cursor_param", "cursor_header"}),
    "link_header": (set(), {"page_size", "size_param"}),
}


class PaginationSchema(_Schema):
    type = Choice(PAGINATION_TYPES)
    page_size = Int(minimum=1)
    size_param = Str()
    page_param = Str()
    start_page = Int(minimum=0)
    offset_param = Str()
    cursor_param = Str()
    cursor_path = PropertyPath()
    cursor_header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        _type_specific(original_data, "type", "none", PAGINATION_KEYS, "pagination type")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> PaginationConfig:
        return PaginationConfig(**data)


class ListEndpointSchema(_Schema):
    path = Str(
        required=True,
        pattern=r"/\S*",
        pattern_message="must be a path starting with / (relative to base_url)",
    )
    since_param = Str(allow_none=True)
    since_format = Str(
        pattern=r"iso|epoch|epoch_ms|.*%.*",
        pattern_message='must be "iso", "epoch", "epoch_ms" or a strftime pattern such as '
        '"%Y-%m-%dT%H:%M:%SZ"',
    )
    params = StrDict()
    items_path = Str(allow_empty=True, pattern=PROPERTY_PATTERN, pattern_message=PROPERTY_MESSAGE)
    id_field = PropertyPath()
    updated_field = PropertyPath()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ListEndpointConfig:
        return ListEndpointConfig(**data)


class RestSourceSchema(_Schema):
    base_url = Str(
        required=True,
        pattern=r"https?://[^\s/?#]+(/\S*)?",
        pattern_message="must be an http(s) URL such as https://dam.example.com",
    )
    list = Nested(ListEndpointSchema, required=True)
    auth = Nested(AuthSchema)
    pagination = Nested(PaginationSchema)
    get_path = Str(
        allow_none=True,
        pattern=r"/\S*\{id\}\S*",
        pattern_message="must be a path starting with / that contains {id}",
    )
    deletions = Nested(ListEndpointSchema, allow_none=True)
    media_url_field = PropertyPath(allow_none=True)
    filename_field = PropertyPath(allow_none=True)
    folder_field = PropertyPath(allow_none=True)
    tags_field = PropertyPath(allow_none=True)
    requests_per_second = Float(minimum=0, exclusive_minimum=True)
    timeout = Duration(minimum=0, exclusive_minimum=True)
    max_retries = Int(minimum=0)
    max_in_flight = Int(minimum=1)
    backoff_base = Duration(minimum=0, exclusive_minimum=True)
    backoff_max = Duration(minimum=0, exclusive_minimum=True)

    @validates_schema(skip_on_field_errors=True)
    def _backoff_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        base = data.get("backoff_base", RestSourceConfig.backoff_base)
        top = data.get("backoff_max", RestSourceConfig.backoff_max)
        if top < base:
            raise ValidationError({"backoff_max": [f"must be at least backoff_base ({base:g})"]})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> RestSourceConfig:
        data["base_url"] = data["base_url"].rstrip("/")
        return RestSourceConfig(**data)


class FolderSourceSchema(_Schema):
    path = Str(required=True)
    sidecar_suffix = Str()
    # `include`/`exclude` are Schema attributes, hence the trailing underscores
    include_ = StrList(min_items=1, data_key="include")
    exclude_ = StrList(data_key="exclude")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> FolderSourceConfig:
        for key in ("include", "exclude"):
            if key + "_" in data:
                data[key] = data.pop(key + "_")
        return FolderSourceConfig(**data)


class ScheduleSchema(_Schema):
    every = Duration(minimum=0, exclusive_minimum=True)
    crontab = Crontab()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        given = _given(original_data, "every", "crontab")
        if isinstance(original_data, Mapping) and len(given) != 1:
            raise ValidationError(
                "give exactly one of every, crontab" + (" (got both)" if given else "")
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ScheduleConfig:
        return ScheduleConfig(**data)


class MaxDeletionsSchema(_Schema):
    count = Int(minimum=0)
    percent = Float(minimum=0, maximum=100)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> MaxDeletions:
        return MaxDeletions(**data)


class DeletionPolicySchema(_Schema):
    action = Choice(("ignore", "delete", "flag"))
    attribute = Code(allow_none=True)
    value = Raw(allow_none=True)
    max_deletions = Nested(MaxDeletionsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _action_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        _type_specific(
            original_data,
            "action",
            "ignore",
            {
                "ignore": (set(), set()),
                "delete": (set(), set()),
                "flag": ({"attribute"}, {"value"}),
            },
            "deletion action",
        )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> DeletionPolicy:
        return DeletionPolicy(**data)


class MediaSchema(_Schema):
    allowed_hosts = StrList(
        Str(
            pattern=r"[A-Za-z0-9*\[\]:._-]+",
            pattern_message='must be a host name such as "cdn.example.com" (no scheme, no path)',
        )
    )
    max_bytes = ByteSize(minimum=1)
    timeout = Duration(minimum=0, exclusive_minimum=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> MediaConfig:
        return MediaConfig(**data)


EVENT_ACTIONS = ("upsert", "delete", "ignore")
EVENT_PATH_MESSAGE = 'must be a dotted path such as "data.id" or "resources[].public_id"'
EVENT_PATH_PATTERN = r"[^.\s]+(?:\.[^.\s]+)*"


def EventPath(**kwargs: Any) -> Str:  # reads like a field class
    return Str(pattern=EVENT_PATH_PATTERN, pattern_message=EVENT_PATH_MESSAGE, **kwargs)


class EventFieldsSchema(_Schema):
    event_type = EventPath(allow_none=True)
    asset_id = EventPath()
    delivery_id = EventPath(allow_none=True)
    delivery_id_header = Str(
        allow_none=True, pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name"
    )
    record = EventPath(allow_none=True)
    actions = StrDict(Choice(EVENT_ACTIONS))
    default_action = Choice(EVENT_ACTIONS)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> EventFieldsConfig:
        return EventFieldsConfig(**data)


_PLACEHOLDER = re.compile(r"\{(body|timestamp|secret)\}")


def payload_template_errors(template: str) -> list[str]:
    """Problems with a webhook payload template (same rules as connector.intake.signature)."""
    rest = _PLACEHOLDER.sub("", template)
    if "{" in rest or "}" in rest:
        return ["only {body}, {timestamp} and {secret} may appear in braces"]
    if "{body}" not in template:
        return ["must contain {body}"]
    return []


class WebhookSchema(_Schema):
    verification = Choice(("hmac", "digest", "bearer", "none"))
    header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")
    algorithm = Choice(("sha256", "sha1"))
    encoding = Choice(("hex", "base64"))
    prefix = Str(allow_empty=True)
    payload = Str()
    timestamp_header = Str(
        allow_none=True, pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name"
    )
    tolerance = Duration(minimum=0, exclusive_minimum=True)
    secret = SecretField()
    max_body_bytes = ByteSize(minimum=1)
    dedupe_ttl = Duration(integer=True, minimum=1)
    events = Nested(EventFieldsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _verification_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("verification", "hmac")
        errors: dict[str, list[str]] = {}
        if kind in ("hmac", "digest", "bearer") and "secret" not in original_data:
            errors["secret"] = [f'required for verification "{kind}"']
        if kind == "none" and "secret" in original_data:
            errors["secret"] = ['not used by verification "none"']
        if kind == "bearer":
            for key in ("algorithm", "encoding", "payload"):
                if key in original_data:
                    errors[key] = ['not used by verification "bearer"']
        payload = original_data.get("payload", "{body}")
        if isinstance(payload, str) and payload and kind != "bearer":
            problems = payload_template_errors(payload)
            if not problems and kind == "digest" and "{secret}" not in payload:
                problems = ['must contain {secret} for verification "digest"']
            if not problems and "{timestamp}" in payload and not original_data.get(
                "timestamp_header"
            ):
                problems = ["uses {timestamp}: set timestamp_header too"]
            if problems:
                errors["payload"] = problems
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> WebhookConfig:
        if data.get("verification") == "bearer":
            # A shared bearer secret travels in `Authorization: Bearer <secret>` unless said
            # otherwise.
            data.setdefault("header", "Authorization")
            data.setdefault("prefix", "Bearer ")
        return WebhookConfig(**data)


class QueueSchema(_Schema):
    transport = Choice(("redis_stream", "amqp"))
    url = Str(
        allow_none=True,
        pattern=r"(redis|rediss|amqp|amqps|unix)://\S*",
        pattern_message="must be a redis://, rediss://, amqp:// or amqps:// URL",
    )
    name = Str(required=True)
    group = Str()
    body_field = Str()
    claim_idle = Duration(minimum=0, exclusive_minimum=True)
    prefetch = Int(minimum=1)
    dedupe_ttl = Duration(integer=True, minimum=1)
    events = Nested(EventFieldsSchema)

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _transport_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("transport", "redis_stream")
        errors: dict[str, list[str]] = {}
        if kind == "amqp":
            if original_data.get("url") is None:
                errors["url"] = ['required for transport "amqp"']
            for key in ("group", "body_field", "claim_idle"):
                if key in original_data:
                    errors[key] = ['not used by transport "amqp"']
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> QueueIntakeConfig:
        return QueueIntakeConfig(**data)


class RealtimeSchema(_Schema):
    window = Duration(minimum=0)
    batch_size = Int(
        minimum=1, maximum=100, maximum_reason="Akeneo accepts at most 100 assets per request"
    )
    poll_enabled = Bool()
    batch_lease = Duration(minimum=0, exclusive_minimum=True)
    max_retries = Int(minimum=0)
    log_maxlen = Int(minimum=1)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> RealtimeConfig:
        return RealtimeConfig(**data)


class SourceSchema(_Schema):
    type = Choice(("rest", "folder"), required=True)
    rest = Nested(RestSourceSchema)
    folder = Nested(FolderSourceSchema)
    families = StrList(Code())
    schedule = Nested(ScheduleSchema, allow_none=True)
    reconcile_schedule = Nested(ScheduleSchema, allow_none=True)
    deletion_policy = Nested(DeletionPolicySchema)
    media = Nested(MediaSchema)
    webhook = Nested(WebhookSchema, allow_none=True)
    queue = Nested(QueueSchema, allow_none=True)
    realtime = Nested(RealtimeSchema)
    code_prefix = Str(
        pattern=rf"[A-Za-z0-9]{{1,{MAX_SOURCE_PREFIX_LENGTH}}}",
        pattern_message=f"must be 1 to {MAX_SOURCE_PREFIX_LENGTH} letters or digits (the "
        f"connector adds the separator {SOURCE_PREFIX_SEPARATOR}, so that prefixed codes "
        "never meet another source's)",
        allow_none=True,
    )

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_block(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        kind = original_data.get("type")
        if kind not in ("rest", "folder"):
            return
        other = "folder" if kind == "rest" else "rest"
        errors: dict[str, list[str]] = {}
        if kind not in original_data:
            errors[kind] = [f"required when type is {kind}"]
        if other in original_data:
            errors[other] = [f"only used when type is {other}"]
        if errors:
            raise ValidationError(errors)


def _load_source(name: str, raw: Any) -> SourceConfig:
    data = SourceSchema().load(raw)
    return SourceConfig(name=name, **data)


# ---------------------------------------------------------------- the whole file


class ConfigSchema(_Schema):
    pim = Nested(PimSchema)
    sync = Nested(SyncSchema)
    product_asset = Nested(SelectorSchema)
    families = NamedMap(
        _load_family,
        what="family",
        name_pattern=CODE_PATTERN,
        name_message="(the PIM asset family code) " + CODE_MESSAGE,
        required=True,
    )
    sources = NamedMap(
        _load_source,
        what="source",
        name_pattern=r"[A-Za-z0-9_-]+",
        name_message="must contain only letters, digits, _ and -",
        required=True,
    )

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _cross_references(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        if not isinstance(original_data, Mapping):
            return
        errors: dict[str, Any] = {}
        families = original_data.get("families")
        family_names = [str(k) for k in families] if isinstance(families, Mapping) else None
        sources = original_data.get("sources")
        if family_names is not None and isinstance(sources, Mapping):
            for name, source in sources.items():
                wanted = source.get("families") if isinstance(source, Mapping) else None
                if isinstance(wanted, str):
                    wanted = [wanted]
                if not isinstance(wanted, list):
                    continue
                unknown = [
                    f'unknown family "{w}" (defined: {", ".join(family_names)})'
                    for w in wanted
                    if isinstance(w, str) and w not in family_names
                ]
                if unknown:
                    errors.setdefault("sources", {})[str(name)] = {"families": unknown}
        pim = data.get("pim")
        if isinstance(pim, PimConfig) and isinstance(families, Mapping):
            for name, family in families.items():
                problems = _locale_channel_problems(family, pim)
                if problems:
                    errors.setdefault("families", {})[str(name)] = problems
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def _distinct_code_prefixes(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Two sources feeding one family must not be able to write each other's assets."""
        if "families" not in data or "sources" not in data:
            return
        config = Config(families=data["families"], sources=data["sources"])
        errors: dict[str, Any] = {}
        for name, message in config.code_prefix_conflicts():
            errors.setdefault(name, {}).setdefault("code_prefix", []).append(message)
        if errors:
            raise ValidationError({"sources": errors})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> Config:
        return Config(**data)


def _locale_channel_problems(family: Any, pim: PimConfig) -> dict[str, Any]:
    """Locales/channels named in a family that `pim.locales`/`pim.channels` do not list."""
    if not isinstance(family, Mapping):
        return {}
    problems: dict[str, Any] = {}

    def check(value: Any, allowed: tuple[str, ...], what: str, *path: str) -> None:
        if allowed and isinstance(value, str) and value and value not in allowed:
            node = problems
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node.setdefault(path[-1], []).append(
                f'{what} "{value}" is not in pim.{what}s ({", ".join(allowed)})'
            )

    check(family.get("channel"), pim.channels, "channel", "channel")
    rule = family.get("locale")
    if isinstance(rule, Mapping):
        check(rule.get("default"), pim.locales, "locale", "locale", "default")
        mapped = rule.get("map")
        if isinstance(mapped, Mapping):
            for key, value in mapped.items():
                check(value, pim.locales, "locale", "locale", "map", str(key))
    mapping = family.get("mapping")
    if isinstance(mapping, Mapping):
        for attribute, entry in mapping.items():
            if isinstance(entry, Mapping):
                where = ("mapping", str(attribute))
                check(entry.get("locale"), pim.locales, "locale", *where, "locale")
                check(entry.get("channel"), pim.channels, "channel", *where, "channel")
    return problems
