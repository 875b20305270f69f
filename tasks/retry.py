"""Celery's side of the retry policy (connector/retry.py): the task base class.

Task-level retries use Celery's own options (`autoretry_for=connector.retry.transient_errors()`,
`max_retries`); this base class only sets the countdown of each retry, which Celery's
`retry_backoff` cannot do: the backoff must come from the user's config and a longer
Retry-After of the DAM or the PIM must win. Celery's own backoff stays off.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from connector.timebudget import COUNTDOWN_MAX  # the hard ceiling of any retry countdown

__all__ = ["COUNTDOWN_MAX", "ConfiguredRetryTask"]


class ConfiguredRetryTask(Task):
    """Automatic retries wait `retry_countdown(retries, exc)` seconds (at most
    COUNTDOWN_MAX), not Celery's default backoff."""

    def retry_countdown(self, retries: int, exc: BaseException | None) -> float:
        """Seconds before retry number `retries` + 1 after `exc` (a subclass decides)."""
        raise NotImplementedError

    def retry(
        self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
        throw: bool = True, eta: Any = None, countdown: float | None = None,
        max_retries: int | None = None, **options: Any,
    ) -> Any:
        if countdown is None and eta is None:
            countdown = min(
                float(COUNTDOWN_MAX),
                self.retry_countdown(int(self.request.retries or 0), exc),
            )
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
