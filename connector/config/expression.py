"""A tiny, safe expression language for selectors (`match: {expression: ...}`).

Why not `eval`: the config file is user input and selectors run on every DAM record; a
hand-written parser can only compare values, so a config file can never run code, and a
syntax error is reported at load time with its column.

Grammar (keywords are lower case)::

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" expression ")" | comparison
    comparison := value [operator value]          # a lone value is tested for truth
    operator   := == | != | < | <= | > | >= | contains | startswith | endswith | in | matches
    value      := dotted.property.path | JSON literal (string, number, array, object)
                  | true | false | null

Examples: ``tags contains "product" and property_product_asset == true``,
``folder startswith "products/" and not (extension in ["tmp", "part"])``,
``filename matches "_[a-z]{2}_[A-Z]{2}\\\\.pdf$"``.

Evaluation never raises: a missing property is null, and a comparison between values of
incompatible types (a number with a string, ...) is simply false.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connector.dam.paths import get_path

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]
_Value = Callable[[Record], Any]

MAX_LENGTH = 4000
MAX_DEPTH = 40

KEYWORDS = frozenset(
    {"and", "or", "not", "true", "false", "null"}
    | {"contains", "startswith", "endswith", "in", "matches"}
)
WORD_OPERATORS = ("contains", "startswith", "endswith", "in", "matches")
SYMBOL_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
OPERATORS = SYMBOL_OPERATORS + WORD_OPERATORS

# Strings that count as false when a lone value is tested for truth (same as selectors).
_FALSE_STRINGS = frozenset({"", "0", "false", "no", "n", "off", "none", "null"})


class ExpressionError(ValueError):
    """A syntax error, with the 1-based column where it was found."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str          # "path" | "literal" | "op" | "keyword" | "(" | ")" | "end"
    text: str          # the source text (for messages)
    column: int        # 1-based
    value: Any = None  # literal value, or the path string


_PATH = re.compile(r"[^\W\d][\w\-]*(?:\.[\w\-]+)*")
_JSON_START = frozenset('"[{-0123456789')
_DECODER = json.JSONDecoder()


