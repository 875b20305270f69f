"""Security tests: hostile input, secrets, Flower auth, media downloads."""

from __future__ import annotations

import logging

import pytest

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # also during module fixtures


@pytest.fixture(autouse=True)
def _quiet_sandbox_log() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the sandboxes' access log
