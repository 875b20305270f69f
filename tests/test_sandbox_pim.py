"""The sandbox PIM behaves like Akeneo's Asset Manager API, over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from sandbox.pim import PimSandbox, PimSandboxSettings
from sandbox.pim_store import PimStore
from sandbox.server import BackgroundServer
from tests.helpers import wait_for

API = "/api/rest/v1"
CREDS = ("sandbox-client", "sandbox-secret")
PASSWORD_GRANT = {"grant_type": "password", "username": "sandbox", "password": "sandbox-password"}
NDJSON = "application/vnd.akeneo.collection+json"


def value(data: Any, locale: str | None = None, channel: str | None = None) -> list[dict[str, Any]]:
    return [{"locale": locale, "channel": channel, "data": data}]


def messages(body: dict[str, Any]) -> str:
    """The message and every error message of an Akeneo error body, unescaped."""
    return " | ".join([str(body.get("message"))] + [e["message"] for e in body.get("errors", [])])


class Pim:
    """A tiny authenticated client for the tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.token = self.grant()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def grant(self, **body: Any) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/api/oauth/v1/token", auth=CREDS, json={**PASSWORD_GRANT, **body}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url + API + path, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.http.patch(self.url + API + path, json=body, **kw)

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.url + API + path)

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.url}/_sandbox/{path}", json=body)

    def bulk(self, family: str, assets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self.patch(f"/asset-families/{family}/assets", assets)
        assert response.status_code == 200, response.text
        return list(response.json())

    def products(self, lines: list[Any]) -> list[dict[str, Any]]:
        body = "\n".join(json.dumps(line) for line in lines)
        response = self.http.patch(
            f"{self.url}{API}/products", data=body, headers={"Content-Type": NDJSON}
        )
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith(NDJSON)
        return [json.loads(line) for line in response.text.splitlines()]


class SwappableApp:
    """One server per module (a stop costs werkzeug's 0.5 s poll); a fresh sandbox per test."""

    def __init__(self) -> None:
        self.sandbox = PimSandbox()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.sandbox.app(environ, start_response)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SwappableApp, str]]:
    app = SwappableApp()
    background = BackgroundServer(app).start()
    try:
        yield app, background.url
    finally:
        background.stop()


@pytest.fixture
def sandbox(server: tuple[SwappableApp, str]) -> PimSandbox:
    server[0].sandbox = PimSandbox(PimSandboxSettings(seed=7))
    return server[0].sandbox


@pytest.fixture
def pim(sandbox: PimSandbox, server: tuple[SwappableApp, str]) -> Pim:
    return Pim(server[1])


def test_serve_starts_a_background_server() -> None:
    background = PimSandbox().serve("127.0.0.1", 0)
    try:
        assert requests.get(f"{background.url}/_sandbox/counters").json()["requests"] == {}
    finally:
        background.stop()


ATTRIBUTES: list[dict[str, Any]] = [
    {"code": "product_ref", "type": "text"},
    {"code": "short", "type": "text", "max_characters": 5},
    {"code": "email", "type": "text", "validation_rule": "email"},
    {"code": "link", "type": "text", "validation_rule": "url"},
    {"code": "sku", "type": "text", "validation_rule": "regexp", "validation_regexp": "/^[a-z]+$/"},
    {"code": "disclaimer", "type": "text", "value_per_locale": True},
    {"code": "per_channel", "type": "text", "value_per_channel": True},
    {"code": "width", "type": "number"},
    {
        "code": "duration",
        "type": "number",
        "decimals_allowed": True,
        "min_value": "0",
        "max_value": "100",
    },
    {"code": "active", "type": "boolean"},
    {"code": "shot_on", "type": "date"},
    {"code": "size", "type": "single_option"},
    {"code": "main_colors", "type": "multiple_options"},
    {"code": "url", "type": "media_link", "media_type": "image", "prefix": "https://dam/"},
    {
        "code": "file",
        "type": "media_file",
        "media_type": "pdf",
        "allowed_extensions": ["pdf"],
        "max_file_size": "0.001",
    },
    {"code": "brand", "type": "record", "reference_entity": "brands"},
]


@pytest.fixture
def family(sandbox: PimSandbox) -> str:
    sandbox.seed_family(
        "packshots",
        {"labels": {"en_US": "Packshots"}},
        ATTRIBUTES,
        {"size": ["s", "m"], "main_colors": ["red", "blue"]},
    )
    return "packshots"


# --- authentication ------------------------------------------------------------------------


def test_password_grant_returns_akeneo_token_shape(pim: Pim) -> None:
    body = pim.grant()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] is None
    assert body["access_token"] and body["refresh_token"]


@pytest.mark.parametrize(
    ("auth", "body", "message"),
    [
        (("sandbox-client", "wrong"), PASSWORD_GRANT, "does not match any client"),
        (None, PASSWORD_GRANT, "does not match any client"),
        (CREDS, {**PASSWORD_GRANT, "password": "nope"}, "No user found"),
        (CREDS, {"grant_type": "password"}, "missing, empty or invalid"),
        (CREDS, {"grant_type": "client_credentials"}, "Invalid grant_type"),
        (CREDS, {"grant_type": "refresh_token", "refresh_token": "made-up"}, "Refresh token"),
    ],
)
def test_token_errors_are_422(pim: Pim, auth: Any, body: dict[str, Any], message: str) -> None:
    response = requests.post(f"{pim.url}/api/oauth/v1/token", auth=auth, json=body)
    assert response.status_code == 422
    assert response.json()["code"] == 422
    assert message in response.json()["message"]


