"""`sources.*.s3`: an S3 bucket (or an S3-compatible store) as the DAM."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from connector.config.fields import Bool, Choice, Duration, Int, SecretField, Str
from connector.config.model import S3SourceConfig
from connector.config.schemas.base import StrictSchema

# S3's own rules: 3-63 characters, lower case letters, digits, dots and hyphens
BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
REGION_PATTERN = r"[a-z0-9][a-z0-9-]*"  # eu-west-1; S3-compatible stores: "auto", "garage"
ENDPOINT_PATTERN = r"https?://[^\s/?#]+/?"


class S3SourceSchema(StrictSchema):
    bucket = Str(
        required=True,
        pattern=BUCKET_PATTERN,
        pattern_message="must be an S3 bucket name (3 to 63 lower-case letters, digits, dots "
        "and hyphens), without s3:// or a path",
    )
    prefix = Str(allow_empty=True)
    region = Str(
        allow_none=True,
        pattern=REGION_PATTERN,
        pattern_message='must be a region name such as "eu-west-1"',
    )
    endpoint_url = Str(
        allow_none=True,
        pattern=ENDPOINT_PATTERN,
        pattern_message="must be an http(s) URL without a path, such as https://minio.example.com",
    )
    addressing_style = Choice(("auto", "path", "virtual"))
    access_key_id = SecretField()
    secret_access_key = SecretField()
    session_token = SecretField()
    page_size = Int(minimum=1, maximum=1000, maximum_reason="S3 lists at most 1000 keys a page")
    metadata = Bool()
    tags = Bool()
    timeout = Duration(minimum=0, exclusive_minimum=True)
    max_retries = Int(minimum=0)

    @validates_schema(skip_on_field_errors=False)
    def _key_pair(self, data: dict[str, Any], **kwargs: Any) -> None:
        has_id, has_secret = "access_key_id" in data, "secret_access_key" in data
        if has_id != has_secret:
            missing = "secret_access_key" if has_id else "access_key_id"
            raise ValidationError(
                {missing: ["required with " + ("access_key_id" if has_id else
                                                "secret_access_key")]}
            )
        if "session_token" in data and not has_id:
            raise ValidationError(
                {"session_token": ["only used with access_key_id and secret_access_key"]}
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> S3SourceConfig:
        if data.get("endpoint_url"):
            data["endpoint_url"] = data["endpoint_url"].rstrip("/")
        return S3SourceConfig(**data)
