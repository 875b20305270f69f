"""tasks/ is the composition root: one routing table, the wiring installed by entry points,
a scheduled sync in one task hop, and no Celery/kombu inside connector/.

Checks that build the Celery app run in a fresh interpreter (celeryconfig reads the
environment once, so importing `tasks.celery_app` here would fix it for later tests).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from connector.pipeline.services import NotWiredError, Services, wire, wiring
from tasks import routing
from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


_BEAT_TICK = """
    import json
    from connector.pipeline import run_report, set_services
    import tasks.pipeline as tp
    from tests.pipeline_fakes import FakeDam, FakePim, make_asset, make_config, make_services

    assets = [make_asset(i, family=("packshots", "videos")[i % 2]) for i in range(120)]
    services, queue = make_services(make_config(chunk_size=50), FakeDam(assets), FakePim())
    set_services(services)
    task = tp.fetch_changed_assets
    # what beat sends: the source, no run id
    task.push_request(id="beat-tick", args=(), kwargs={"source": "dam", "trigger": "schedule"},
                      called_directly=False, retries=0)
    try:
        started = task.run(source="dam", trigger="schedule")
        retried_with = dict(task.request.kwargs)
    finally:
        task.pop_request()
    sent_by_the_tick = [kind for kind, _ in queue.sent]
    queue.drain()
    report = run_report(started["run_id"], services=services)
    print(json.dumps({"started": started, "sent": sent_by_the_tick,
                      "retried_with": retried_with, "state": report["state"],
                      "created": report["counts"].get("created")}))
"""


def test_a_scheduled_sync_starts_and_fetches_in_one_task(namespace: str) -> None:
    out = _python(_BEAT_TICK)
    assert out["started"]["run_id"]
    # the fetch ran inside the beat's task: no fetch message, the chunks are already queued
    assert "fetch" not in out["sent"]
    assert out["sent"] and set(out["sent"]) == {"transform"}
    # a retry (or the final failure) of that task concerns the run it started
    assert out["retried_with"]["run_id"] == out["started"]["run_id"]
    assert out["state"] == "succeeded" and out["created"] == 120


def test_a_second_tick_while_the_source_runs_is_busy_and_fetches_nothing(namespace: str) -> None:
    code = _BEAT_TICK.replace(
        "    task.push_request(",
        "    from connector.pipeline import start_run\n"
        "    holder = start_run('dam', 'manual', services=services, enqueue=False)\n"
        "    task.push_request(",
    ).replace('report = run_report(started["run_id"], services=services)',
              'report = {"state": "busy", "counts": {}}')
    out = _python(code)
    assert out["started"]["busy"] and out["sent"] == []
    assert "run_id" not in out["retried_with"]


def test_entry_points_wire_celery_and_workers_build_their_services(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(
        """
        families:
          packshots:
            match: {folder: products}
            mapping:
              label: {property: name, type: text}
        sources:
          one:
            type: folder
            folder: {path: .}
        """
    ))
    out = _python(
        """
        import json, sys
        from connector.pipeline.services import get_services, wiring
        before = wiring().enqueuer
        import tasks.cli  # the `connector` console script
        cli = type(wiring().enqueuer).__name__, wiring().flush_scheduler is not None
        celery_built_by_cli = "tasks.pipeline" in sys.modules
        from tasks.celery_app import _wire_child
        _wire_child()  # what a prefork child does on worker_process_init
        services = get_services()
        print(json.dumps({
            "before": before is None, "cli": cli,
            "worker": type(services.enqueuer).__name__,
            "sources": [s.name for s in services.config.sources],
            "celery_built_by_cli": celery_built_by_cli,
        }))
        """,
        {"CONNECTOR_CONFIG": str(config)},
    )
    assert out["before"] is True
    assert out["cli"] == ["LazyCeleryEnqueuer", True]
    assert out["worker"] == "LazyCeleryEnqueuer" and out["sources"] == ["one"]
    assert out["celery_built_by_cli"] is False  # wiring alone does not build the app


def test_services_without_wiring_say_so(namespace: str) -> None:
    saved = wiring()
    wire()
    try:
        services = Services(make_config(), client=FakePim(),
                            sources={"dam": FakeDam([make_asset(1)])})
        with pytest.raises(NotWiredError, match="no task queue"):
            _ = services.enqueuer
    finally:
        wire(enqueuer=saved.enqueuer, flush_scheduler=saved.flush_scheduler)


def test_the_procfile_consumes_the_queues_of_the_routing_table() -> None:
    lines = dict(line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines()
                 if line and not line.startswith("#"))
    queues = {name: re.search(r"-Q (\S+)", cmd) for name, cmd in lines.items()}
    assert queues["worker"] is not None and queues["push"] is not None
    assert queues["worker"].group(1).split(",") == list(routing.WORKER_QUEUES)
    assert queues["push"].group(1) == routing.PUSH_QUEUE
    consumed = set(queues["worker"].group(1).split(",")) | {queues["push"].group(1)}
    assert {routing.queue_of(task) for task in routing.ROUTES} <= consumed


def test_connector_imports_neither_celery_nor_kombu_nor_tasks() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(celery|kombu|tasks)\b", re.MULTILINE)
    offenders = []
    for path in sorted((ROOT / "connector").rglob("*.py")):
        if path == ROOT / "connector" / "cli" / "__main__.py":
            continue  # `python -m connector.cli`: a process entry point that runs tasks.cli
        if pattern.search(path.read_text(encoding="utf-8")):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level?) for every import statement of `path`."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def _imported_names(path: Path) -> set[str]:
    """Every module (or module attribute) `path` imports, fully qualified
    (`from tasks import routing` → tasks.routing)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_sandboxes_are_outside_the_product_and_loaded_only_on_demand() -> None:
    """No product module imports the fake servers; `connector sandbox` loads them lazily,
    so an installed connector never imports werkzeug fakes unless asked to serve one."""
    assert not (ROOT / "connector" / "sandbox").exists()
    offenders = []
    lazy_only = ROOT / "connector" / "cli" / "sandbox.py"
    for path in sorted((ROOT / "connector").rglob("*.py")):
        for module, top_level in _imports(path):
            sandbox_module = module == "sandbox" or module.startswith("sandbox.")
            if sandbox_module and (path != lazy_only or top_level):
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []
    # the sandboxes never need Celery; the test harness takes the queue names (plain data)
    harness = ROOT / "sandbox" / "harness.py"
    for path in sorted((ROOT / "sandbox").rglob("*.py")):
        allowed = {"tasks.routing"} if path == harness else set()
        for module in _imported_names(path):
            if module.split(".")[0] in {"tasks", "celery", "kombu"}:
                assert module in allowed, (str(path.relative_to(ROOT)), module)
    assert "tasks.routing" in _imported_names(harness)
    for path in sorted((ROOT / "tasks").rglob("*.py")):  # the harness is not the product's
        assert not {m for m in _imported_names(path) if m.startswith("sandbox.harness")}, path
    assert any(m.startswith("sandbox") for m, top in _imports(lazy_only) if not top)
