"""boto3 clients for the S3 source and the SQS intake, built lazily.

boto3 is the optional extra `[s3]` (`pip install 'dam-akeneo-connector[s3]'`): most
deployments read a REST DAM and need none of its ~80 MB. It is imported here, on first
use, so that a process without it still loads every other source; a missing boto3 is one
clear `MissingExtraError` naming the extra. Credentials come from `${VAR}` secrets in the
config or boto3's standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN,
shared config, instance role); they are handed to boto3 only, never logged or put into a
message (a client's repr names its service and region, nothing else).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from connector.dam.base import DamError
from connector.settings import Secret

INSTALL_HINT = "pip install 'dam-akeneo-connector[s3]'"


class MissingExtraError(DamError):
    """boto3 is not installed in this environment."""


@dataclass(frozen=True)
class AwsSettings:
    """Where and as whom one client connects (no secret in its repr)."""

    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None
    timeout: float = 30.0
    max_retries: int = 5
    addressing_style: str = "auto"

    def __repr__(self) -> str:
        return f"AwsSettings(region={self.region!r}, endpoint_url={self.endpoint_url!r})"


def boto3_module(what: str) -> Any:
    """The boto3 module, or MissingExtraError saying how to install it (`what` names the
    part of the config that needs it)."""
    try:
        return importlib.import_module("boto3")
    except ImportError:
        raise MissingExtraError(
            f"{what} needs boto3, which is not installed: {INSTALL_HINT}"
        ) from None


def client(service: str, settings: AwsSettings, what: str) -> Any:
    """A boto3 client for `service` ("s3", "sqs") with the connector's timeouts/retries."""
    boto3 = boto3_module(what)
    botocore_config = importlib.import_module("botocore.config")
    config = botocore_config.Config(
        connect_timeout=settings.timeout,
        read_timeout=settings.timeout,
        retries={"mode": "standard", "max_attempts": settings.max_retries + 1},
        s3={"addressing_style": settings.addressing_style},
        user_agent_extra="dam-akeneo-connector",
    )
    kwargs: dict[str, Any] = {"config": config}
    if settings.region:
        kwargs["region_name"] = settings.region
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    if settings.access_key_id is not None and settings.secret_access_key is not None:
        kwargs["aws_access_key_id"] = settings.access_key_id.reveal()
        kwargs["aws_secret_access_key"] = settings.secret_access_key.reveal()
        if settings.session_token is not None:
            kwargs["aws_session_token"] = settings.session_token.reveal()
    session = boto3.session.Session()
    return session.client(service, **kwargs)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("NoSuchKey", "AccessDenied"), else ""."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return str(error.get("Code") or "")
    return ""


def http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    return 0
