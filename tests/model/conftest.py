"""Model test fixtures: quiet sandbox access logs (the worker and servers are module-wide)."""

from __future__ import annotations

import logging

import pytest

logging.getLogger("werkzeug").setLevel(logging.ERROR)  # also during module fixtures


@pytest.fixture(autouse=True)
def _quiet_sandbox_log() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
