"""Creating the select options a transform found missing, through the PIM client.

Apart from the transformer because it is the one place the transform step writes to the
PIM's structure: the transformer only calls an `OptionWriter`, and this module builds the
usual one from a (rate-limited) client and the structure cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# family, attribute, option code, label → creates the option in the PIM (rate-limited).
OptionWriter = Callable[[str, str, str, str], None]


class OptionClient(Protocol):
    """What the option writer needs of the PIM client."""

    def upsert_option(
        self, family: str, attribute: str, code: str, body: dict[str, Any]
    ) -> int: ...


class OptionNoter(Protocol):
    """What the option writer needs of the structure cache."""

    def note_option(self, family: str, attribute: str, option_code: str) -> None: ...


def make_option_writer(
    client: OptionClient, cache: OptionNoter | None = None, label_locale: str = "en_US"
) -> OptionWriter:
    """The usual OptionWriter: PATCH the option through the (fleet-wide rate-limited) PIM
    client, labelled with the DAM's text, then tell the structure cache it exists."""

    def write(family: str, attribute: str, code: str, label: str) -> None:
        body: dict[str, Any] = {"code": code}
        if label and label != code:
            body["labels"] = {label_locale: label[:255]}
        client.upsert_option(family, attribute, code, body)
        if cache is not None:
            cache.note_option(family, attribute, code)

    return write