def _describe(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the expression"
    text = token.text if len(token.text) <= 30 else token.text[:27] + "..."
    return f'"{text}"'


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        column = i + 1
        if ch in "()":
            tokens.append(_Token(ch, ch, column))
            i += 1
            continue
        symbol = next((op for op in SYMBOL_OPERATORS if text.startswith(op, i)), None)
        if symbol is not None:
            tokens.append(_Token("op", symbol, column))
            i += len(symbol)
            continue
        if ch == "=":
            raise ExpressionError('use "==" to compare', column)
        if ch == "'":
            raise ExpressionError("strings use double quotes", column)
        if ch in _JSON_START:
            try:
                value, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                raise ExpressionError(f"invalid literal: {exc.msg}", exc.pos + 1) from None
            except RecursionError:
                raise ExpressionError("literal nested too deeply", column) from None
            tokens.append(_Token("literal", text[i:end], column, value))
            i = end
            continue
        match = _PATH.match(text, i)
        if match is None:
            raise ExpressionError(f'unexpected character "{ch}"', column)
        word = match.group(0)
        if word in KEYWORDS:
            if word in ("true", "false", "null"):
                tokens.append(_Token("literal", word, column, json.loads(word)))
            elif word in WORD_OPERATORS:
                tokens.append(_Token("op", word, column))
            else:
                tokens.append(_Token("keyword", word, column))
        else:
            tokens.append(_Token("path", word, column, word))
        i = match.end()
    tokens.append(_Token("end", "", n + 1))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at_keyword(self, word: str) -> bool:
        return self.current.kind == "keyword" and self.current.text == word

    def parse(self) -> Predicate:
        if self.current.kind == "end":
            raise ExpressionError("the expression is empty", 1)
        predicate = self.parse_or()
        if self.current.kind != "end":
            raise ExpressionError(
                f'expected "and", "or" or the end, got {_describe(self.current)}',
                self.current.column,
            )
        return predicate

    def parse_or(self) -> Predicate:
        parts = [self.parse_and()]
        while self.at_keyword("or"):
            self.advance()
            parts.append(self.parse_and())
        if len(parts) == 1:
            return parts[0]
        return lambda record: any(p(record) for p in parts)

    def parse_and(self) -> Predicate:
        parts = [self.parse_not()]
        while self.at_keyword("and"):
            self.advance()
            parts.append(self.parse_not())
        if len(parts) == 1:
            return parts[0]
        return lambda record: all(p(record) for p in parts)

    def parse_not(self) -> Predicate:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError("the expression is nested too deeply", self.current.column)
        try:
            if self.at_keyword("not"):
                self.advance()
                inner = self.parse_not()
                return lambda record: not inner(record)
            if self.current.kind == "(":
                opening = self.advance()
                inner = self.parse_or()
                if self.current.kind != ")":
                    raise ExpressionError(
                        f'expected ")" to close the "(" at column {opening.column}, '
                        f"got {_describe(self.current)}",
                        self.current.column,
                    )
                self.advance()
                return inner
            return self.parse_comparison()
        finally:
            self.depth -= 1

    def parse_value(self) -> tuple[_Token, _Value]:
        token = self.current
        if token.kind == "path":
            self.advance()
            path = str(token.value)
            return token, lambda record: get_path(record, path)
        if token.kind == "literal":
            self.advance()
            constant = token.value
            return token, lambda record: constant
        raise ExpressionError(
            f"expected a property name or a value, got {_describe(token)}", token.column
        )

    def parse_comparison(self) -> Predicate:
        _, left = self.parse_value()
        if self.current.kind != "op":
            if self.current.kind in ("path", "literal"):
                raise ExpressionError(
                    f"expected an operator ({', '.join(OPERATORS)}), "
                    f"got {_describe(self.current)}",
                    self.current.column,
                )
            return lambda record: _truthy(left(record))
        op_token = self.advance()
        right_token, right = self.parse_value()
        op = op_token.text
        if right_token.kind == "literal":
            _check_literal_operand(op, right_token)
        if op == "matches":
            pattern = _compile_pattern(right_token)
            return lambda record: _matches(left(record), pattern)
        compare = _COMPARISONS[op]
        return lambda record: _safe(compare, left(record), right(record))


def _check_literal_operand(op: str, token: _Token) -> None:
    value = token.value
    if op in ("startswith", "endswith", "matches") and not isinstance(value, str):
        raise ExpressionError(f'"{op}" needs a string on its right', token.column)
    if op == "in" and not isinstance(value, list | str):
        raise ExpressionError('"in" needs an array or a string on its right', token.column)


def _compile_pattern(token: _Token) -> re.Pattern[str]:
    if token.kind != "literal":
        raise ExpressionError('"matches" needs a string literal on its right', token.column)
    try:
        return re.compile(str(token.value))
    except re.error as exc:
        raise ExpressionError(f"invalid regular expression: {exc}", token.column) from None
    except (RecursionError, OverflowError, MemoryError):
        raise ExpressionError("invalid regular expression: too complex", token.column) from None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 is 1.0, containers compare element-wise."""
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if type(a) is not type(b) and not (
        isinstance(a, Sequence | Mapping) and isinstance(b, Sequence | Mapping)
    ):
        return False
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, Sequence) and isinstance(b, Sequence):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _order(a: Any, b: Any) -> int | None:
    """-1/0/1 for two numbers or two strings; None when they cannot be ordered."""
    if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        return int((a > b) - (a < b))
    return None


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, Mapping):
        return isinstance(item, str) and item in container
    if isinstance(container, Sequence):
        return any(_equal(element, item) for element in container)
    return False


def _startswith(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.startswith(b)


def _endswith(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.endswith(b)


def _lt(a: Any, b: Any) -> bool:
    return _order(a, b) == -1


def _le(a: Any, b: Any) -> bool:
    return _order(a, b) in (-1, 0)


def _gt(a: Any, b: Any) -> bool:
    return _order(a, b) == 1


def _ge(a: Any, b: Any) -> bool:
    return _order(a, b) in (0, 1)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, b: not _equal(a, b),
    "<": _lt,
    "<=": _le,
    ">": _gt,
    ">=": _ge,
    "contains": _contains,
    "in": lambda a, b: _contains(b, a),
    "startswith": _startswith,
    "endswith": _endswith,
}


def _safe(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    try:
        return compare(a, b)
    except (TypeError, ValueError, RecursionError):
        return False


def _matches(value: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(value, str) and pattern.search(value) is not None


def compile_expression(text: str) -> Predicate:
    """Parse `text` into a predicate over one DAM record (a mapping; dotted paths).

    Raises ExpressionError (with `.column`) on any syntax error; the returned predicate
    never raises.
    """
    if not isinstance(text, str):
        raise ExpressionError("the expression must be a string", 1)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters", 1)
    try:
        predicate = _Parser(_tokenize(text)).parse()
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply", 1) from None

    def evaluate(record: Record) -> bool:
        try:
            return bool(predicate(record))
        except RecursionError:
            return False

    return evaluate


def expression_paths(text: str) -> list[str]:
    """The record paths `text` reads, in order, once each (for `explain`: the values an
    expression was given); empty when the expression does not parse."""
    try:
        tokens = _tokenize(text)
    except ExpressionError:
        return []
    return list(dict.fromkeys(t.value for t in tokens if t.kind == "path"))
