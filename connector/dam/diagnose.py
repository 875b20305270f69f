"""What the REST adapter says when a DAM answers unlike its configuration: what was
expected, what was found, and the config key to change.

Apart from the request loop (`connector.dam.rest`) because these are pure functions of one
response and the config, easy to read and to test; each error carries its key
(`DamError.key`) so that `connector check` files it under that key.
"""

from __future__ import annotations

from typing import Any

from connector.config.model import ListEndpointConfig, RestSourceConfig
from connector.dam.base import DamError
from connector.dam.media import safe_url
from connector.dam.paths import MISSING, get_path

# which keys of `auth` hold the credentials, per auth type
_AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "bearer": ("token",),
    "basic": ("username", "password"),
    "api_key": ("header", "value"),
    "oauth2_client_credentials": ("client_id", "client_secret"),
}


def auth_keys(source: str, config: RestSourceConfig) -> str:
    """The config keys holding the DAM's credentials, for messages (never their values)."""
    base = f"sources.{source}.rest.auth"
    names = _AUTH_KEYS.get(config.auth.type, ())
    if not names:
        return f"{base}.type (the DAM wants credentials, none are configured)"
    return " and ".join(f"{base}.{n}" for n in names)


def endpoint_key(source: str, config: RestSourceConfig, endpoint: ListEndpointConfig,
                 name: str) -> str:
    """The config path of `name` in `endpoint` (the listing or the deletion feed)."""
    section = "list" if endpoint is config.list else "deletions"
    return f"sources.{source}.rest.{section}.{name}"


def error_text(body: Any) -> str | None:
    """The message of an error body (`error` as text or `{message}`, `errors[0]`), else
    None; cut to 200 characters."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if error is None and isinstance(body.get("errors"), list) and body["errors"]:
        error = body["errors"][0]
    if isinstance(error, dict):
        error = error.get("message", error)
    if error is None or error == "" or isinstance(error, bool):
        return None
    return " ".join(str(error).split())[:200]


def not_a_list(source: str, key: str, items_path: str, body: Any, items: Any, url: str
               ) -> DamError:
    """`items_path` did not lead to a list: what it found, and where the body's lists are.
    A body that is an error (`{"error": {"message": ...}}`, `{"errors": [...]}`) sent with
    a 200 is reported as that error."""
    where = repr(items_path) if items_path else "the body"
    error = error_text(body) if items is MISSING else None
    if error is not None:
        return DamError(
            f"{source}: {safe_url(url)} answered 200 with an error: {error} "
            f"(expected the list of records at {where})"
        )
    found = "nothing" if items is MISSING else f"a {type(items).__name__}"
    lists = sorted(k for k, v in body.items() if isinstance(v, list)) \
        if isinstance(body, dict) else []
    if isinstance(body, list):
        hint = f"; the body itself is a list (of {len(body)} records)"
    elif lists:
        hint = f"; the body's lists are at: {', '.join(lists)}"
    elif isinstance(body, dict):
        hint = f"; the body has: {', '.join(str(k) for k in list(body)[:30])}"
    else:
        hint = ""
    return DamError(
        f"{source}: expected the list of records at {where} in the response of "
        f"{safe_url(url)}, found {found}{hint}. Set {key} to the path of the list "
        "(\"\" when the body is the list)",
        key=key,
    )


def check_ids(source: str, key: str, id_field: str, items: list[Any], url: str) -> None:
    """A page whose records all lack the id field is a wrong `id_field`, not a hundred bad
    records (and not the "same page twice" the paginator would see next): DamError."""
    records = [it for it in items if isinstance(it, dict)]
    if not records or len(records) != len(items):
        return
    if any(get_path(it, id_field) not in (None, "") for it in records):
        return
    keys = list(records[0])
    shown = ", ".join(str(k) for k in keys[:30]) + (" …" if len(keys) > 30 else "")
    raise DamError(
        f"{source}: none of the {len(records)} records listed by {safe_url(url)} has "
        f"the id field {id_field!r}; the first record has: {shown or 'no fields'}. "
        f"Set {key} to the field that holds the asset id",
        key=key,
    )
