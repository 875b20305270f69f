"""Webhook authentication: HMAC or keyed digest over the raw body, or a shared bearer secret.

Every comparison of a secret-derived value goes through `hmac.compare_digest` (constant
time). The reasons returned are fixed strings: they reach logs and metrics, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from werkzeug.datastructures import Headers

from connector.config.model import WebhookConfig

PLACEHOLDERS = ("body", "timestamp", "secret")
_TOKEN = re.compile(r"\{(body|timestamp|secret)\}")


class VerificationError(Exception):
    """The delivery is not authentic (or is a replay); `reason` is a metrics label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Verified:
    timestamp: float | None


def build_payload(template: str, body: bytes, timestamp: str, secret: bytes) -> bytes:
    """The signed bytes: `template` with `{body}`, `{timestamp}`, `{secret}` filled in."""
    parts: list[bytes] = []
    pos = 0
    values = {"body": body, "timestamp": timestamp.encode("ascii", "replace"), "secret": secret}
    for m in _TOKEN.finditer(template):
        parts.append(template[pos : m.start()].encode("utf-8"))
        parts.append(values[m.group(1)])
        pos = m.end()
    parts.append(template[pos:].encode("utf-8"))
    return b"".join(parts)


def template_errors(template: str) -> list[str]:
    """Problems with a payload template (unknown placeholders, stray braces)."""
    rest = _TOKEN.sub("", template)
    if "{" in rest or "}" in rest:
        return ["only {body}, {timestamp} and {secret} may appear in braces"]
    if "{body}" not in template:
        return ["must contain {body}"]
    return []


def compute_signature(cfg: WebhookConfig, body: bytes, timestamp: str = "") -> str:
    """The header value a correct sender puts in `cfg.header` (tests and tools use it too)."""
    secret = cfg.secret.reveal().encode("utf-8") if cfg.secret else b""
    if cfg.verification == "bearer":
        return cfg.prefix + secret.decode("utf-8")
    digest = _digest(cfg, build_payload(cfg.payload, body, timestamp, secret), secret)
    text = digest.hex() if cfg.encoding == "hex" else base64.b64encode(digest).decode("ascii")
    return cfg.prefix + text


def _digest(cfg: WebhookConfig, payload: bytes, secret: bytes) -> bytes:
    if cfg.verification == "hmac":
        return hmac.new(secret, payload, cfg.algorithm).digest()
    return hashlib.new(cfg.algorithm, payload).digest()


def _decode(cfg: WebhookConfig, text: str) -> bytes | None:
    text = text.strip()
    try:
        if cfg.encoding == "hex":
            return bytes.fromhex(text)
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None


def _header(headers: Mapping[str, str] | Headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # plain dicts in tests: look the name up case-insensitively
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def verify(
    cfg: WebhookConfig, headers: Mapping[str, str] | Headers, body: bytes, now: float | None = None
) -> Verified:
    """Check one delivery; raises VerificationError(reason) when it must be refused (401)."""
    timestamp_text = ""
    timestamp: float | None = None
    if cfg.timestamp_header:
        timestamp_text = (_header(headers, cfg.timestamp_header) or "").strip()
        if not timestamp_text:
            raise VerificationError("missing_timestamp", f"missing {cfg.timestamp_header}")
        timestamp = _parse_timestamp(timestamp_text)
        if timestamp is None:
            raise VerificationError("bad_timestamp", f"{cfg.timestamp_header} is not a number")
        current = time.time() if now is None else now
        if abs(current - timestamp) > cfg.tolerance:
            raise VerificationError(
                "stale_timestamp", f"{cfg.timestamp_header} outside ±{cfg.tolerance:g}s"
            )
    if cfg.verification == "none":
        return Verified(timestamp)
    if not cfg.secret:
        raise VerificationError("no_secret", "webhook secret is not configured")
    given = _header(headers, cfg.header)
    if not given:
        raise VerificationError("missing_signature", f"missing {cfg.header}")
    secret = cfg.secret.reveal().encode("utf-8")
    if cfg.verification == "bearer":
        expected = cfg.prefix.encode("utf-8") + secret
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
            raise VerificationError("bad_signature", f"{cfg.header} does not match")
        return Verified(timestamp)
    if cfg.prefix and not given.startswith(cfg.prefix):
        raise VerificationError("bad_signature", f"{cfg.header} lacks prefix {cfg.prefix!r}")
    provided = _decode(cfg, given[len(cfg.prefix) :])
    if provided is None:
        raise VerificationError("bad_signature", f"{cfg.header} is not {cfg.encoding}")
    payload = build_payload(cfg.payload, body, timestamp_text, secret)
    if not hmac.compare_digest(provided, _digest(cfg, payload, secret)):
        raise VerificationError("bad_signature", f"{cfg.header} does not match")
    return Verified(timestamp)


def _parse_timestamp(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value / 1000.0 if value > 1e11 else value  # milliseconds since the epoch