def test_token_endpoint_accepts_form_encoding_and_rejects_other_types(pim: Pim) -> None:
    ok = requests.post(f"{pim.url}/api/oauth/v1/token", auth=CREDS, data=PASSWORD_GRANT)
    assert ok.status_code == 200
    bad = requests.post(
        f"{pim.url}/api/oauth/v1/token",
        auth=CREDS,
        data="x",
        headers={"Content-Type": "text/plain"},
    )
    assert bad.status_code == 415


def test_refresh_rotates_the_refresh_token(pim: Pim) -> None:
    first = pim.grant()
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    url = f"{pim.url}/api/oauth/v1/token"
    renewed = requests.post(url, auth=CREDS, json=refresh)
    assert renewed.status_code == 200
    assert renewed.json()["access_token"] != first["access_token"]
    again = requests.post(url, auth=CREDS, json=refresh)
    assert again.status_code == 422  # a refresh token is used once
    counters = pim.admin("GET", "counters").json()
    assert counters["token_refreshes"] == 1
    assert counters["token_grants"] == 2


def test_missing_invalid_expired_and_revoked_bearers_get_401(pim: Pim, family: str) -> None:
    url = f"{pim.url}{API}/asset-families"
    missing = requests.get(url)
    assert (missing.status_code, missing.json()) == (
        401,
        {"code": 401, "message": "Authentication is required"},
    )
    invalid = requests.get(url, headers={"Authorization": "Bearer nonsense"})
    assert invalid.json() == {"code": 401, "message": "The access token provided is invalid."}
    assert pim.get("/asset-families").status_code == 200

    refresh_token = pim.grant()["refresh_token"]
    assert pim.admin("POST", "tokens/expire").json()["expired"] >= 1
    expired = pim.get("/asset-families")
    assert expired.json() == {"code": 401, "message": "The access token provided has expired."}
    renewed = requests.post(
        f"{pim.url}/api/oauth/v1/token",
        auth=CREDS,
        json={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )
    assert renewed.status_code == 200
    headers = {"Authorization": f"Bearer {renewed.json()['access_token']}"}
    assert requests.get(url, headers=headers).status_code == 200

    pim.admin("POST", "tokens/revoke")
    revoked = requests.get(url, headers=headers)
    assert revoked.json()["message"] == "The access token provided is invalid."


def test_tokens_expire_after_token_ttl(sandbox: PimSandbox, pim: Pim) -> None:
    sandbox.update_settings(token_ttl=0.3)
    short = pim.grant()
    assert short["expires_in"] == 1
    headers = {"Authorization": f"Bearer {short['access_token']}"}
    url = f"{pim.url}{API}/asset-families"
    assert requests.get(url, headers=headers).status_code == 200
    wait_for(lambda: requests.get(url, headers=headers).status_code == 401, timeout=5)


def test_changed_credentials_refuse_the_old_secret(pim: Pim) -> None:
    assert pim.admin("POST", "credentials", {"secret": "rotated"}).status_code == 200
    url = f"{pim.url}/api/oauth/v1/token"
    assert requests.post(url, auth=CREDS, json=PASSWORD_GRANT).status_code == 422
    assert (
        requests.post(url, auth=("sandbox-client", "rotated"), json=PASSWORD_GRANT).status_code
        == 200
    )
    assert pim.admin("POST", "credentials", {"nope": 1}).status_code == 400


# --- asset families, attributes, options ---------------------------------------------------


def test_family_create_update_and_default_attributes(pim: Pim) -> None:
    created = pim.patch("/asset-families/videos", {"code": "videos", "labels": {"en_US": "Videos"}})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"{API}/asset-families/videos")
    assert pim.patch("/asset-families/videos", {"labels": {"fr_FR": "Vidéos"}}).status_code == 204
    family = pim.get("/asset-families/videos").json()
    assert family["labels"] == {"fr_FR": "Vidéos"}
    assert family["attribute_as_main_media"] == "media"  # Akeneo creates `label` and `media`
    codes = [a["code"] for a in pim.get("/asset-families/videos/attributes").json()]
    assert codes == ["label", "media"]
    assert pim.get("/asset-families/nope").status_code == 404


def test_family_list_paginates_with_search_after(sandbox: PimSandbox, pim: Pim) -> None:
    sandbox.update_settings(page_size=2)
    for code in ("a_fam", "b_fam", "c_fam"):
        assert pim.patch(f"/asset-families/{code}", {}).status_code == 201
    first = pim.get("/asset-families").json()
    assert [i["code"] for i in first["_embedded"]["items"]] == ["a_fam", "b_fam"]
    assert first["_embedded"]["items"][0]["_links"]["self"]["href"].endswith("/a_fam")
    assert "first" in first["_links"] and "self" in first["_links"]
    second = requests.get(first["_links"]["next"]["href"], headers=pim.http.headers).json()
    assert [i["code"] for i in second["_embedded"]["items"]] == ["c_fam"]
    assert "next" not in second["_links"]  # only when the page is full


