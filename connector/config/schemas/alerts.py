"""The `alerts` section: webhooks told about failed runs and new dead letters.

A webhook URL is a secret (Slack's carries its token in the path), so it may only come
from the environment, and no message ever echoes it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError, post_load

from connector.config.fields import Duration, PlainField, SecretField, Str, StrList
from connector.config.model import AlertsConfig
from connector.config.schemas.base import StrictSchema
from connector.settings import Secret


class WebhookList(PlainField):
    """One or more `${VAR}` references to http(s) URLs → a tuple of Secrets."""

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> tuple[Secret, ...]:
        items = value if isinstance(value, list | tuple) else [value]
        if not items:
            raise ValidationError("must list at least 1 item(s)")
        out: list[Secret] = []
        errors: dict[int, Any] = {}
        for index, item in enumerate(items):
            try:
                secret = SecretField().deserialize(item)
                parts = urlsplit(secret.reveal())
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise ValidationError("must be an http or https URL")
                out.append(secret)
            except ValidationError as exc:
                errors[index] = exc.messages
        if errors:
            raise ValidationError(errors)
        return tuple(out)


class AlertsSchema(StrictSchema):
    webhooks = WebhookList(required=True)
    debounce_seconds = Duration(minimum=0)
    timeout = Duration(minimum=0, exclusive_minimum=True)
    freshness_seconds = Duration(minimum=0, exclusive_minimum=True, allow_none=True)
    allowed_private_hosts = StrList(
        Str(
            pattern=r"[A-Za-z0-9\[\]:._-]+",
            pattern_message='must be a host name or address such as "alerts.internal" '
                            '(no scheme, no path)',
        )
    )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> AlertsConfig:
        return AlertsConfig(**data)
