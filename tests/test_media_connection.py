"""The optional second Akeneo connection for media uploads (AKENEO_MEDIA_*): read from
the environment all or nothing, its own fleet token, and used by the transform's uploads
only. End to end with a real worker: tests/e2e/test_media_connection_e2e.py."""

from __future__ import annotations

import pytest

from connector.config.model import Config
from connector.pim.budget import MEDIA_CONNECTION
from connector.pim.client import AkeneoClient
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from connector.settings import MEDIA_CONNECTION_ENV, PimCredentials, SettingsError

MAIN = {"AKENEO_URL": "https://pim.example.com/", "AKENEO_CLIENT_ID": "main",
        "AKENEO_CLIENT_SECRET": "s", "AKENEO_USERNAME": "u", "AKENEO_PASSWORD": "p"}
MEDIA = {"AKENEO_MEDIA_CLIENT_ID": "uploads", "AKENEO_MEDIA_CLIENT_SECRET": "s2",
         "AKENEO_MEDIA_USERNAME": "u2", "AKENEO_MEDIA_PASSWORD": "p2"}


def test_media_credentials_are_all_or_nothing() -> None:
    assert PimCredentials.media_from_env(MAIN) is None
    media = PimCredentials.media_from_env({**MAIN, **MEDIA})
    assert media is not None
    assert (media.url, media.client_id, media.username) == (
        "https://pim.example.com", "uploads", "u2")
    assert media.client_secret.reveal() == "s2" and "s2" not in repr(media)
    partial = {**MAIN, "AKENEO_MEDIA_CLIENT_ID": "uploads"}
    with pytest.raises(SettingsError) as raised:
        PimCredentials.media_from_env(partial)
    message = str(raised.value)
    assert "AKENEO_MEDIA_CLIENT_SECRET" in message and "AKENEO_MEDIA_PASSWORD" in message
    assert set(MEDIA) == set(MEDIA_CONNECTION_ENV)


def test_each_connection_keeps_its_own_fleet_token(namespace: str) -> None:
    main = AkeneoClient(PimCredentials.from_env(MAIN), redis=get_redis(), keys=Keys())
    media_credentials = PimCredentials.media_from_env({**MAIN, **MEDIA})
    assert media_credentials is not None
    media = AkeneoClient(media_credentials, redis=get_redis(), keys=Keys(),
                         connection=MEDIA_CONNECTION)
    try:
        assert main.tokens.token_key != media.tokens.token_key
        assert main.tokens.lock_key != media.tokens.lock_key
        assert main.budget.in_flight_key != media.budget.in_flight_key
    finally:
        main.close()
        media.close()


def test_uploads_go_through_the_media_connection_when_one_is_set(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**MAIN, **MEDIA}.items():
        monkeypatch.setenv(name, value)
    config = Config(families=(), sources=())
    services = Services(config, get_redis(), Keys())
    try:
        assert services.client.connection == ""  # type: ignore[attr-defined]
        media = services.media_client
        assert isinstance(media, AkeneoClient) and media.connection == MEDIA_CONNECTION
        assert media.credentials.client_id == "uploads"
    finally:
        services.close()
    for name in MEDIA:
        monkeypatch.delenv(name)
    plain = Services(config, get_redis(), Keys())
    try:
        assert plain.media_client is plain.client
    finally:
        plain.close()