@pytest.mark.parametrize(
    ("code", "body", "needle"),
    [
        ("bad-code", {}, "letters, numbers and underscores"),
        ("fam", {"code": "other"}, "must be the same"),
        ("fam", {"attribute_as_main_media": "nope"}, '"nope" does not exist'),
        ("fam", {"attribute_as_main_media": "label"}, "cannot be the main media"),
        ("fam", {"labels": {"xx_XX": "?"}}, "not activated"),
        ("fam", {"unknown": 1}, 'Property "unknown" does not exist'),
        (
            "fam",
            {
                "product_link_rules": [
                    {
                        "product_selections": [
                            {"field": "sku", "operator": "EQUALS", "value": "x"}
                        ],
                        "assign_assets_to": [{"attribute": "assets", "mode": "add"}],
                    }
                ]
                * 3
            },
            "more than 2 product link rules",
        ),
        (
            "fam",
            {
                "product_link_rules": [
                    {
                        "product_selections": [
                            {"field": "sku", "operator": "EQUALS", "value": "{{product_ref}}"}
                        ],
                        "assign_assets_to": [{"attribute": "assets", "mode": "add"}],
                    }
                ]
            },
            '"product_ref" used in',
        ),
        (
            "fam",
            {
                "product_link_rules": [
                    {
                        "product_selections": [
                            {"field": "sku", "operator": "EQUALS", "value": "x"}
                        ],
                        "assign_assets_to": [{"attribute": "assets", "mode": "append"}],
                    }
                ]
            },
            '"add" or "replace"',
        ),
    ],
)
def test_family_validation_is_422(pim: Pim, code: str, body: dict[str, Any], needle: str) -> None:
    response = pim.patch(f"/asset-families/{code}", body)
    assert response.status_code == 422, response.text
    assert needle in messages(response.json())
    assert pim.get(f"/asset-families/{code}").status_code == 404  # nothing half-created


def test_family_json_and_content_type_errors(pim: Pim) -> None:
    bad_json = pim.http.patch(
        f"{pim.url}{API}/asset-families/fam", data="{", headers={"Content-Type": "application/json"}
    )
    assert (bad_json.status_code, bad_json.json()["code"]) == (400, 400)
    wrong_type = pim.http.patch(
        f"{pim.url}{API}/asset-families/fam", data="{}", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert "application/json" in wrong_type.json()["message"]


def test_attribute_create_update_and_immutables(pim: Pim) -> None:
    pim.patch("/asset-families/fam", {})
    path = "/asset-families/fam/attributes/title"
    created = pim.patch(path, {"code": "title", "type": "text", "value_per_locale": True})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(path)
    assert pim.patch(path, {"labels": {"en_US": "Title"}, "max_characters": 40}).status_code == 204
    title = pim.get(path).json()
    assert (title["labels"], title["max_characters"], title["type"]) == (
        {"en_US": "Title"},
        40,
        "text",
    )
    assert title["validation_rule"] == "none" and title["is_textarea"] is False
    for change, needle in [
        ({"type": "number"}, '"type"'),
        ({"value_per_locale": False}, '"value_per_locale"'),
        ({"decimals_allowed": True}, "not supported by attributes of type"),
        ({"max_characters": 0}, "positive integer"),
        ({"validation_rule": "regexp"}, "regular expression is required"),
        ({"validation_rule": "regexp", "validation_regexp": "/[/"}, "Invalid regular expression"),
        ({"is_rich_text_editor": True}, "is_textarea"),
    ]:
        response = pim.patch(path, change)
        assert response.status_code == 422, change
        assert needle in messages(response.json()), change
    assert pim.get(path).json()["max_characters"] == 40  # failed writes change nothing
    assert pim.get("/asset-families/fam/attributes/nope").status_code == 404
    assert pim.patch("/asset-families/nofam/attributes/x", {"type": "text"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"type": "media_link"}, "media type is required"),
        ({"type": "media_link", "media_type": "audio"}, "not allowed"),
        ({"type": "media_file", "media_type": "youtube"}, "not allowed"),
        ({"type": "media_file", "media_type": "pdf", "allowed_extensions": [".pdf"]}, "extensions"),
        ({"type": "media_file", "media_type": "pdf", "max_file_size": "big"}, "megabytes"),
        ({"type": "number", "min_value": "10", "max_value": "1"}, "lower than the maximum"),
        ({"type": "number", "min_value": 1}, "as a string"),
        ({"type": "number", "prefix": "x"}, "not supported"),
        ({"type": "asset_collection"}, "unknown"),
        ({"type": "record"}, "reference entity"),
    ],
)
def test_attribute_type_specific_validation(pim: Pim, body: dict[str, Any], needle: str) -> None:
    pim.patch("/asset-families/fam", {})
    response = pim.patch("/asset-families/fam/attributes/attr", body)
    assert response.status_code == 422
    assert needle in messages(response.json())


