"""A source's DAM side: the REST API (endpoints, auth, pagination), a hot folder, media."""

from __future__ import annotations

import re
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
    Raw,
    SecretField,
    Str,
    StrDict,
    StrList,
)
from connector.config.model import (
    AuthConfig,
    FolderSourceConfig,
    GraphQLConfig,
    ListEndpointConfig,
    MediaConfig,
    PaginationConfig,
    RestSourceConfig,
)
from connector.config.schemas.base import StrictSchema, Variants, check_type_keys

AUTH_TYPES = ("bearer", "basic", "api_key", "oauth2_client_credentials", "none")
AUTH_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "none": (set(), set()),
    "bearer": ({"token"}, set()),
    "basic": ({"username", "password"}, set()),
    "api_key": ({"value"}, {"header"}),
    "oauth2_client_credentials": ({"token_url", "client_id", "client_secret"}, {"scope"}),
}
AUTH_VARIANTS: Variants = ("type", "none", AUTH_KEYS, "auth type")


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

    variants = AUTH_VARIANTS

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, *AUTH_VARIANTS)

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
PAGINATION_VARIANTS: Variants = ("type", "none", PAGINATION_KEYS, "pagination type")


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

    variants = PAGINATION_VARIANTS

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _type_keys(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        check_type_keys(original_data, *PAGINATION_VARIANTS)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> PaginationConfig:
        return PaginationConfig(**data)


def SinceFormat() -> Str:  # reads like a field class
    return Str(
        pattern=r"iso|epoch|epoch_ms|.*%.*",
        pattern_message='must be "iso", "epoch", "epoch_ms" or a strftime pattern such as '
        '"%Y-%m-%dT%H:%M:%SZ"',
    )


class ListEndpointSchema(StrictSchema):
    path = Str(
        required=True,
        pattern=r"/\S*",
        pattern_message="must be a path starting with / (relative to base_url)",
    )
    since_param = Str(allow_none=True)
    since_format = SinceFormat()
    since_template = Str(
        pattern=r"(?s).*\{since\}.*",
        pattern_message='must contain {since}, e.g. \'last_updated>="{since}"\'',
    )
    params = StrDict()
    items_path = Str(allow_empty=True, pattern=PROPERTY_PATTERN, pattern_message=PROPERTY_MESSAGE)
    id_field = PropertyPath()
    updated_field = PropertyPath()

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ListEndpointConfig:
        return ListEndpointConfig(**data)


GRAPHQL_NAME = r"[_A-Za-z][_0-9A-Za-z]*"
GRAPHQL_NAME_MESSAGE = "must be a GraphQL variable name (letters, digits, _), without the $"
# a property path whose one segment may end in [*]: data.assets.edges[*].node
ITEMS_PATTERN = r"[^.\s\[\]](?:[^.\[\]]*[^.\s\[\]])?(?:\[\*\])?" \
    r"(?:\.[^.\s\[\]](?:[^.\[\]]*[^.\s\[\]])?(?:\[\*\])?)*"
# keys of `rest.list` that a GraphQL listing replaces (by `graphql.<key>`)
GRAPHQL_REPLACES = {"since_param": "since_variable", "since_template": "variables",
                    "params": "variables", "items_path": "items_path",
                    "since_format": "since_format"}


class GraphQLSchema(StrictSchema):
    query = Str(required=True)
    variables = Raw()
    since_variable = Str(allow_none=True, pattern=GRAPHQL_NAME,
                         pattern_message=GRAPHQL_NAME_MESSAGE)
    since_format = SinceFormat()
    items_path = Str(required=True, pattern=ITEMS_PATTERN,
                     pattern_message='must be a dotted path such as "data.assets.nodes" or '
                     '"data.assets.edges[*].node" ([*]: every element of that list)')
    cursor_path = PropertyPath(allow_none=True)
    has_next_path = PropertyPath(allow_none=True)
    cursor_variable = Str(pattern=GRAPHQL_NAME, pattern_message=GRAPHQL_NAME_MESSAGE)
    page_size_variable = Str(allow_none=True, pattern=GRAPHQL_NAME,
                             pattern_message=GRAPHQL_NAME_MESSAGE)
    page_size = Int(minimum=1)
    get_query = Str(allow_none=True)
    get_item_path = PropertyPath(allow_none=True)

    @validates_schema(skip_on_field_errors=True)
    def _variables_declared(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Each variable the connector sends must be declared (`$name`) by its query: a
        GraphQL server refuses (or ignores) the others, which reads as a wrong listing."""
        errors: dict[str, list[str]] = {}
        variables = data.get("variables", {})
        if not isinstance(variables, dict):
            errors["variables"] = ["must be a mapping of variable name → JSON value"]
        else:
            for name in variables:
                if not _declares(data["query"], str(name)):
                    errors.setdefault("variables", []).append(
                        f"variable {name!r} is not declared by the query (no ${name})")
        sent = {"since_variable": data.get("since_variable"),
                "page_size_variable": data.get("page_size_variable", "first")}
        if data.get("cursor_path"):
            sent["cursor_variable"] = data.get("cursor_variable", "after")
        for key, name in sent.items():
            if name and not _declares(data["query"], name):
                errors[key] = [f"the query declares no ${name}: declare it "
                               f"(e.g. ${name}: String) or set {key} to another variable"
                               + (" (null: none)" if key == "page_size_variable" else "")]
        if data.get("has_next_path") and not data.get("cursor_path"):
            errors["cursor_path"] = ["required with has_next_path (where the next cursor is)"]
        get_query, item_path = data.get("get_query"), data.get("get_item_path")
        if bool(get_query) != bool(item_path):
            errors["get_item_path" if get_query else "get_query"] = [
                "get_query and get_item_path go together (the query, and where its asset is)"]
        elif get_query and not _declares(get_query, "id"):
            errors["get_query"] = ["must declare an $id variable (the asset id is sent as id)"]
        if errors:
            raise ValidationError(errors)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> GraphQLConfig:
        return GraphQLConfig(**data)


def _declares(query: str, name: str) -> bool:
    return re.search(r"\$" + re.escape(name) + r"(?![_0-9A-Za-z])", query) is not None


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
    graphql = Nested(GraphQLSchema, allow_none=True)

    @validates_schema(pass_original=True, skip_on_field_errors=True)
    def _graphql_list(self, data: dict[str, Any], original_data: Any, **kwargs: Any) -> None:
        """With `graphql`, what a REST listing would send comes from `graphql`: a key of
        `list` it replaces would be silently ignored, so it is an error."""
        if data.get("graphql") is None or not isinstance(original_data, dict):
            return
        listed = original_data.get("list")
        errors: dict[str, Any] = {}
        for key, instead in GRAPHQL_REPLACES.items():
            if isinstance(listed, dict) and key in listed:
                errors.setdefault("list", {})[key] = [
                    f"not used with graphql: set graphql.{instead} instead"]
        if original_data.get("get_path") is not None:
            errors["get_path"] = ["not used with graphql: set graphql.get_query instead"]
        if errors:
            raise ValidationError(errors)

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
    base_url = Str(
        allow_none=True,
        pattern=r"https?://[^\s/?#]+(/\S*)?",
        pattern_message="must be an http(s) URL such as https://cdn.example.com/files",
    )
    max_bytes = ByteSize(minimum=1)
    timeout = Duration(minimum=0, exclusive_minimum=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> MediaConfig:
        return MediaConfig(**data)
