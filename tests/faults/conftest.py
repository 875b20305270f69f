"""Fault tests: real Redis, sandboxes on 127.0.0.1, real `celery worker` subprocesses."""

from __future__ import annotations

import logging

import pytest

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # also during module fixtures


@pytest.fixture(autouse=True)
def _quiet_sandbox_log() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the sandboxes' access log