def test_attribute_limit_of_100_per_family(sandbox: PimSandbox, pim: Pim) -> None:
    sandbox.update_settings(default_attributes=False)
    pim.patch("/asset-families/fam", {})
    for i in range(100):
        sandbox.store.upsert_attribute("fam", f"a{i}", {"type": "boolean"})
    response = pim.patch("/asset-families/fam/attributes/one_more", {"type": "boolean"})
    assert response.status_code == 422
    assert "more than 100" in messages(response.json())


def test_options_create_update_list_and_count(pim: Pim, family: str) -> None:
    path = f"/asset-families/{family}/attributes/main_colors/options"
    created = pim.patch(f"{path}/green", {"code": "green", "labels": {"en_US": "Green"}})
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"{path}/green")
    assert pim.patch(f"{path}/green", {"labels": {"fr_FR": "Vert"}}).status_code == 204
    assert pim.get(f"{path}/green").json() == {"code": "green", "labels": {"fr_FR": "Vert"}}
    assert [o["code"] for o in pim.get(path).json()] == ["red", "blue", "green"]
    assert pim.get(f"{path}/nope").status_code == 404
    assert pim.patch(f"{path}/bad-code", {}).status_code == 422
    not_options = pim.patch(f"/asset-families/{family}/attributes/width/options/x", {})
    assert not_options.status_code == 422
    assert pim.admin("GET", "counters").json()["option_writes"] == 4


# --- assets --------------------------------------------------------------------------------


def test_bulk_patch_answers_one_line_per_asset(pim: Pim, family: str) -> None:
    lines = pim.bulk(
        family,
        [
            {"code": "a1", "values": {"product_ref": value("cap")}},
            {"code": "a2", "values": {"main_colors": value(["red", "purple"])}},
            {"code": "a3", "values": {"nope": value("x")}},
        ],
    )
    assert lines[0] == {"code": "a1", "status_code": 201}
    assert lines[1]["code"] == "a2" and lines[1]["status_code"] == 422
    assert lines[1]["errors"] == [
        {
            "property": "values.main_colors",
            "message": 'The option(s) "purple" do not exist for the attribute "main_colors".',
        }
    ]
    assert lines[1]["message"]
    assert lines[2]["errors"][0]["property"] == "values.nope"
    again = pim.bulk(family, [{"code": "a1", "values": {"width": value("12")}}])
    assert again == [{"code": "a1", "status_code": 204}]
    assert [a["code"] for a in pim.admin("GET", f"assets/{family}").json()] == ["a1"]


