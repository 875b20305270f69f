"""marshmallow fields of the config schemas, each with plain-word error messages.

Why hand-made fields: the error messages are the user interface of the config. Each field
says what it wanted in plain words ("must be an integer, got a string"), never echoes a
value that came from the environment (it may be a secret), and keeps plain `str` out of the
`EnvStr` marker class.

Why one module of ~440 lines: it is a small field library used as a whole by every schema
in connector/config/schemas/; split by field kind, each part would import the others' base
class and message helpers. Crontab text rules live in connector/config/crontab.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from marshmallow import ValidationError, fields, types
from marshmallow.error_store import merge_errors as _merge_errors

from connector.config.crontab import crontab_errors
from connector.config.expression import ExpressionError, compile_expression
from connector.config.interpolate import EnvStr, kind_of, plain, shown
from connector.rules import CODE_PATTERN, LOCALE_PATTERN
from connector.settings import Secret

#: marshmallow's (untyped) error merger, typed once here for the strict checker
merge_errors_typed: Callable[[Any, Any], Any] = _merge_errors


def wrong_type(wanted: str, value: Any) -> ValidationError:
    """The "must be X, got Y" error, with a hint when a number should have been quoted."""
    hint = " (put it in quotes)" if wanted == "a string" and isinstance(value, int | float) else ""
    return ValidationError(f"must be {wanted}, got {kind_of(value)}{hint}")


class PlainField(fields.Field[Any]):
    """Base of the hand-made fields: marshmallow's stock messages, in plain words."""

    default_error_messages: types.ErrorMessages = {
        "required": "required",
        "null": "must have a value",
        "validator_failed": "invalid value",
    }


# The code and locale rules themselves are connector/rules.py's; these are the messages.
CODE_MESSAGE = "must contain only letters, digits and _"
LOCALE_MESSAGE = 'must be a locale code such as "en_US"'

PROPERTY_PATTERN = r"[^.\s](?:[^.]*[^.\s])?(?:\.[^.\s](?:[^.]*[^.\s])?)*"
PROPERTY_MESSAGE = 'must be a dotted property path such as "property_sku" or "context.custom.sku"'
HEADER_PATTERN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # an HTTP header name (RFC 9110 token)


class Str(PlainField):
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
            raise wrong_type("a string", value)
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


class _Number(PlainField):
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
            raise wrong_type("an integer", value)
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


class Bool(PlainField):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise ValidationError(f"must be true or false, got {shown(value)}")


class Choice(PlainField):
    def __init__(self, choices: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError("must be one of " + ", ".join(self.choices))
        return str(value)


class Raw(PlainField):
    """Any JSON-compatible value (constants, `equals`), with EnvStr made plain."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return plain(value)


class StrList(PlainField):
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
            raise wrong_type("a list of strings", value)
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


class StrDict(PlainField):
    """A mapping of string → string; scalar values (numbers, booleans) become strings."""

    def __init__(self, value: PlainField | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value_field = value or Str(allow_empty=True)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise wrong_type("a mapping", value)
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


class SecretField(PlainField):
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


class NamedMap(PlainField):
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
                errors[name] = merge_errors_typed(errors.get(name), exc.messages)
        if errors:
            raise ValidationError(errors)
        return tuple(out)

