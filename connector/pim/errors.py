"""The PIM client's errors.

Transient: 408, 425, 429, 5xx (`connector.retry.is_transient_status`, the same rule as on
the DAM side), timeouts, connection errors — retry later (after `retry_after` when the PIM
said so). Permanent: 400, 401 after re-auth, 403, 404, 413, 415, 422 — retrying
cannot help; Akeneo's message and `errors[]` are kept for the dead-letter store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connector.retry import is_transient_status


class PimError(Exception):
    """Base class of every error raised by the PIM client."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.errors = errors or []
        self.method = method
        self.path = path

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "status": self.status,
            "message": self.message,
            "errors": self.errors,
            "method": self.method,
            "path": self.path,
        }

    def __str__(self) -> str:
        where = f"{self.method} {self.path}: " if self.method else ""
        status = f"{self.status} " if self.status is not None else ""
        return f"{where}{status}{self.message}"


class TransientPimError(PimError):
    """Worth retrying; `retry_after` (seconds) is the PIM's own request when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PermanentPimError(PimError):
    """Retrying the same request cannot succeed."""


class PimAuthError(PermanentPimError):
    """Credentials rejected (token grant failed, or 401 after a fresh token)."""


@dataclass
class AssetResult:
    """Outcome of one asset inside a bulk upsert (from the per-line response)."""

    code: str
    status_code: int
    message: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code in (200, 201, 204)

    @property
    def created(self) -> bool:
        return self.status_code == 201

    @property
    def transient(self) -> bool:
        return is_transient_status(self.status_code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "status_code": self.status_code,
            "message": self.message,
            "errors": self.errors,
        }