def test_bulk_patch_limits_and_request_errors(pim: Pim, family: str) -> None:
    hundred = [{"code": f"c{i}", "values": {}} for i in range(100)]
    assert len(pim.bulk(family, hundred)) == 100
    too_many = pim.patch(f"/asset-families/{family}/assets", [*hundred, {"code": "c100"}])
    assert too_many.status_code == 413
    assert too_many.json() == {
        "code": 413,
        "message": "Too many resources to process, 100 is the maximum allowed.",
    }
    url = f"{pim.url}{API}/asset-families/{family}/assets"
    bad_json = pim.http.patch(url, data="[{", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    collection = pim.http.patch(url, data="[]", headers={"Content-Type": NDJSON})
    assert collection.status_code == 415
    assert pim.patch("/asset-families/nofam/assets", []).status_code == 404
    counters = pim.admin("GET", "counters").json()
    assert counters["max_assets_per_bulk"] == 101
    assert counters["bulk_asset_sizes"]["100"] == 1


def test_patch_merges_values_and_null_erases(pim: Pim, family: str) -> None:
    path = f"/asset-families/{family}/assets/a1"
    first = {
        "code": "a1",
        "values": {
            "disclaimer": value("Photo", "en_US") + value("Non contractuelle", "fr_FR"),
            "width": value("100"),
        },
    }
    created = pim.patch(path, first)
    assert created.status_code == 201
    assert created.headers["Location"].endswith(path)
    before = pim.get(path).json()
    update = {
        "code": "a1",
        "values": {"disclaimer": value(None, "fr_FR"), "product_ref": value("cap")},
    }
    assert pim.patch(path, update).status_code == 204
    after = pim.get(path).json()
    assert after["values"]["disclaimer"] == value("Photo", "en_US")
    assert after["values"]["width"] == value("100")
    assert after["values"]["product_ref"] == value("cap")
    assert after["created"] == before["created"]
    assert after["created"].endswith("+00:00")
    mismatch = pim.patch(path, {"code": "a2"})
    assert mismatch.status_code == 422


def test_get_and_delete_assets(pim: Pim, family: str) -> None:
    pim.bulk(family, [{"code": "gone", "values": {}}])
    assert pim.get(f"/asset-families/{family}/assets/gone").status_code == 200
    assert pim.delete(f"/asset-families/{family}/assets/gone").status_code == 204
    assert pim.delete(f"/asset-families/{family}/assets/gone").status_code == 404
    missing = pim.get(f"/asset-families/{family}/assets/gone")
    assert missing.status_code == 404 and missing.json()["code"] == 404
    assert pim.bulk(family, [{"code": "gone", "values": {}}])[0]["status_code"] == 201


VALUE_CASES = [
    ("product_ref", value("abc"), True),
    ("product_ref", value(12), False),
    ("short", value("12345"), True),
    ("short", value("123456"), False),
    ("email", value("a@b.io"), True),
    ("email", value("not-an-email"), False),
    ("link", value("https://x.io/a"), True),
    ("link", value("x.io"), False),
    ("sku", value("abc"), True),
    ("sku", value("ABC1"), False),
    ("width", value("12"), True),
    ("width", value("12.5"), False),
    ("width", value(12), False),
    ("duration", value("12.5"), True),
    ("duration", value("-1"), False),
    ("duration", value("101"), False),
    ("duration", value("1e3"), False),
    ("active", value(True), True),
    ("active", value("true"), False),
    ("shot_on", value("2026-11-01"), True),
    ("shot_on", value("2026-11-01T10:00:00Z"), True),
    ("shot_on", value("01/11/2026"), False),
    ("size", value("s"), True),
    ("size", value("xl"), False),
    ("size", value(["s"]), False),
    ("main_colors", value(["red", "blue"]), True),
    ("main_colors", value("red"), False),
    ("main_colors", value(["red", "nope"]), False),
    ("url", value("pic.png"), True),
    ("url", value(["pic.png"]), False),
    ("file", value("unknown/media/code.pdf"), False),
    ("brand", value("acme"), True),
    ("brand", value("acme corp"), False),
    ("disclaimer", value("x", "en_US"), True),
    ("disclaimer", value("x"), False),
    ("disclaimer", value("x", "xx_XX"), False),
    ("product_ref", value("x", "en_US"), False),
    ("per_channel", value("x", None, "ecommerce"), True),
    ("per_channel", value("x"), False),
    ("per_channel", value("x", None, "print"), False),
    ("product_ref", value("x", None, "ecommerce"), False),
    ("product_ref", [{"locale": None, "channel": None, "data": "x", "linked_data": {}}], False),
]


@pytest.mark.parametrize(("attribute", "values", "ok"), VALUE_CASES)
def test_values_are_validated_by_attribute_type(
    pim: Pim, family: str, attribute: str, values: list[dict[str, Any]], ok: bool
) -> None:
    [line] = pim.bulk(family, [{"code": "v1", "values": {attribute: values}}])
    assert line["status_code"] == (201 if ok else 422), line
    if not ok:
        assert line["errors"][0]["property"] == f"values.{attribute}"
        assert pim.admin("GET", f"assets/{family}").json() == []


def test_activated_locales_and_channels_are_settings(
    sandbox: PimSandbox, pim: Pim, family: str
) -> None:
    sandbox.update_settings(locales=["en_US", "it_IT"], channels=["print"])
    ok = {"disclaimer": value("x", "it_IT"), "per_channel": value("x", None, "print")}
    assert pim.bulk(family, [{"code": "v1", "values": ok}])[0]["status_code"] == 201
    bad = {"disclaimer": value("x", "fr_FR")}
    assert pim.bulk(family, [{"code": "v2", "values": bad}])[0]["status_code"] == 422


@pytest.mark.parametrize(
    ("asset", "needle"),
    [
        ({"code": "has-dash"}, "letters, numbers and underscores"),
        ({"code": "x" * 256}, "too long"),
        ({"code": ""}, "non-empty"),
        ({"values": {}}, "non-empty"),
        ({"code": "ok", "created": "2026-01-01T00:00:00+00:00"}, 'Property "created"'),
        ({"code": "ok", "asset_family_code": "videos"}, "asset family code"),
        ({"code": "ok", "values": []}, "An object is expected"),
        ("not an object", "JSON object"),
    ],
)
def test_asset_code_and_shape_rules(pim: Pim, family: str, asset: Any, needle: str) -> None:
    [line] = pim.bulk(family, [asset])
    assert line["status_code"] == 422
    assert needle in messages(line)


def test_asset_codes_are_unique_across_families(pim: Pim, family: str) -> None:
    pim.patch("/asset-families/videos", {})
    assert pim.bulk(family, [{"code": "shared", "values": {}}])[0]["status_code"] == 201
    [line] = pim.bulk("videos", [{"code": "shared", "values": {}}])
    assert line["status_code"] == 422
    assert 'already used in the asset family "packshots"' in line["errors"][0]["message"]
    pim.delete(f"/asset-families/{family}/assets/shared")
    assert pim.bulk("videos", [{"code": "shared", "values": {}}])[0]["status_code"] == 201


def test_asset_list_pagination_and_updated_search(
    sandbox: PimSandbox, pim: Pim, family: str
) -> None:
    sandbox.update_settings(page_size=2)
    pim.bulk(family, [{"code": f"a{i}", "values": {}} for i in range(3)])
    path = f"/asset-families/{family}/assets"
    first = pim.get(path).json()
    assert [i["code"] for i in first["_embedded"]["items"]] == ["a0", "a1"]
    second = requests.get(first["_links"]["next"]["href"], headers=pim.http.headers).json()
    assert [i["code"] for i in second["_embedded"]["items"]] == ["a2"]
    assert "next" not in second["_links"]

    stamp = pim.get(f"{path}/a0").json()["updated"]
    mark = time.time()  # same clock as the sandbox: the write below is later than this
    changed_after = datetime.fromtimestamp(mark, UTC).isoformat().replace("+00:00", "Z")
    pim.bulk(family, [{"code": "a1", "values": {"width": value("5")}}])
    search = json.dumps({"updated": [{"operator": ">", "value": changed_after}]})
    found = pim.get(path, params={"search": search}).json()
    assert [i["code"] for i in found["_embedded"]["items"]] == ["a1"]
    assert "search=" in found["_links"]["first"]["href"]
    assert stamp.endswith("+00:00")
    by_code = json.dumps({"code": [{"operator": "IN", "value": ["a2", "zz"]}]})
    assert [
        i["code"] for i in pim.get(path, params={"search": by_code}).json()["_embedded"]["items"]
    ] == ["a2"]
    assert pim.get(path, params={"search": "{"}).status_code == 400
    assert (
        pim.get(path, params={"search": json.dumps({"complete": [{"operator": "="}]})}).status_code
        == 422
    )


# --- media files ---------------------------------------------------------------------------


def test_media_upload_download_and_media_file_values(pim: Pim, family: str) -> None:
    upload = pim.http.post(
        f"{pim.url}{API}/asset-media-files",
        files={"file": ("guide.pdf", b"%PDF-1.4 tiny", "application/pdf")},
    )
    assert upload.status_code == 201
    code = upload.headers["asset-media-file-code"]  # requests reads headers case-insensitively
    assert "Asset-media-file-code" in upload.raw.headers
    assert code.endswith("_guide.pdf")
    assert upload.headers["Location"].endswith(f"{API}/asset-media-files/{code}")
    download = pim.http.get(upload.headers["Location"])
    assert download.status_code == 200
    assert download.content == b"%PDF-1.4 tiny"
    assert download.headers["Content-Type"] == "application/pdf"
    assert pim.get("/asset-media-files/0/0/0/0/nope.pdf").status_code == 404

    [line] = pim.bulk(family, [{"code": "guide", "values": {"file": value(code)}}])
    assert line["status_code"] == 201
    stored = pim.get(f"/asset-families/{family}/assets/guide").json()["values"]["file"][0]
    assert stored["_links"]["download"]["href"].endswith(code)

    png = pim.http.post(f"{pim.url}{API}/asset-media-files", files={"file": ("x.png", b"png")})
    [wrong_ext] = pim.bulk(
        family, [{"code": "g2", "values": {"file": value(png.headers["Asset-media-file-code"])}}]
    )
    assert "extension" in wrong_ext["errors"][0]["message"]
    big = pim.http.post(
        f"{pim.url}{API}/asset-media-files", files={"file": ("big.pdf", b"x" * 2000)}
    )
    [too_big] = pim.bulk(
        family, [{"code": "g3", "values": {"file": value(big.headers["Asset-media-file-code"])}}]
    )
    assert "too large" in too_big["errors"][0]["message"]

    not_multipart = pim.http.post(f"{pim.url}{API}/asset-media-files", json={})
    assert not_multipart.status_code == 415
    no_file = pim.http.post(f"{pim.url}{API}/asset-media-files", files={"other": ("a.pdf", b"x")})
    assert no_file.status_code == 422


def test_media_link_values_carry_linked_data(pim: Pim, family: str) -> None:
    pim.bulk(family, [{"code": "l1", "values": {"url": value("pic.png")}}])
    stored = pim.get(f"/asset-families/{family}/assets/l1").json()["values"]["url"][0]
    assert stored["linked_data"]["full_url"] == "https://dam/pic.png"


# --- products ------------------------------------------------------------------------------


def test_products_ndjson_create_update_and_errors(pim: Pim) -> None:
    lines = pim.products(
        [
            {
                "identifier": "cap",
                "values": {"assets": [{"locale": None, "scope": None, "data": ["a", "b"]}]},
            },
            {
                "identifier": "mug",
                "values": {"assets": [{"locale": None, "channel": None, "data": []}]},
            },
            {"values": {}},
        ]
    )
    assert lines[0] == {"line": 1, "identifier": "cap", "status_code": 201}
    assert lines[1]["status_code"] == 422 and '"scope", not "channel"' in lines[1]["message"]
    assert lines[2]["line"] == 3 and lines[2]["status_code"] == 422
    replaced = pim.products(
        [
            {
                "identifier": "cap",
                "values": {"assets": [{"locale": None, "scope": None, "data": ["c"]}]},
            }
        ]
    )
    assert replaced == [{"line": 1, "identifier": "cap", "status_code": 204}]
    cap = pim.get("/products/cap").json()
    assert cap["values"]["assets"] == [{"locale": None, "scope": None, "data": ["c"]}]  # replaced
    assert pim.get("/products/nope").status_code == 404

    url = f"{pim.url}{API}/products"
    wrong = pim.http.patch(
        url, data='{"identifier":"x"}', headers={"Content-Type": "application/json"}
    )
    assert wrong.status_code == 415
    body = "\n".join(json.dumps({"identifier": f"p{i}"}) for i in range(101))
    too_many = pim.http.patch(url, data=body, headers={"Content-Type": NDJSON})
    assert too_many.status_code == 413


def test_product_search_by_identifiers(pim: Pim) -> None:
    pim.products([{"identifier": i} for i in ("a", "b", "c")])
    search = json.dumps({"identifier": [{"operator": "IN", "value": ["a", "c", "zz"]}]})
    found = pim.get("/products", params={"search": search}).json()
    assert [p["identifier"] for p in found["_embedded"]["items"]] == ["a", "c"]
    assert found["current_page"] == 1


def test_product_link_rules_assign_existing_products_only(pim: Pim, family: str) -> None:
    rule = {
        "product_selections": [{"field": "sku", "operator": "EQUALS", "value": "{{product_ref}}"}],
        "assign_assets_to": [{"attribute": "assets", "mode": "add"}],
    }
    assert pim.patch(f"/asset-families/{family}", {"product_link_rules": [rule]}).status_code == 204
    pim.products([{"identifier": "cap"}])
    pim.bulk(
        family,
        [
            {"code": "p1", "values": {"product_ref": value("cap")}},
            {"code": "p2", "values": {"product_ref": value("cap")}},
            {"code": "p3", "values": {"product_ref": value("ghost")}},
        ],
    )
    assert pim.get("/products/cap").json()["values"]["assets"][0]["data"] == ["p1", "p2"]
    assert pim.get("/products/ghost").status_code == 404
    rule["assign_assets_to"] = [{"attribute": "assets", "mode": "replace"}]
    pim.patch(f"/asset-families/{family}", {"product_link_rules": [rule]})
    pim.bulk(family, [{"code": "p3", "values": {"product_ref": value("cap")}}])
    assert pim.get("/products/cap").json()["values"]["assets"][0]["data"] == ["p3"]


# --- knobs: concurrency, Retry-After, injected faults -----------------------------------------


def test_concurrency_limit_gives_429_and_flags_early_requests(
    sandbox: PimSandbox, pim: Pim
) -> None:
    sandbox.update_settings(max_concurrency=2, latency=0.4, retry_after=5)
    barrier = threading.Barrier(4)
    statuses: list[requests.Response] = []

    def call() -> None:
        barrier.wait()
        statuses.append(pim.get("/asset-families"))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(r.status_code for r in statuses)
    assert codes == [200, 200, 429, 429]
    rejected = next(r for r in statuses if r.status_code == 429)
    assert rejected.headers["Retry-After"] == "5"
    assert rejected.json()["code"] == 429

    sandbox.update_settings(latency=0.0)
    assert pim.get("/asset-families").status_code == 200  # sent before Retry-After elapsed
    log = pim.admin("GET", "log").json()
    assert log[-1]["early"] is True and log[-1]["client"] == "sandbox-client"
    assert log[-1]["template"] == f"{API}/asset-families"
    counters = pim.admin("GET", "counters").json()
    assert counters["concurrency_429"] == 2
    # a request of the burst that arrived after the first 429 is early too: count them all
    assert counters["early_requests"] == sum(r["early"] for r in log) >= 1
    # rejected calls end at once, so the 4th may arrive after one of them finished
    assert counters["max_concurrent_by_client"]["sandbox-client"] >= 3

    sandbox.update_settings(reject_early=True)
    assert pim.get("/asset-families").status_code == 429


def test_requests_after_retry_after_are_not_early(sandbox: PimSandbox, pim: Pim) -> None:
    sandbox.update_settings(error_rate_429=1.0, retry_after=0)
    assert pim.get("/asset-families").status_code == 429
    sandbox.update_settings(error_rate_429=0.0)
    assert pim.get("/asset-families").status_code == 200
    assert pim.admin("GET", "log").json()[-1]["early"] is False


def test_injected_errors_follow_their_rates(sandbox: PimSandbox, pim: Pim) -> None:
    sandbox.update_settings(error_rate_5xx=1.0)
    response = pim.get("/asset-families")
    assert response.status_code in (500, 502, 503)
    sandbox.update_settings(error_rate_5xx=0.0, error_rate_429=1.0, retry_after=3)
    limited = pim.get("/asset-families")
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "3")
    sandbox.update_settings(error_rate_429=0.3, retry_after=0, seed=11)
    statuses = [pim.get("/asset-families").status_code for _ in range(60)]
    share = statuses.count(429) / len(statuses)
    assert 0.1 < share < 0.55
    counters = pim.admin("GET", "counters").json()
    assert counters["injected_5xx"] == 1
    assert counters["injected_429"] == 1 + statuses.count(429)
    # the token endpoint is never faulted: clients can always authenticate
    assert pim.grant()["access_token"]


