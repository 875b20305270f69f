"""Property-based fuzzing of what outsiders and operators feed the connector: webhook
deliveries (body, headers, path) against the webhook WSGI app, and configuration files
(random YAML trees, mutations of the demo config, raw text).

What must hold: the webhook app never answers 5xx (Redis is up) and every refusal carries
its reason; the config loader returns a Config or raises ConfigError whose every line is
"path: message" — never another exception.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from connector.config import Config, ConfigError, load_config, parse_config
from connector.config.model import (
    EventFieldsConfig,
    RealtimeConfig,
    SourceConfig,
    WebhookConfig,
)
from connector.intake.signature import compute_signature
from connector.intake.web import WebhookApp
from connector.redis_conn import Keys
from connector.settings import Secret
from tests.faults.support import SIZE, sized

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sized(2000, 150)
# Reduced size: the same examples every run (CI stays reproducible); full size explores.
DERANDOMIZE = SIZE != "full"
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.sampled_from(["${DAM_TOKEN}", "${MISSING}", "${X:-y}", "$${ESC}", "5m", "-1s",
                       "1e999", "0", "*/5 * * * *", "yes", "no", "~", ""])
)
_tree = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["pim", "sync", "families", "sources", "mapping", "match", "type",
                         "rest", "auth", "list", "schedule", "webhook", "locale", "property",
                         "product_asset", "realtime", "folder", "media", "every", "crontab"])
        | st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)


# ---------------------------------------------------------------- webhooks

SECRET = "fuzz-webhook-secret"
WEBHOOK = WebhookConfig(
    header="X-Signature", prefix="sha256=", secret=Secret(SECRET), max_body_bytes=4096,
    events=EventFieldsConfig(
        event_type="event", asset_id="asset_id", delivery_id_header="X-Delivery",
        actions={"asset.updated": "upsert", "asset.deleted": "delete"},
    ),
)
DIGEST = WebhookConfig(
    verification="digest", header="X-Cld-Signature", algorithm="sha1",
    payload="{body}{timestamp}{secret}", timestamp_header="X-Cld-Timestamp", tolerance=600,
    secret=Secret(SECRET),
    events=EventFieldsConfig(event_type="notification_type", asset_id="public_id",
                             actions={"upload": "upsert"}),
)


@pytest.fixture
def webhook_client(namespace: str, redis_client: Any) -> Iterator[Client]:
    config = Config(families=(), sources=(
        SourceConfig(name="dam", type="rest", webhook=WEBHOOK,
                     realtime=RealtimeConfig(window=5, batch_size=3)),
        SourceConfig(name="cld", type="rest", webhook=DIGEST),
        SourceConfig(name="polled", type="rest"),
    ))
    app = WebhookApp(config, redis_client, Keys(namespace), schedule=lambda s, c: None)
    yield Client(app)


_event = st.fixed_dictionaries({}, optional={
    "event": st.sampled_from(["asset.updated", "asset.deleted", "asset.created"]) | _scalars,
    "asset_id": st.text(max_size=40) | _scalars,
    "delivery_id": _scalars,
    "notification_type": st.sampled_from(["upload", "delete"]) | _scalars,
    "public_id": _scalars,
})
_body = (
    _event.map(lambda d: json.dumps(d).encode())
    | st.lists(_event, max_size=4).map(lambda d: json.dumps(d).encode())
    | _tree.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=300)
    | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.integers(4000, 6000).map(lambda n: b'{"event": "asset.updated", "x": "' + b"a" * n
                                   + b'"}')
)
_header_value = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@FUZZ
@given(
    body=_body,
    path=st.sampled_from(["/webhooks/dam", "/webhooks/cld", "/webhooks/polled",
                          "/webhooks/nope", "/webhooks/", "/healthz"])
    | st.text(alphabet="/abcdk%.~", max_size=20).map(lambda p: "/" + p.lstrip("/")),
    signature=st.sampled_from(["valid", "missing", "garbage", "empty", "prefix-only"]),
    extra=st.dictionaries(
        st.sampled_from(["Content-Type", "X-Delivery", "X-Cld-Timestamp", "Content-Encoding",
                         "X-Signature", "Transfer-Encoding"]), _header_value, max_size=3),
    method=st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
)
def test_webhook_never_answers_5xx_and_every_refusal_has_a_reason(
    webhook_client: Client, body: bytes, path: str, signature: str, extra: dict[str, str],
    method: str,
) -> None:
    cfg = DIGEST if path == "/webhooks/cld" else WEBHOOK
    headers: dict[str, str] = {"Content-Type": "application/json"}
    timestamp = extra.get("X-Cld-Timestamp", "")
    if signature == "valid":
        headers[cfg.header] = compute_signature(cfg, body, timestamp)
    elif signature == "garbage":
        headers[cfg.header] = "sha256=" + "ab" * 32
    elif signature == "empty":
        headers[cfg.header] = ""
    elif signature == "prefix-only":
        headers[cfg.header] = cfg.prefix
    for name, value in extra.items():
        if name != "Transfer-Encoding":
            headers[name] = value
    response = webhook_client.open(path, method=method, data=body, headers=headers)
    status = response.status_code
    assert status < 500, (status, response.get_data(as_text=True))
    if path == "/healthz" and method == "GET":
        return
    payload = response.get_json(silent=True)
    assert isinstance(payload, dict), response.get_data(as_text=True)
    if status >= 400:
        assert str(payload.get("error") or "").strip(), payload
    else:
        assert payload.get("status") in ("accepted", "duplicate", "ignored"), payload


# ---------------------------------------------------------------- configuration

_LINE = re.compile(r"^\S.*?: \S")


def _assert_config_outcome(outcome: Config | ConfigError) -> None:
    if isinstance(outcome, Config):
        return
    assert outcome.errors, "a ConfigError without errors"
    for line in outcome.errors:
        assert isinstance(line, str) and _LINE.match(line), line


def _parse(data: Any) -> Config | ConfigError:
    try:
        return parse_config(data, env={"DAM_TOKEN": "t", "HOT_FOLDER": "/tmp"}, base_dir="/tmp")
    except ConfigError as exc:
        return exc


DEMO = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


DEMO_PATHS = [p for p in _paths(DEMO) if p]


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=_tree)
def test_random_config_trees_give_a_config_or_a_config_error_with_paths(data: Any) -> None:
    _assert_config_outcome(_parse(data))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(DEMO_PATHS), st.sampled_from(["set", "delete"]), _tree),
        min_size=1, max_size=4,
    )
)
def test_mutated_demo_configs_give_a_config_or_errors_with_paths(
    edits: list[tuple[tuple[Any, ...], str, Any]],
) -> None:
    data = copy.deepcopy(DEMO)
    for path, action, value in edits:
        parent: Any = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            if action == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced this path
    outcome = _parse(data)
    _assert_config_outcome(outcome)


@settings(max_examples=sized(500, 60), deadline=None, derandomize=DERANDOMIZE,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.text(max_size=300) | _tree.map(lambda d: yaml.safe_dump(d))
       | st.sampled_from(["a: &x [*x]", "a: !!python/object:os.system x", "{", "a: b\na: c",
                          "\ufeffpim: {}", "sources: [", "---\n---\n", "\x00"]))
def test_config_files_of_any_text_load_or_fail_with_a_config_error(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        outcome: Config | ConfigError = load_config(path, env={"DAM_TOKEN": "t"})
    except ConfigError as exc:
        outcome = exc
    _assert_config_outcome(outcome)
