"""Amazon SNS deliveries to a webhook (`verification: sns`; Bynder sends its events so).

An SNS POST carries a JSON envelope signed by AWS: the RSA signature (SignatureVersion 1:
SHA1withRSA, 2: SHA256withRSA) covers a canonical string of the documented fields, and the
certificate comes from `SigningCertURL`. Nothing in the envelope is trusted before that
check, and the certificate URL itself must be https on an allow-listed host
(`sns.<the TopicArn's region>.amazonaws.com` by default): a forged message cannot name a
certificate of its own.
Certificates are cached per URL (AWS rotates them under new URLs).

A `SubscriptionConfirmation` is confirmed by a GET of its `SubscribeURL` (allow-listed host,
https) through the SSRF-safe downloader (connector/dam/media.py); a `Notification`'s
`Message` is the vendor's event (JSON), handed to the `events` paths with the envelope
around it: Bynder's event type is the envelope's `Subject`, its id `Message.media_id`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from connector.config.model import SnsConfig
from connector.dam.base import DamError
from connector.dam.media import SafeDownloader, normalise_host, safe_url
from connector.intake.signature import VerificationError

#: The fields each message type signs, in the documented (alphabetical) order.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ),
}
OPTIONAL_FIELDS = frozenset({"Subject"})
MAX_CERT_BYTES = 64 * 1024
CERT_CACHE_SIZE = 16
CERT_CACHE_TTL = 24 * 3600.0

Fetch = Callable[[str, float], bytes]


class SnsError(Exception):
    """A genuine message the connector could not act on (confirmation GET failed)."""


@dataclass(frozen=True)
class SnsMessage:
    """A verified envelope: its type, id and (for a Notification) the event document."""

    type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    message_id: str
    topic_arn: str
    document: dict[str, Any] | None = None
    subscribe_url: str | None = field(default=None, repr=False)  # carries a token


def canonical_string(msg: Mapping[str, Any]) -> bytes:
    """The bytes AWS signs: `name\\nvalue\\n` for each signed field present, in order."""
    kind = msg.get("Type")
    names = SIGNED_FIELDS.get(kind if isinstance(kind, str) else "", ())
    parts: list[str] = []
    for name in names:
        value = msg.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


def topic_region(topic_arn: str) -> str:
    """The region of `arn:aws:sns:<region>:<account>:<name>` ("" when it is not one)."""
    parts = topic_arn.split(":")
    return parts[3] if len(parts) >= 6 and parts[2] == "sns" else ""


def host_matches(host: str, patterns: tuple[str, ...], region: str = "") -> bool:
    """`*` stands for exactly one DNS label, `{region}` for the topic's region:
    `sns.{region}.amazonaws.com` matches `sns.eu-west-1.amazonaws.com` for a topic of
    eu-west-1 only; nothing matches `sns.eu-west-1.amazonaws.com.attacker.net`."""
    labels = normalise_host(host).split(".")
    for pattern in patterns:
        if "{region}" in pattern:
            if not region:
                continue
            pattern = pattern.replace("{region}", region)
        want = normalise_host(pattern).split(".")
        if (
            len(want) == len(labels)
            and all(labels)
            and all(w in ("*", h) for w, h in zip(want, labels, strict=True))
        ):
            return True
    return False


def _fetch_safely(url: str, timeout: float) -> bytes:
    """GET `url` through the SSRF-safe downloader (host resolved and checked, no
    redirects, size capped); the caller has allow-listed the host already."""
    host = urlsplit(url).hostname or ""
    downloader = SafeDownloader([host], MAX_CERT_BYTES, timeout, max_redirects=0)
    path = downloader.fetch(url)
    try:
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


class SnsVerifier:
    """Verifies SNS envelopes for one webhook source; thread-safe, one per process."""

    def __init__(self, cfg: SnsConfig, fetch: Fetch | None = None) -> None:
        self.cfg = cfg
        self._fetch = fetch or _fetch_safely
        self._certs: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ checks
    def parse(self, body: bytes) -> SnsMessage:
        """The verified message in `body`; VerificationError (→ 4xx, nothing recorded)
        when it is not an authentic SNS message for an accepted topic."""
        try:
            msg = json.loads(body)
        except (UnicodeDecodeError, ValueError):
            raise VerificationError("invalid_json", "not an SNS message: invalid JSON") from None
        if not isinstance(msg, dict):
            raise VerificationError("malformed", "not an SNS message: expected a JSON object")
        kind = msg.get("Type")
        if kind not in SIGNED_FIELDS:
            raise VerificationError(
                "malformed", f"not an SNS message: Type {str(kind)[:40]!r} is not one of "
                "Notification, SubscriptionConfirmation, UnsubscribeConfirmation"
            )
        missing = [
            n for n in (*SIGNED_FIELDS[kind], "Signature", "SignatureVersion", "SigningCertURL")
            if n not in OPTIONAL_FIELDS and not isinstance(msg.get(n), str)
        ]
        if missing:
            raise VerificationError("malformed", f"SNS {kind} lacks {', '.join(missing)}")
        topic = msg["TopicArn"]
        if self.cfg.topic_arns and topic not in self.cfg.topic_arns:
            raise VerificationError("wrong_topic", f"SNS topic {topic[:200]} is not accepted")
        self.verify_signature(msg, topic_region(topic))
        document = None
        if kind == "Notification":
            document = dict(msg)
            # the vendor's event is JSON text inside the envelope; a plain-text Message
            # stays text and the events paths decide
            with contextlib.suppress(ValueError):
                document["Message"] = json.loads(msg["Message"])
        subscribe = msg.get("SubscribeURL") if kind == "SubscriptionConfirmation" else None
        return SnsMessage(kind, msg["MessageId"], topic, document, subscribe)

    def verify_signature(self, msg: Mapping[str, Any], region: str = "") -> None:
        version = msg.get("SignatureVersion")
        if version == "1":
            algorithm = "sha1"
        elif version == "2":
            algorithm = "sha256"
        else:
            raise VerificationError(
                "bad_signature", f"SNS SignatureVersion {str(version)[:10]!r} is not 1 or 2"
            )
        try:
            signature = base64.b64decode(str(msg["Signature"]), validate=True)
        except (binascii.Error, ValueError):
            raise VerificationError("bad_signature", "SNS Signature is not base64") from None
        key = self.certificate_key(str(msg["SigningCertURL"]), region)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if not isinstance(key, rsa.RSAPublicKey):
            raise VerificationError("bad_signature", "SNS signing certificate is not RSA")
        digest = hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()
        try:
            key.verify(signature, canonical_string(msg), padding.PKCS1v15(), digest)
        except InvalidSignature:
            raise VerificationError("bad_signature", "SNS signature does not match") from None

    def certificate_key(self, url: str, region: str = "") -> Any:
        """The public key of the certificate at `url` (allow-listed https host; cached)."""
        self._check_url(url, self.cfg.cert_hosts, "SigningCertURL", region)
        now = time.monotonic()
        with self._lock:
            cached = self._certs.get(url)
            if cached is not None and now - cached[0] < CERT_CACHE_TTL:
                self._certs.move_to_end(url)
                return cached[1]
        try:
            pem = self._fetch(url, self.cfg.timeout)
        except DamError as exc:
            raise VerificationError(
                "certificate_unavailable", f"SNS signing certificate unavailable: {exc}"
            ) from None
        from cryptography import x509

        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise VerificationError(
                "bad_certificate", f"{safe_url(url)} is not a PEM certificate"
            ) from None
        with self._lock:
            self._certs[url] = (now, key)
            self._certs.move_to_end(url)
            while len(self._certs) > CERT_CACHE_SIZE:
                self._certs.popitem(last=False)
        return key

    def _check_url(self, url: str, hosts: tuple[str, ...], what: str, region: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise VerificationError("bad_signature", f"SNS {what} is not https")
        if not host_matches(parts.hostname or "", hosts, region):
            shown = ", ".join(h.replace("{region}", region or "{region}") for h in hosts)
            raise VerificationError(
                "bad_signature", f"SNS {what} host {str(parts.hostname)[:100]} is not in {shown}"
            )

    # ------------------------------------------------------------ subscription
    def confirm(self, msg: SnsMessage) -> None:
        """GET the SubscribeURL of a verified SubscriptionConfirmation (SnsError: SNS
        will send the confirmation again; nothing else depends on it)."""
        subscribe_url = msg.subscribe_url or ""
        try:
            self._check_url(subscribe_url, self.cfg.subscribe_hosts, "SubscribeURL",
                            topic_region(msg.topic_arn))
        except VerificationError as exc:
            raise SnsError(exc.detail) from None
        try:
            self._fetch(subscribe_url, self.cfg.timeout)
        except DamError as exc:
            raise SnsError(
                f"confirming the subscription to {msg.topic_arn} failed: {exc}"
            ) from None
