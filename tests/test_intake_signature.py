"""Webhook verification: both real-world shapes, every knob, replay window, constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from connector.config.model import WebhookConfig
from connector.intake import signature
from connector.intake.signature import (
    VerificationError,
    build_payload,
    compute_signature,
    template_errors,
    verify,
)
from connector.settings import Secret

BODY = b'{"notification_type":"upload","public_id":"shoe_1"}'
NOW = 1_800_000_000.0

CLOUDINARY = WebhookConfig(
    verification="digest",
    header="X-Cld-Signature",
    algorithm="sha1",
    encoding="hex",
    payload="{body}{timestamp}{secret}",
    timestamp_header="X-Cld-Timestamp",
    tolerance=7200,
    secret=Secret("cld-api-secret"),
)
GENERIC = WebhookConfig(
    verification="hmac",
    header="X-Signature",
    algorithm="sha256",
    encoding="hex",
    prefix="sha256=",
    secret=Secret("generic-secret"),
)


def test_cloudinary_signature_is_sha1_of_body_timestamp_secret():
    ts = str(int(NOW))
    expected = hashlib.sha1(BODY + ts.encode() + b"cld-api-secret").hexdigest()
    headers = {"X-Cld-Signature": expected, "X-Cld-Timestamp": ts}
    assert verify(CLOUDINARY, headers, BODY, now=NOW).timestamp == NOW
    assert compute_signature(CLOUDINARY, BODY, ts) == expected


def test_generic_sha256_prefixed_hmac():
    digest = hmac.new(b"generic-secret", BODY, hashlib.sha256).hexdigest()
    verify(GENERIC, {"x-signature": "sha256=" + digest}, BODY)  # header names any case
    verify(GENERIC, {"X-Signature": "sha256=" + digest.upper()}, BODY)  # hex any case
    with pytest.raises(VerificationError) as err:
        verify(GENERIC, {"X-Signature": digest}, BODY)  # prefix missing
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_algorithms_and_encodings(algorithm, encoding):
    cfg = WebhookConfig(
        header="X-Sig", algorithm=algorithm, encoding=encoding, secret=Secret("k")
    )
    raw = hmac.new(b"k", BODY, algorithm).digest()
    good = raw.hex() if encoding == "hex" else base64.b64encode(raw).decode()
    assert compute_signature(cfg, BODY) == good
    verify(cfg, {"X-Sig": good}, BODY)
    tampered = BODY.replace(b"shoe_1", b"shoe_2")
    with pytest.raises(VerificationError) as err:
        verify(cfg, {"X-Sig": good}, tampered)
    assert err.value.reason == "bad_signature"
    with pytest.raises(VerificationError):  # wrong encoding is refused, not crashed on
        verify(cfg, {"X-Sig": "%%%not-encoded%%%"}, BODY)


def test_wrong_secret_and_missing_header_are_refused():
    other = WebhookConfig(**{**GENERIC.__dict__, "secret": Secret("other")})
    sig = compute_signature(other, BODY)
    with pytest.raises(VerificationError) as err:
        verify(GENERIC, {"X-Signature": sig}, BODY)
    assert err.value.reason == "bad_signature"
    with pytest.raises(VerificationError) as err:
        verify(GENERIC, {}, BODY)
    assert err.value.reason == "missing_signature"


def test_replay_window():
    def headers(ts: float) -> dict[str, str]:
        t = str(int(ts))
        return {"X-Cld-Timestamp": t, "X-Cld-Signature": compute_signature(CLOUDINARY, BODY, t)}

    verify(CLOUDINARY, headers(NOW - 7100), BODY, now=NOW)
    verify(CLOUDINARY, headers(NOW + 7100), BODY, now=NOW)
    for stale in (NOW - 7300, NOW + 7300):
        with pytest.raises(VerificationError) as err:
            verify(CLOUDINARY, headers(stale), BODY, now=NOW)
        assert err.value.reason == "stale_timestamp"
    with pytest.raises(VerificationError) as err:
        verify(CLOUDINARY, {"X-Cld-Signature": "00"}, BODY, now=NOW)
    assert err.value.reason == "missing_timestamp"
    # the timestamp is signed: moving it into the window breaks the signature
    old = headers(NOW - 9000)
    old["X-Cld-Timestamp"] = str(int(NOW))
    with pytest.raises(VerificationError) as err:
        verify(CLOUDINARY, old, BODY, now=NOW)
    assert err.value.reason == "bad_signature"


def test_millisecond_timestamps_are_understood():
    cfg = WebhookConfig(**{**GENERIC.__dict__, "timestamp_header": "X-Ts", "tolerance": 60})
    verify(cfg, {"X-Ts": str(int(NOW * 1000)), "X-Signature": compute_signature(cfg, BODY)},
           BODY, now=NOW)


def test_bearer_secret():
    cfg = WebhookConfig(
        verification="bearer", header="Authorization", prefix="Bearer ", secret=Secret("tok")
    )
    verify(cfg, {"Authorization": "Bearer tok"}, BODY)
    with pytest.raises(VerificationError):
        verify(cfg, {"Authorization": "Bearer tak"}, BODY)
    with pytest.raises(VerificationError):
        verify(cfg, {"Authorization": "tok"}, BODY)


def test_none_verification_still_checks_the_replay_window():
    cfg = WebhookConfig(verification="none", timestamp_header="X-Ts", tolerance=10)
    verify(cfg, {"X-Ts": str(int(time.time()))}, BODY)
    with pytest.raises(VerificationError):
        verify(cfg, {"X-Ts": "12"}, BODY)


def test_every_comparison_is_constant_time(monkeypatch):
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    verify(GENERIC, {"X-Signature": compute_signature(GENERIC, BODY)}, BODY)
    with pytest.raises(VerificationError):
        verify(GENERIC, {"X-Signature": "sha256=" + "0" * 64}, BODY)
    bearer = WebhookConfig(verification="bearer", header="A", secret=Secret("s"))
    verify(bearer, {"A": "s"}, BODY)
    assert len(calls) == 3


def test_payload_template():
    assert build_payload("{timestamp}.{body}", b"B", "12", b"S") == b"12.B"
    assert build_payload("{body}{timestamp}{secret}", b"B", "12", b"S") == b"B12S"
    assert template_errors("{body}{timestamp}") == []
    assert template_errors("{body}{nonce}")
    assert template_errors("{timestamp}")


def test_secret_never_in_error_text():
    with pytest.raises(VerificationError) as err:
        verify(GENERIC, {"X-Signature": "sha256=00"}, BODY)
    assert "generic-secret" not in str(err.value)
    assert "generic-secret" not in repr(GENERIC)