def test_slow_responses_time_out_the_client_after_the_write(
    sandbox: PimSandbox, pim: Pim, family: str
) -> None:
    sandbox.update_settings(slow_rate=1.0, slow_seconds=0.5)
    with pytest.raises(requests.Timeout):
        pim.patch(
            f"/asset-families/{family}/assets", [{"code": "late", "values": {}}], timeout=0.15
        )
    wait_for(lambda: sandbox.dump_assets(family), timeout=5)
    assert sandbox.dump_assets(family)[0]["code"] == "late"
    wait_for(lambda: pim.admin("GET", "counters").json()["slow_responses"] == 1, timeout=5)


# --- admin ---------------------------------------------------------------------------------


def test_admin_log_counters_settings_and_reset(sandbox: PimSandbox, pim: Pim, family: str) -> None:
    pim.bulk(family, [{"code": "x1", "values": {}}, {"code": "x2", "values": {}}])
    record = pim.admin("GET", "log").json()[-1]
    assert {k: record[k] for k in ("method", "status", "client", "items", "early")} == {
        "method": "PATCH",
        "status": 200,
        "client": "sandbox-client",
        "items": 2,
        "early": False,
    }
    assert record["path"] == f"{API}/asset-families/{family}/assets"
    assert pim.admin("GET", "log?limit=1").json() == [record]
    counters = pim.admin("GET", "counters").json()
    key = f"PATCH {API}/asset-families/{{asset_family_code}}/assets 200"
    assert counters["requests"][key] == 1
    assert counters["bulk_asset_requests"] == 1 and counters["bulk_assets_total"] == 2
    assert counters["assets_stored"] == 2
    assert counters["sandbox_errors"] == 0

    answer = pim.admin("POST", "settings", {"latency": 0.01, "locales": ["en_US"]}).json()
    assert answer["latency"] == 0.01 and answer["secret"] == "********"
    assert sandbox.settings.locales == ["en_US"]
    assert pim.admin("POST", "settings", {"no_such_knob": 1}).status_code == 400
    wrong_type = pim.admin("POST", "settings", {"latency": "0.1"})
    assert wrong_type.status_code == 400 and "latency" in wrong_type.json()["message"]
    assert sandbox.settings.latency == 0.01
    assert pim.admin("GET", "assets/nofam").status_code == 404

    assert pim.admin("POST", "reset").status_code == 200
    assert pim.admin("GET", "counters").json()["requests"] == {}
    assert pim.get(f"/asset-families/{family}").status_code == 404  # token survived the reset
    assert pim.admin("GET", "nope").status_code == 404


