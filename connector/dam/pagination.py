"""Pagination strategies, one small class each (in the style of the Meltano Singer SDK).

A paginator holds where one listing is. The REST adapter asks it for the query
parameters (or the full URL) of the next request, hands it what came back, and stops when
it says `finished`. Every strategy refuses to walk in circles: a DAM that returns the same
token or next URL twice, or the very same full page twice, raises `PaginationLoopError`
instead of looping forever.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from requests.utils import parse_header_links

from connector.config.model import PaginationConfig
from connector.dam.base import PaginationLoopError
from connector.dam.paths import get_path


@dataclass(frozen=True)
class PageResponse:
    """What a paginator may look at in one response (no `requests` object: easy to test)."""

    url: str
    headers: Mapping[str, str]        # case-insensitive in practice (requests' dict)
    body: Any
    item_count: int
    fingerprint: tuple[str, ...] = ()  # ids of the page's items, for repeated-page detection


class BasePaginator(abc.ABC):
    """Common bookkeeping: current value, finished flag, loop detection."""

    # the `pagination` keys to check when the DAM walks in circles (it ignores them)
    loop_keys: tuple[str, ...] = ()

    def __init__(self, config: PaginationConfig, start_value: Any = None) -> None:
        self.config = config
        self.page_size = config.page_size
        self.current_value: Any = start_value
        self.finished = False
        self.pages = 0
        self._seen: set[Any] = set()
        self._last_fingerprint: tuple[str, ...] = ()

    def position(self) -> str | None:
        """Where the listing goes on (after the page just read), as a JSON token for
        `restore`; None once finished. The loop guard's memory is not kept: a resumed
        listing guards itself from there on."""
        if self.finished:
            return None
        return json.dumps({"value": self.current_value, "pages": self.pages})

    def restore(self, token: str) -> None:
        """Continue from a `position()` token (the next request asks for that page)."""
        state = json.loads(token)
        self.current_value = state["value"]
        self.pages = int(state.get("pages", 0))
        if self.current_value is not None:
            self._seen.add(self.current_value)

    def params(self) -> dict[str, str]:
        """Query parameters selecting the current page (added to the fixed ones)."""
        return {}

    def next_url(self) -> str | None:
        """A complete URL replacing path and parameters (Link-header style), else None."""
        return None

    @abc.abstractmethod
    def get_next(self, response: PageResponse) -> Any | None:
        """The value selecting the following page, or None when this was the last one."""

    def advance(self, response: PageResponse) -> None:
        """Move past the page just read; raises PaginationLoopError on a repeat."""
        self.pages += 1
        if response.fingerprint and response.fingerprint == self._last_fingerprint:
            raise PaginationLoopError(
                f"the DAM returned the same page twice ({len(response.fingerprint)} items "
                f"starting with id {response.fingerprint[0]!r}) at {type(self).__name__} "
                f"position {self.current_value!r}"
            )
        self._last_fingerprint = response.fingerprint
        new = self.get_next(response)
        if new is None or new == "":
            self.finished = True
            return
        if new == self.current_value or new in self._seen:
            raise PaginationLoopError(
                f"the DAM handed out the page token/URL {_short(new)!r} twice "
                f"(after {self.pages} pages); stopping instead of looping"
            )
        if self.current_value is not None:
            self._seen.add(self.current_value)
        self._seen.add(new)
        self.current_value = new

    def _size(self) -> dict[str, str]:
        return {self.config.size_param: str(self.page_size)}


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _short_page(response: PageResponse, page_size: int) -> bool:
    return response.item_count == 0 or response.item_count < page_size


class NoPaginator(BasePaginator):
    """The first response holds everything."""

    def get_next(self, response: PageResponse) -> Any | None:
        return None


class PageNumberPaginator(BasePaginator):
    """`?page=N&limit=S`; a short or empty page is the last one."""

    loop_keys = ("page_param",)

    def __init__(self, config: PaginationConfig) -> None:
        super().__init__(config, config.start_page)

    def params(self) -> dict[str, str]:
        return {self.config.page_param: str(self.current_value), **self._size()}

    def get_next(self, response: PageResponse) -> Any | None:
        return None if _short_page(response, self.page_size) else self.current_value + 1


class OffsetPaginator(BasePaginator):
    """`?offset=N&limit=S`; the offset moves by what actually came back."""

    loop_keys = ("offset_param",)

    def __init__(self, config: PaginationConfig) -> None:
        super().__init__(config, 0)

    def params(self) -> dict[str, str]:
        return {self.config.offset_param: str(self.current_value), **self._size()}

    def get_next(self, response: PageResponse) -> Any | None:
        if _short_page(response, self.page_size):
            return None
        return self.current_value + response.item_count


class BodyCursorPaginator(BasePaginator):
    """Opaque token at a dotted path of the body (`next_cursor`), sent back as a parameter."""

    loop_keys = ("cursor_param",)

    def params(self) -> dict[str, str]:
        params = self._size()
        if self.current_value is not None:
            params[self.config.cursor_param] = str(self.current_value)
        return params

    def get_next(self, response: PageResponse) -> Any | None:
        token = get_path(response.body, self.config.cursor_path)
        if token is None or token is False or token == "":
            return None
        return str(token)


class HeaderCursorPaginator(BodyCursorPaginator):
    """Opaque token in a response header (`X-Next-Cursor`)."""

    def get_next(self, response: PageResponse) -> Any | None:
        token = response.headers.get(self.config.cursor_header)
        return (token.strip() or None) if token else None


class LinkHeaderPaginator(BasePaginator):
    """RFC 8288 `Link: <url>; rel="next"`: the next URL is followed as given."""

    def params(self) -> dict[str, str]:
        return self._size() if self.current_value is None else {}

    def next_url(self) -> str | None:
        return self.current_value if self.current_value is not None else None

    def get_next(self, response: PageResponse) -> Any | None:
        header = response.headers.get("Link")
        if not header:
            return None
        for link in parse_header_links(header):
            rels = str(link.get("rel", "")).split()
            if "next" in rels and link.get("url"):
                return urljoin(response.url, link["url"])
        return None


PAGINATORS: dict[str, type[BasePaginator]] = {
    "none": NoPaginator,
    "page_number": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": BodyCursorPaginator,
    "header_cursor": HeaderCursorPaginator,
    "link_header": LinkHeaderPaginator,
}


def build_paginator(config: PaginationConfig) -> BasePaginator:
    """A fresh paginator for one listing, of the class `config.type` names."""
    try:
        cls = PAGINATORS[config.type]
    except KeyError:
        raise ValueError(
            f"unknown pagination type {config.type!r} (one of {', '.join(PAGINATORS)})"
        ) from None
    return cls(config)
