"""The `sync` section (batching, retries, locks) and a source's `schedule` blocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, post_load, validates, validates_schema

from connector.config.fields import Crontab, Duration, Int
from connector.config.model import ScheduleConfig, SyncConfig
from connector.config.schemas.base import StrictSchema, given_keys
from connector.timebudget import countdown_problem


class SyncSchema(StrictSchema):
    chunk_size = Int(minimum=1, maximum=10000)
    push_batch_size = Int(
        minimum=1, maximum=100, maximum_reason="Akeneo accepts at most 100 assets per request"
    )
    max_retries = Int(minimum=0)
    backoff_base = Duration(minimum=0, exclusive_minimum=True)
    backoff_max = Duration(minimum=0, exclusive_minimum=True)
    watermark_overlap = Duration(minimum=0)
    run_lock_ttl = Duration(integer=True, minimum=1)
    quarantine_ttl = Duration(integer=True, minimum=1)
    # the fetch task's time limit (connector/timebudget.py, 900 s soft) must cover a
    # slice plus one slow page: a longer slice is refused here rather than killed there
    fetch_slice_seconds = Duration(
        minimum=0, exclusive_minimum=True, maximum=600,
        maximum_reason="the fetch task's soft time limit is 900 s (celeryconfig.py)",
    )
    fetch_slice_pages = Int(minimum=1)
    stall_after = Duration(minimum=10)

    @validates("backoff_max")
    def _fits_the_time_budget(self, value: float, **kwargs: Any) -> None:
        # it caps every retry countdown, Retry-After included (connector/timebudget.py)
        problem = countdown_problem(value)
        if problem is not None:
            raise ValidationError(problem)

    @validates_schema(skip_on_field_errors=True)
    def _backoff_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        base = data.get("backoff_base", SyncConfig.backoff_base)
        top = data.get("backoff_max", SyncConfig.backoff_max)
        if top < base:
            raise ValidationError({"backoff_max": [f"must be at least backoff_base ({base:g})"]})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> SyncConfig:
        return SyncConfig(**data)


class ScheduleSchema(StrictSchema):
    every = Duration(minimum=0, exclusive_minimum=True)
    crontab = Crontab()

    @validates_schema(pass_original=True, skip_on_field_errors=False)
    def _exactly_one(self, data: Any, original_data: Any, **kwargs: Any) -> None:
        given = given_keys(original_data, "every", "crontab")
        if isinstance(original_data, Mapping) and len(given) != 1:
            raise ValidationError(
                "give exactly one of every, crontab" + (" (got both)" if given else "")
            )

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> ScheduleConfig:
        return ScheduleConfig(**data)
