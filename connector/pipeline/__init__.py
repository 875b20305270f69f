"""The sync pipeline's application layer (plain Python: no Celery import anywhere here).

A run of one source goes fetch → transform → push, as Celery tasks (tasks/pipeline.py),
each task body being one call of this package. Work travels as ids; the data waits in
Redis under the run's keys. Every step is idempotent (see `runs`), so acks_late
redelivery after a crash neither loses nor double-counts anything.

API for the CLI and other modules (all take an optional keyword `services=`; default:
this process's `get_services()`, built from $CONNECTOR_CONFIG and the environment):

Runs
    start_run(source, trigger="manual", full=False, since=None, asset_ids=None,
              force=False, dry_run=False) -> StartResult
        .run_id / .busy / .holder / .message / .started / .to_dict().
        A source runs one sync at a time (per-source Redis lock, TTL
        SyncConfig.run_lock_ttl, renewed as tasks progress): a second request — manual or
        a scheduled one from a duplicate/standby beat — gets busy=True and
        "source X is busy with run R". `full` ignores the watermark; `asset_ids` syncs
        just those ids (stored in Redis, not in task arguments); `force` pushes even
        unchanged assets; `dry_run` writes nothing and records differences
        and the side effects it would make (options, uploads, deletions: `plan`).
        The run records its config's fingerprint and path: a worker whose own config
        differs refuses the run's tasks and the run fails ("config mismatch", `fleet`).
    run_report(run_id) -> RunReport     state (a RunState), counts (RunCounts: seen,
        skipped, quarantined, unchanged, created, updated, failed/dead_lettered, deleted,
        requests, mean_assets_per_request, duration), progress (chunks_done/total,
        batches_done/total), errors, config_path/config_hash. Live while running; state
        "abandoned" when its lock expired with no finisher.
    list_runs(source, limit=20) -> list[RunReport]   newest first
    watermark(source) -> datetime | None;  set_watermark(source, moment | None)
    lock_holder(source) -> str | None;  source_status(source) -> dict
    dry_run_differences(run_id) -> list[dict]   value-level diffs of a dry run (creates
        too: every value they would set, PIM None)

Failures
    dead_letters(source, limit=100) -> list[dict]   PIM status, message, errors[],
        attempts, run id, time, values
    retry_dead_letters(source, dam_ids=None, inline=False) -> dict   re-fetch from the
        DAM and push again (a run by default; inline=True pushes here and returns counts)
    quarantine(source, limit=100) -> list[dict]
    explain(source, dam_id) -> dict   current DAM record, transform result now, last push
        result, dead letter, quarantine entry

Maintenance
    reconcile(source, apply=False, allow_mass_deletion=False) -> dict   orphans (PIM
        assets this connector created whose DAM asset is gone) and missing (DAM product
        assets absent from the PIM); apply=True applies the deletion policy to orphans and
        starts a run for the missing. More orphans than `deletion_policy.max_deletions`
        allows → MassDeletionError, nothing deleted (unless allow_mass_deletion). It holds
        the source's run lock: a run in progress → SourceBusyError, nothing compared
    apply_deletions(source, dam_ids) -> dict   the source's DeletionPolicy
    linking.pending_links(source, limit=None) -> list[dict]   direct product links not
        made yet (product missing, write refused), retried at the end of every run and
        by reconcile(apply=True); see connector.pipeline.linking

Real time (intake)
    sync_assets_by_id(source, asset_ids, deleted_ids=(), trigger="webhook", records=None,
                      force=False) -> dict
        in-process fetch/transform/push of ≤100 ids (the DAM's current record of each; the
        event's `records` only for REST sources without get_path); ids the DAM no longer
        has get the deletion policy; raises SyncUnavailableError (a TransientPimError) when
        the PIM could not take some of them: retry the task (only those are re-pushed).

Task bodies (tasks/pipeline.py only)
    start_and_fetch(source, trigger), fetch(run_id, part=0) (a long fetch goes on in
    parts: steps/slices.py), transform(run_id, chunk_id),
    push(run_id, batch_id), gave_up(kind, run_id, item_id, error),
    remember_task_run(task_id, run_id) and hard_time_limit_exceeded(kind, limit, task_id=,
    run_id=, item_id=, part=) (a task the pool killed: its run fails at once, `timelimits`);
    remember_task_lock(task_id, source, token) and reconcile_time_limit_exceeded(task_id,
    limit) (a killed reconcile: its source lock released at once)

Stalled runs (`watchdog`)
    watch_runs() (beat): open runs whose progress has not moved for `sync.stall_after`
    get their unfinished fetch part, chunks and batches queued again (a message the broker
    lost); resume_run(run_id) does it at once (`connector resume RUN_ID`) -> Resumed

Wiring
    Services(config, redis, keys, client=, cache=, sources=, enqueuer=, ...) holds the
    collaborators, built lazily once per process; get_services()/set_services(). The
    `Enqueuer` protocol (fetch/transform/push) is implemented by tasks/pipeline.py and
    installed by the process's entry point (`wire()`, from tasks/wiring.py): this package
    never looks for its task queue itself.

Watermark rule: after a run that succeeded and covered everything since the previous
watermark, the watermark becomes (run start - SyncConfig.watermark_overlap). Failed runs,
dry runs, asset-id runs and runs `since` a later moment leave it alone. Dead-lettered
assets (refused pushes, and refused deletions: kind `deletion`, counted `deletion_failed`)
do not fail a run: they wait in the dead-letter store for a retry, and the CLI exits 1. A
run whose DAM deletion feed is over `deletion_policy.max_deletions` fails, nothing deleted.
"""

