"""Real runs without a worker: the e2e World's sandboxes, config and structure, with the
pipeline's steps run in this process (tests/pipeline_fakes.QueueEnqueuer) instead of by
`celery worker` subprocesses. For tests that need many runs (fuzzing) or no concurrency."""

from __future__ import annotations

from typing import Any

from connector.dam.factory import build_source
from connector.pipeline import run_report, start_run
from connector.pipeline.services import Services
from connector.redis_conn import Keys, get_redis
from tests.e2e.world import SOURCE, World
from tests.pipeline_fakes import QueueEnqueuer


class InlineRunner:
    """Services on the World's sandboxes whose enqueuer runs every step right here."""

    def __init__(self, world: World) -> None:
        assert world.config is not None
        self.world = world
        self.enqueuer = QueueEnqueuer()
        self.services = Services(
            world.config, get_redis(world.redis_url), Keys(world.namespace),
            client=world.client(), sources={SOURCE: build_source(world.config.source(SOURCE))},
            enqueuer=self.enqueuer,
        )
        self.enqueuer.services = self.services

    def run(self, **kw: Any) -> dict[str, Any]:
        started = start_run(SOURCE, "test", services=self.services, **kw)
        assert started.started and started.run_id, started.message
        self.enqueuer.drain()
        report = run_report(started.run_id, services=self.services)
        assert report["state"] in ("succeeded", "failed"), report
        return report

    def asset_state(self, run_id: str, dam_id: str) -> str | None:
        """The final state of one DAM id in a run (created, quarantined, skipped, …)."""
        state: str | None = self.services.runs.state_of(run_id, dam_id)
        return state

    def close(self) -> None:
        self.services.close()
