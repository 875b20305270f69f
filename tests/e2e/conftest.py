"""End-to-end fixtures: real Redis, real sandbox servers, real `celery -A tasks worker`."""

from __future__ import annotations

import logging

import pytest

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the sandboxes' access log


@pytest.fixture(autouse=True)
def _quiet_sandbox_log() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
