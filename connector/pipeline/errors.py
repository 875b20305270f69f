"""Exceptions of the pipeline's application layer (no Celery here)."""

from __future__ import annotations

from typing import Any

from connector.pim.errors import TransientPimError


class PipelineError(Exception):
    """Something the pipeline cannot do as asked (unknown source, unknown run, ...)."""


class UnknownRunError(PipelineError):
    """No run record with that id (never existed, or expired)."""


class UnknownSourceError(PipelineError):
    """The configuration has no source with that name."""


class MassDeletionError(PipelineError):
    """A reconcile or run would delete more of a source's PIM assets than its
    `deletion_policy.max_deletions` allows: nothing was deleted (the DAM may be answering
    an empty or partial list). `report` is the reconcile report when there is one."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


class SyncUnavailableError(TransientPimError):
    """The PIM could not take (part of) a real-time sync: the caller's task should retry.

    Everything that did succeed was recorded (hashes), so a retry only re-pushes what failed.
    `counts` are the counts of the attempt that raised.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        counts: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.counts = dict(counts or {})
