"""The `pim` section: PIM limits, locales and channels (credentials come from the environment)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from connector.config.fields import Code, Duration, Float, Int, Locale, StrList
from connector.config.model import PimConfig
from connector.config.schemas.base import StrictSchema

PIM_CREDENTIAL_KEYS = {
    "url": "AKENEO_URL",
    "base_url": "AKENEO_URL",
    "client_id": "AKENEO_CLIENT_ID",
    "client_secret": "AKENEO_CLIENT_SECRET",
    "secret": "AKENEO_CLIENT_SECRET",
    "username": "AKENEO_USERNAME",
    "password": "AKENEO_PASSWORD",
    # the optional second connection, for media uploads (connector.settings)
    "media_client_id": "AKENEO_MEDIA_CLIENT_ID",
    "media_client_secret": "AKENEO_MEDIA_CLIENT_SECRET",
    "media_secret": "AKENEO_MEDIA_CLIENT_SECRET",
    "media_username": "AKENEO_MEDIA_USERNAME",
    "media_password": "AKENEO_MEDIA_PASSWORD",
}


class PimSchema(StrictSchema):
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
    media_max_in_flight = Int(minimum=1)
    requests_per_second = Float(minimum=0, exclusive_minimum=True)
    option_writes_per_second = Float(minimum=0, exclusive_minimum=True)
    structure_cache_ttl = Duration(integer=True, minimum=1)
    token_refresh_margin = Duration(integer=True, minimum=0)
    locales = StrList(Locale())
    channels = StrList(Code())

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> PimConfig:
        return PimConfig(**data)