from connector.pipeline.completion import gave_up
from connector.pipeline.deletions import apply_deletions
from connector.pipeline.errors import (
    MassDeletionError,
    PipelineError,
    SourceBusyError,
    SyncUnavailableError,
    UnknownRunError,
    UnknownSourceError,
)
from connector.pipeline.explain import explain
from connector.pipeline.ops import (
    dead_letters,
    dry_run_differences,
    list_runs,
    lock_holder,
    quarantine,
    retry_dead_letters,
    run_report,
    set_watermark,
    source_status,
    watermark,
)
from connector.pipeline.realtime import sync_assets_by_id
from connector.pipeline.reconcile import reconcile
from connector.pipeline.runs import RunCounts, RunRecord, RunReport, RunState, StartResult
from connector.pipeline.services import Enqueuer, Services, get_services, set_services
from connector.pipeline.steps.fetch import fetch
from connector.pipeline.steps.push import push
from connector.pipeline.steps.start import start_and_fetch, start_run
from connector.pipeline.steps.transform import transform
from connector.pipeline.timelimits import (
    hard_time_limit_exceeded,
    reconcile_time_limit_exceeded,
    remember_task_lock,
    remember_task_run,
)
from connector.pipeline.watchdog import Resumed, resume_run, watch_runs

__all__ = [
    "Enqueuer",
    "MassDeletionError",
    "PipelineError",
    "Resumed",
    "RunCounts",
    "RunRecord",
    "RunReport",
    "RunState",
    "Services",
    "SourceBusyError",
    "StartResult",
    "SyncUnavailableError",
    "UnknownRunError",
    "UnknownSourceError",
    "apply_deletions",
    "dead_letters",
    "dry_run_differences",
    "explain",
    "fetch",
    "gave_up",
    "get_services",
    "hard_time_limit_exceeded",
    "list_runs",
    "lock_holder",
    "push",
    "quarantine",
    "reconcile",
    "reconcile_time_limit_exceeded",
    "remember_task_lock",
    "remember_task_run",
    "resume_run",
    "retry_dead_letters",
    "run_report",
    "set_services",
    "set_watermark",
    "source_status",
    "start_and_fetch",
    "start_run",
    "sync_assets_by_id",
    "transform",
    "watch_runs",
    "watermark",
]
