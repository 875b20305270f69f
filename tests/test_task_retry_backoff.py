"""Celery's automatic retries of the pipeline tasks wait what `sync.backoff_*` says.

Each check runs in a fresh interpreter (celeryconfig reads the environment once). The task
body is replaced by one raising a transient error; the retry message the task would send
is captured instead of sent, with its countdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from tasks import routing

ROOT = Path(__file__).resolve().parent.parent

_PROBE = textwrap.dedent(
    """
    import json
    from celery.exceptions import Retry
    import tasks.pipeline as tp
    from connector.dam.base import TransientDamError

    def fail(*args, **kwargs):
        raise TransientDamError("DAM answered 503", retry_after=RETRY_AFTER)

    tp.pipeline.transform = fail
    tp.pipeline.push = fail
    tp.pipeline.sync_assets_by_id = fail
    out = {}
    for task, args in ((tp.transform_chunk, ("r1", "c0")), (tp.push_batch, ("r1", "b1")),
                       (tp.sync_asset_ids, ("dam", ["a"]))):
        sent = []

        class Stub:
            def apply_async(self):
                return None

        def signature_from_request(request=None, args=None, kwargs=None, **options):
            sent.append(options.get("countdown"))
            return Stub()

        task.signature_from_request = signature_from_request
        for retries in range(6):
            task.push_request(retries=retries, called_directly=False, id="t", args=args,
                              kwargs={})
            try:
                task.run(*args)
            except Retry:
                pass
            finally:
                task.pop_request()
        out[task.name] = sent
    print(json.dumps(out))
    """
)


def _countdowns(tmp_path: Path, retry_after: float | None) -> dict[str, list[float]]:
    data = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    data["sync"].update({"backoff_base": 7, "backoff_max": 20})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {k: v for k, v in os.environ.items()
           if k not in ("CELERY_BROKER_URL", "CONNECTOR_NAMESPACE")}
    env.update({"CONNECTOR_CONFIG": str(config), "DAM_TOKEN": "t", "PYTHONPATH": str(ROOT)})
    code = f"RETRY_AFTER = {retry_after!r}\n" + _PROBE
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_task_retries_back_off_by_the_sync_config(tmp_path: Path) -> None:
    found = _countdowns(tmp_path, None)
    assert set(found) == {routing.TRANSFORM_TASK, routing.PUSH_TASK, routing.SYNC_IDS_TASK}
    for name, countdowns in found.items():
        assert len(countdowns) == 6, (name, countdowns)
        for retries, countdown in enumerate(countdowns):
            ceiling = min(20.0, 7.0 * 2 ** retries)
            assert countdown is not None, (name, countdowns)
            assert ceiling / 2 <= countdown <= ceiling, (name, retries, countdowns)


def test_a_longer_retry_after_wins_up_to_backoff_max(tmp_path: Path) -> None:
    for countdowns in _countdowns(tmp_path, 15.0).values():
        assert all(15.0 <= c <= 20.0 for c in countdowns), countdowns
    for countdowns in _countdowns(tmp_path, 3600.0).values():
        assert countdowns == [20.0] * 6, countdowns
