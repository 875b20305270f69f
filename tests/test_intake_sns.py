"""Bynder's webhooks come through Amazon SNS: signed envelopes, subscription confirmation.

AWS's side is played by a locally generated RSA key and self-signed certificate, served
over HTTPS (sandbox.server, trustme CA) from an allow-listed host. The signature is
computed the way AWS documents it ("Verifying the signatures of Amazon SNS messages":
SignatureVersion 1 = SHA1withRSA, 2 = SHA256withRSA over `name\\nvalue\\n` of Message,
MessageId, Subject (when present), Timestamp, TopicArn, Type — and SubscribeURL, Token for
(un)subscription confirmations). Requests reach the app over the werkzeug test client and
real Redis; the certificate and the SubscribeURL are real HTTPS GETs.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from werkzeug.test import Client
from werkzeug.wrappers import Request, Response

from connector.config.loader import parse_config
from connector.config.model import (
    Config,
    EventFieldsConfig,
    SnsConfig,
    SourceConfig,
    WebhookConfig,
)
from connector.intake.sns import SnsVerifier, canonical_string, host_matches
from connector.intake.store import IntakeStore
from connector.intake.web import WebhookApp
from connector.redis_conn import Keys
from sandbox.server import BackgroundServer

TOPIC = "arn:aws:sns:eu-west-1:123456789012:bynder-assets"
BYNDER_EVENTS = EventFieldsConfig(  # as examples/bynder.yaml reads them
    event_type="Subject",
    asset_id="Message.media_id",
    actions={
        "asset_bank.media.create": "upsert",
        "asset_bank.media.updated": "upsert",
        "asset_bank.media.meta_updated": "upsert",
        "asset_bank.media.deleted": "delete",
        "asset_bank.media.archived": "delete",
    },
)


class FakeAws:
    """Serves the signing certificate and the SubscribeURL; counts what was fetched."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.hits: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        with self._lock:
            self.hits.append(request.full_path)
        if request.path == "/SimpleNotificationService-test.pem":
            resp = Response(self.pem, mimetype="application/x-pem-file")
        elif request.path == "/" and request.args.get("Action") == "ConfirmSubscription":
            resp = Response("<ConfirmSubscriptionResponse/>", mimetype="text/xml")
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)

    def sign(self, msg: dict[str, Any], version: str = "1") -> dict[str, Any]:
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(canonical_string(msg), padding.PKCS1v15(), digest)
        return {**msg, "SignatureVersion": version,
                "Signature": base64.b64encode(signature).decode()}


@pytest.fixture(scope="module")
def aws() -> Iterator[tuple[FakeAws, BackgroundServer]]:
    fake = FakeAws()
    server = BackgroundServer(fake, tls=True).start()
    try:
        yield fake, server
    finally:
        server.stop()


@pytest.fixture
def env(aws, namespace, redis_client, monkeypatch):
    fake, server = aws
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
    fake.hits.clear()
    sns = SnsConfig(cert_hosts=("127.0.0.1",), subscribe_hosts=("127.0.0.1",))
    config = Config(families=(), sources=(
        SourceConfig(name="bynder", type="rest",
                     webhook=WebhookConfig(verification="sns", sns=sns, events=BYNDER_EVENTS)),
        SourceConfig(name="strict", type="rest",
                     webhook=WebhookConfig(verification="sns", events=BYNDER_EVENTS)),
    ))
    app = WebhookApp(config, redis_client, Keys(namespace), schedule=lambda s, c: None)
    store = IntakeStore(redis_client, Keys(namespace), "bynder")
    return Client(app), store, fake, server


def notification(server: BackgroundServer, subject: str, media_id: str,
                 message_id: str = "m-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Subject": subject,
        "Message": json.dumps({"media_id": media_id, "timestamp": "2026-12-03T10:00:00Z"}),
        "Timestamp": "2026-12-03T10:00:01.000Z",
        "SigningCertURL": f"{server.url}/SimpleNotificationService-test.pem",
        "UnsubscribeURL": f"{server.url}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:x",
    }


