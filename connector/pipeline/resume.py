"""A transform chunk that keeps its progress, and DAM failures that are not a chunk's end.

Why: a chunk of 100 assets downloads up to 100 binaries. Before, one download the DAM kept
refusing failed the whole chunk; its task was retried from the first asset, and after the
task's last retry the run failed with nothing said about the asset. Now:

- every asset whose state in the run is past "seen" was transformed and staged by an
  earlier attempt of the chunk: a retried chunk skips it. Whatever stops a chunk midway
  (the DAM down, the PIM refusing an upload, Redis), what it did so far is staged first;
- an asset whose download still fails after the adapter's own retries (TransientDamError)
  becomes a dead letter of kind "dam" with the DAM's answer, counted `failed` in the run
  report; the rest of the chunk goes on, and `failures retry` syncs it again later;
- but several such failures in a row, or the DAM's budget refusing to wait any longer
  (DamThrottledError: a long Retry-After, Redis gone), look like the DAM being down, which
  is no asset's fault: the chunk stops there, what it did so far is staged, and its task is
  retried later (Celery backoff from `sync.backoff_*`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from connector.dam.base import DamAsset, TransientDamError
from connector.dam.ratelimit import DamThrottledError
from connector.pipeline.runs import RunRecord, utcnow
from connector.pipeline.services import Services, TransformerLike
from connector.pipeline.stores import DeadLetter
from connector.transform.codes import asset_code
from connector.transform.result import Quarantined, Skipped, TransformedAsset

log = logging.getLogger(__name__)

#: DAM failures in a row after which the DAM counts as down rather than the assets at fault
DAM_OUTAGE_STREAK = 3

Result = TransformedAsset | Quarantined | Skipped


def transform_resumable(
    s: Services, record: RunRecord, transformer: TransformerLike, assets: Sequence[DamAsset]
) -> tuple[list[Result], Exception | None]:
    """Transform the chunk's assets not done yet. Returns the results and, when the chunk
    cannot go on (the DAM looks down, any other failure that is no asset's fault), the
    error to raise once those results are staged (None otherwise)."""
    states = s.runs.states_of(record.run_id, [a.id for a in assets])
    results: list[Result] = []
    failed: list[tuple[DamAsset, TransientDamError]] = []
    streak = 0
    for asset in assets:
        if states.get(asset.id, "seen") != "seen":
            continue  # transformed and staged by an earlier attempt of this chunk
        try:
            results.append(transformer.transform(asset))
        except DamThrottledError as exc:
            return results, exc
        except TransientDamError as exc:
            failed.append((asset, exc))
            streak += 1
            if streak >= DAM_OUTAGE_STREAK:
                log.warning("run %s: %d DAM failures in a row, the chunk is retried later: %s",
                            record.run_id, streak, exc)
                return results, exc
            continue
        except Exception as exc:  # PIM, Redis: the task's retry policy decides
            return results, exc
        streak = 0
    if failed:
        dead_letter_dam_failures(s, record, failed)
    return results, None


def dead_letter_dam_failures(
    s: Services, record: RunRecord, failed: Sequence[tuple[DamAsset, TransientDamError]]
) -> None:
    """Dead letters of kind "dam" (state `failed` in the run): the DAM's reason, no
    values (nothing was built), so that `failures list` shows them and `failures retry`
    re-reads them from the DAM."""
    from connector.pipeline.steps.fetch import product_family_of

    source = s.source_config(record.source)
    attempts = source.rest.max_retries + 1 if source.rest is not None else 1
    now = utcnow().isoformat()
    for asset, exc in failed:
        log.warning("run %s: %s/%s not synced, the DAM kept failing: %s",
                    record.run_id, record.source, asset.id, exc)
        s.dead_letters.add(
            record.source,
            DeadLetter(
                dam_id=asset.id,
                code=asset_code(asset.id, source.code_prefix),
                family=product_family_of(s.config, source, asset) or "",
                status=None,
                message=f"the DAM kept failing: {exc}",
                errors=[],
                attempts=attempts,
                run_id=record.run_id,
                at=now,
                kind="dam",
            ),
        )
    s.runs.transition(record.run_id, [(asset.id, "failed") for asset, _ in failed])


def task_retry_countdown(retries: int, exc: BaseException | None) -> float:
    """Seconds before a failed pipeline task runs again (its Celery retry number
    `retries` + 1): the configured `sync.backoff_base`/`backoff_max` with jitter, or the
    Retry-After the DAM or the PIM sent when longer (still capped by `backoff_max`)."""
    from connector.pipeline.services import get_services
    from connector.retry import retry_countdown

    sync = get_services().sync
    return retry_countdown(retries, exc, sync.backoff_base, sync.backoff_max)
