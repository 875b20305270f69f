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


class SourceBusyError(PipelineError):
    """The source's run lock is held (a run, or another reconcile): a reconcile never runs
    beside a sync of the same source, whose pushes would race its comparison."""

    def __init__(self, source: str, holder: str) -> None:
        super().__init__(
            f"source {source} is busy with {busy_with(holder)}: reconcile refused, "
            "try again when it has finished"
        )
        self.source = source
        self.holder = holder


RECONCILE_LOCK_PREFIX = "reconcile:"


def busy_with(holder: str) -> str:
    """Who holds a source's lock, in words: `run <id>` or `a reconciliation (<token>)`."""
    if holder.startswith(RECONCILE_LOCK_PREFIX):
        return f"a reconciliation ({holder})"
    return f"run {holder}"


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