def test_admin_updated_gives_each_asset_its_last_write_time(
    sandbox: PimSandbox, pim: Pim, family: str
) -> None:
    """Benchmarks join these write times with the moment they changed the DAM (freshness)."""
    before = time.time()
    pim.bulk(family, [{"code": "x1", "values": {}}, {"code": "x2", "values": {}}])
    after = time.time()
    stamps = pim.admin("GET", f"updated/{family}").json()
    assert set(stamps) == {"x1", "x2"}
    assert all(isinstance(t, float) and before <= t <= after for t in stamps.values())
    first = stamps["x1"]
    pim.bulk(family, [{"code": "x1", "values": {}}])  # nothing changed: the time stays
    assert pim.admin("GET", f"updated/{family}").json()["x1"] == first
    pim.bulk(family, [{"code": "x1", "values": {"product_ref": value("p-1")}}])
    assert pim.admin("GET", f"updated/{family}").json()["x1"] > first
    assert pim.admin("GET", "updated/nofam").status_code == 404


def test_unknown_routes_and_methods(pim: Pim) -> None:
    assert pim.get("/nothing-here").status_code == 404
    assert pim.http.put(f"{pim.url}{API}/asset-families").status_code == 405


def test_bulk_of_100_assets_is_cheap_with_many_stored() -> None:
    store = PimStore()
    store.upsert_family("packshots", {})
    store.upsert_attribute("packshots", "product_ref", {"type": "text"})
    store.upsert_attribute("packshots", "colors", {"type": "multiple_options"})
    store.upsert_option("packshots", "colors", "red", {})

    def asset(i: int) -> dict[str, Any]:
        return {
            "code": f"asset_{i:06d}",
            "values": {
                "product_ref": value(f"sku{i}"),
                "colors": value(["red"]),
                "label": value(f"Label {i}", "en_US") + value(f"Libellé {i}", "fr_FR"),
            },
        }

    for i in range(20_000):
        store.upsert_asset("packshots", asset(i))
    batch = [asset(i) for i in range(50_000, 50_100)]
    started = time.process_time()
    for item in batch:
        store.upsert_asset("packshots", item)
    spent = time.process_time() - started
    assert spent < 0.05, f"a 100-asset bulk took {spent * 1000:.1f} ms of CPU"
    page = store.list_assets("packshots", "asset_019950", 100)
    assert len(page.items) == 100 and page.next_cursor == page.items[-1]["code"]
    assert page.items[0]["code"] == "asset_019951"


def test_a_sandbox_bug_is_a_counted_json_500(
    sandbox: PimSandbox, pim: Pim, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(sandbox.store, "list_families", broken)
    response = pim.get("/asset-families")
    assert response.status_code == 500
    assert "Sandbox bug" in response.json()["message"]
    assert pim.admin("GET", "counters").json()["sandbox_errors"] == 1