def post(client: Client, msg: dict[str, Any], path: str = "/webhooks/bynder") -> Any:
    return client.post(path, data=json.dumps(msg), headers={
        "Content-Type": "text/plain; charset=UTF-8",  # as SNS sends it
        "x-amz-sns-message-type": msg.get("Type", ""),
    })


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notifications_record_bynder_events(env, version):
    client, store, fake, server = env
    up = fake.sign(notification(server, "asset_bank.media.meta_updated", "MEDIA-1", "m-1"),
                   version)
    gone = fake.sign(notification(server, "asset_bank.media.deleted", "MEDIA-2", "m-2"),
                     version)
    assert post(client, up).status_code == 202
    assert post(client, gone).status_code == 202
    assert store.pending_ids() == ["MEDIA-1", "MEDIA-2"]
    assert store.deleted_ids() == {"MEDIA-2"}
    # the certificate was fetched once, then served from the cache
    assert fake.hits.count("/SimpleNotificationService-test.pem?") == 1
    # SNS redelivers under the same MessageId: recorded once
    again = post(client, up)
    assert again.status_code == 200 and again.json == {"status": "duplicate"}


def test_bad_signature_is_refused_and_nothing_recorded(env):
    client, store, fake, server = env
    signed = fake.sign(notification(server, "asset_bank.media.deleted", "MEDIA-1"))
    tampered = {**signed, "Message": json.dumps({"media_id": "MEDIA-666"})}
    r = post(client, tampered)
    assert r.status_code == 401 and r.json == {"error": "SNS signature does not match"}
    wrong_version = {**signed, "SignatureVersion": "3"}
    r = post(client, wrong_version)
    assert r.status_code == 401
    assert r.json == {"error": "SNS SignatureVersion '3' is not 1 or 2"}
    assert store.log_length() == 0 and store.pending_count() == 0
    assert not store.deleted_ids()


def test_certificate_from_a_host_not_allowed_is_never_fetched(env):
    client, store, fake, server = env
    msg = notification(server, "asset_bank.media.create", "MEDIA-1")
    # the default allow-list (sns.*.amazonaws.com) refuses the local host
    r = post(client, fake.sign(msg), path="/webhooks/strict")
    assert r.status_code == 401
    assert r.json == {
        "error": "SNS SigningCertURL host 127.0.0.1 is not in sns.eu-west-1.amazonaws.com"}
    # AWS's host, but of another region than the topic's
    other = {**msg, "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"}
    r = post(client, fake.sign(other), path="/webhooks/strict")
    assert r.status_code == 401 and r.json == {"error": "SNS SigningCertURL host "
                                               "sns.us-east-1.amazonaws.com is not in "
                                               "sns.eu-west-1.amazonaws.com"}
    # a forged message naming its own certificate over plain http
    plain = {**msg, "SigningCertURL": msg["SigningCertURL"].replace("https:", "http:")}
    r = post(client, fake.sign(plain))
    assert r.status_code == 401 and r.json == {"error": "SNS SigningCertURL is not https"}
    assert fake.hits == []
    assert store.log_length() == 0


def test_subscription_confirmation_is_confirmed_through_the_safe_client(env):
    client, store, fake, server = env
    confirm_url = f"{server.url}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=tok-1"
    msg = fake.sign({
        "Type": "SubscriptionConfirmation", "MessageId": "s-1", "Token": "tok-1",
        "TopicArn": TOPIC, "Message": "You have chosen to subscribe to the topic ...",
        "SubscribeURL": confirm_url, "Timestamp": "2026-12-03T10:00:00.000Z",
        "SigningCertURL": f"{server.url}/SimpleNotificationService-test.pem",
    })
    r = post(client, msg)
    assert r.status_code == 200 and r.json == {"status": "subscribed"}
    assert any(h.startswith("/?Action=ConfirmSubscription") and "Token=tok-1" in h
               for h in fake.hits)
    assert store.log_length() == 0
    # a SubscribeURL elsewhere than the allow-list is not followed (SNS will ask again)
    fake.hits.clear()
    evil = fake.sign({**msg, "SubscribeURL": "https://169.254.169.254/latest/meta-data/"})
    r = post(client, evil)
    assert r.status_code == 502
    assert r.json == {"error": "SNS SubscribeURL host 169.254.169.254 is not in 127.0.0.1"}
    assert not any(h.startswith("/?Action") for h in fake.hits)


