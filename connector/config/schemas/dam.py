"""A source's DAM side: the REST API (endpoints, auth, pagination), a hot folder, media."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, post_load, validates_schema

from connector.config.fields import (
    HEADER_PATTERN,
    PROPERTY_MESSAGE,
    PROPERTY_PATTERN,
    ByteSize,
    Choice,
    Duration,
    Float,
    Int,
    Nested,
    PropertyPath,
    SecretField,
    Str,
    StrDict,
    StrList,
)
from connector.config.model import (
    AuthConfig,
    FolderSourceConfig,
    ListEndpointConfig,
    MediaConfig,
    PaginationConfig,
    RestSourceConfig,
)
from connector.config.schemas.base import StrictSchema, check_type_keys

AUTH_TYPES = ("bearer", "basic", "api_key", "oauth2_client_credentials", "none")
AUTH_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "bearer": ({"token"}, set()),
    "basic": ({"username", "password"}, set()),
    "api_key": ({"value"}, {"header"}),
    "oauth2_client_credentials": ({"token_url", "client_id", "client_secret"}, {"scope"}),
}


class AuthSchema(StrictSchema):
    type = Choice(AUTH_TYPES)
    token = SecretField()
    username = Str()
    password = SecretField()
    header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")
    value = SecretField()
    token_url = Str(
        pattern=r"(https?://\S+|/\S*)",
        pattern_message="must be an http(s) URL, or a path starting with / (on base_url)",
    )
    client_id = Str()
    client_secret = SecretField()
    scope = Str()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, "type", "none", AUTH_KEYS, "auth type")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> AuthConfig:
        return AuthConfig(**data)


PAGINATION_TYPES = ("page_number", "offset", "cursor", "header_cursor", "link_header", "none")
PAGINATION_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "page_number": (set(), {"page_size", "size_param", "page_param", "start_page"}),
    "offset": (set(), {"page_size", "size_param", "offset_param"}),
    "cursor": (set(), {"page_size", "size_param", "cursor_param", "cursor_path"}),
    "header_cursor": (set(), {"page_size", "size_param", "cursor_param", "cursor_header"}),
    "link_header": (set(), {"page_size", "size_param"}),
}


class PaginationSchema(StrictSchema):
    type = Choice(PAGINATION_TYPES)
    page_size = Int(minimum=1)
    size_param = Str()
    page_param = Str()
    start_page = Int(minimum=0)
    offset_param = Str()
    cursor_param = Str()
    cursor_path = PropertyPath()
    cursor_header = Str(pattern=HEADER_PATTERN, pattern_message="must be an HTTP header name")

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, "type", "none", PAGINATION_KEYS, "pagination type")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> PaginationConfig:
        return PaginationConfig(**data)


class ListEndpointSchema(StrictSchema):
    path = Str(
        required=True,
        pattern=r"/\S*",
        pattern_message="must be a path starting with / (relative to base_url)",
    )
    since_param = Str(allow_none=True)
    since_format = Str(
        pattern=r"iso|epoch|epoch_ms|.*%.*",
        pattern_message='must be "iso", "epoch", "epoch_ms" or a strftime pattern such as '
        '"%Y-%m-%dT%H:%M:%SZ"',
    )
    params = StrDict()
    items_path = Str(allow_empty=True, pattern=PROPERTY_PATTERN, pattern_message=PROPERTY_MESSAGE)
    id_field = PropertyPath()
    updated_field = PropertyPath()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ListEndpointConfig:
        return ListEndpointConfig(**data)


class RestSourceSchema(StrictSchema):
    base_url = Str(
        required=True,
        pattern=r"https?://[^\s/?#]+(/\S*)?",
        pattern_message="must be an http(s) URL such as https://dam.example.com",
    )
    list = Nested(ListEndpointSchema, required=True)
    auth = Nested(AuthSchema)
    pagination = Nested(PaginationSchema)
    get_path = Str(
        allow_none=True,
        pattern=r"/\S*\{id\}\S*",
        pattern_message="must be a path starting with / that contains {id}",
    )
    deletions = Nested(ListEndpointSchema, allow_none=True)
    media_url_field = PropertyPath(allow_none=True)
    filename_field = PropertyPath(allow_none=True)
    folder_field = PropertyPath(allow_none=True)
    tags_field = PropertyPath(allow_none=True)
    requests_per_second = Float(minimum=0, exclusive_minimum=True)
    timeout = Duration(minimum=0, exclusive_minimum=True)
    max_retries = Int(minimum=0)
    max_in_flight = Int(minimum=1)
    backoff_base = Duration(minimum=0, exclusive_minimum=True)
    backoff_max = Duration(minimum=0, exclusive_minimum=True)

    @validates_schema(skip_on_field_errors=True)
    def _backoff_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        base = data.get("backoff_base", RestSourceConfig.backoff_base)
        top = data.get("backoff_max", RestSourceConfig.backoff_max)
        if top < base:
            raise ValidationError({"backoff_max": [f"must be at least backoff_base ({base:g})"]})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> RestSourceConfig:
        data["base_url"] = data["base_url"].rstrip("/")
        return RestSourceConfig(**data)


class FolderSourceSchema(StrictSchema):
    path = Str(required=True)
    sidecar_suffix = Str()
    # `include`/`exclude` are Schema attributes, hence the trailing underscores
    include_ = StrList(min_items=1, data_key="include")
    exclude_ = StrList(data_key="exclude")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> FolderSourceConfig:
        for key in ("include", "exclude"):
            if key + "_" in data:
                data[key] = data.pop(key + "_")
        return FolderSourceConfig(**data)


class MediaSchema(StrictSchema):
    allowed_hosts = StrList(
        Str(
            pattern=r"[A-Za-z0-9*\[\]:._-]+",
            pattern_message='must be a host name such as "cdn.example.com" (no scheme, no path)',
        )
    )
    max_bytes = ByteSize(minimum=1)
    timeout = Duration(minimum=0, exclusive_minimum=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> MediaConfig:
        return MediaConfig(**data)