def test_not_an_sns_message_is_a_400(env):
    client, store, _, _ = env
    r = client.post("/webhooks/bynder", data=b'{"media_id": "X"}')
    assert r.status_code == 400
    assert r.json == {"error": "not an SNS message: Type 'None' is not one of Notification, "
                               "SubscriptionConfirmation, UnsubscribeConfirmation"}
    assert store.log_length() == 0


def test_host_patterns_match_one_label():
    default = ("sns.{region}.amazonaws.com",)
    assert host_matches("sns.eu-west-1.amazonaws.com", default, "eu-west-1")
    assert not host_matches("sns.us-east-1.amazonaws.com", default, "eu-west-1")
    assert not host_matches("sns.eu-west-1.amazonaws.com", default, "")
    hosts = ("sns.*.amazonaws.com",)
    assert host_matches("sns.eu-west-1.amazonaws.com", hosts)
    assert host_matches("SNS.us-east-1.amazonaws.com.", hosts)
    assert not host_matches("sns.amazonaws.com", hosts)
    assert not host_matches("sns.a.b.amazonaws.com", hosts)
    assert not host_matches("sns.eu-west-1.amazonaws.com.evil.net", hosts)
    assert not host_matches("evil.net", hosts)


def test_canonical_string_skips_an_absent_subject():
    msg = {"Type": "Notification", "MessageId": "1", "TopicArn": "t", "Message": "m",
           "Timestamp": "ts"}
    assert canonical_string(msg) == (
        b"Message\nm\nMessageId\n1\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n")


def test_sns_config_keys():
    cfg = parse_config(yaml.safe_load("""
families: {f: {match: {always: true}, mapping: {a: b}}}
sources:
  bynder:
    type: rest
    rest: {base_url: "https://acme.bynder.com", list: {path: /api/v4/media/}}
    webhook:
      verification: sns
      sns: {topic_arns: ["arn:aws:sns:eu-west-1:123456789012:bynder-assets"],
            subscribe_hosts: ["sns.{region}.amazonaws.com", "sns.*.amazonaws.com.cn"]}
      events: {event_type: Subject, asset_id: Message.media_id}
"""), env={})
    webhook = cfg.sources[0].webhook
    assert webhook is not None and webhook.verification == "sns"
    assert webhook.sns.topic_arns == (TOPIC,)
    assert webhook.sns.cert_hosts == ("sns.{region}.amazonaws.com",)
    verifier = SnsVerifier(webhook.sns)
    assert verifier.cfg.subscribe_hosts == ("sns.{region}.amazonaws.com",
                                            "sns.*.amazonaws.com.cn")


def test_sns_config_errors():
    from connector.config.loader import ConfigError

    def load(webhook: dict[str, Any]) -> list[str]:
        raw = {"families": {"f": {"match": {"always": True}, "mapping": {"a": "b"}}},
               "sources": {"s": {"type": "folder", "folder": {"path": "/tmp"},
                                 "webhook": webhook}}}
        with pytest.raises(ConfigError) as err:
            parse_config(raw, env={"S": "x"})
        return err.value.errors

    assert load({"verification": "sns", "secret": "${S}"}) == [
        'sources.s.webhook.secret: not used by verification "sns" (AWS signs the message)']
    assert load({"verification": "hmac", "secret": "${S}", "sns": {}}) == [
        'sources.s.webhook.sns: only used by verification "sns"']
    assert load({"verification": "sns", "sns": {"topic_arns": ["bynder"]}}) == [
        'sources.s.webhook.sns.topic_arns[0]: must be a topic ARN such as '
        '"arn:aws:sns:eu-west-1:123:bynder"']
