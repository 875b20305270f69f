"""docs/quickstart.md, walked through as a test.

Against the sandbox DAM's `nested` shape (Link-header paging, `modified_after`, records
under `data`, `metadata.fields.*`, dotted ids, relative file URLs, no single-asset
endpoint) and the sandbox PIM on 127.0.0.1: the page's own config (read from its yaml
block, so page and test cannot drift) passes `check`, and the CLI prints what the page
shows; each mistake the page makes on purpose prints the line the page shows; `explain`
and `sync --asset` answer as shown; a dry run writes nothing to the PIM; the real sync,
through the CLI and a real Celery worker, lands the assets.

The page runs the sandboxes on their default ports (PIM 8082, DAM 8081); the test uses
free ports and writes the page's URLs back into what the CLI printed before comparing.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import main
from sandbox import harness
from sandbox.dam import DamSandbox
from sandbox.pim import PimSandbox
from sandbox.server import BackgroundServer

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "quickstart.md"
STRUCTURE = ROOT / "examples" / "structure.yaml"
CONNECTOR = str(ROOT / ".venv" / "bin" / "connector")
MARKER = "<!-- tests/test_quickstart.py reads the next yaml block"
DOC_DAM, DOC_PIM = "http://127.0.0.1:8081", "http://127.0.0.1:8082"
TOKEN = "sandbox-dam-token"
GUIDE_ID = "assets.2ce70a5f-f3cf-4300-e8b7-73b7b1558035"     # a user guide (page, §7)
BANNER_ID = "assets.ac1d71cf-bc56-405e-cb6c-74d75cad9b12"    # not a product asset


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_config() -> str:
    """The yaml block after the marker: the config the page tells the user to write."""
    text = doc()
    start = text.index("```yaml\n", text.index(MARKER)) + len("```yaml\n")
    return text[start : text.index("\n```", start)] + "\n"


@dataclass
class Quickstart:
    tmp: Path
    dam: DamSandbox
    dam_server: BackgroundServer
    pim: PimSandbox
    pim_server: BackgroundServer
    namespace: str
    redis_url: str
    applied: str = ""   # what `structure apply` printed

    def env(self, **more: str) -> dict[str, str]:
        return harness.connector_env(
            namespace=self.namespace, redis_url=self.redis_url, broker_url=self.redis_url,
            pim_url=self.pim_server.url, extra={"DAM_URL": self.dam_server.url,
                                                "DAM_TOKEN": TOKEN, **more},
        )

    def write(self, text: str, name: str = "mydam.yaml") -> Path:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return path

    def as_on_the_page(self, output: str) -> str:
        return output.replace(self.dam_server.url, DOC_DAM).replace(self.pim_server.url, DOC_PIM)

    def cli(self, *args: str, **env: str) -> tuple[int, str]:
        """The command in this process (fast): exit code, output as the page shows it."""
        result = CliRunner().invoke(main, list(args), env=self.env(**env),
                                    catch_exceptions=False)
        return result.exit_code, self.as_on_the_page(result.output)

    def cli_process(self, *args: str, config: Path) -> tuple[int, str]:
        """The command as a process of its own (a sync enqueues to the real workers)."""
        out = subprocess.run([CONNECTOR, *args], cwd=ROOT, capture_output=True, text=True,
                             env=self.env(CONNECTOR_CONFIG=str(config)), timeout=240,
                             check=False)
        return out.returncode, self.as_on_the_page(out.stdout + out.stderr)

    def pim_writes(self, since: float) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.pim.log(since)
                if r["method"] != "GET" and r["path"] != "/api/oauth/v1/token"]


@pytest.fixture(scope="module")
def qs(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Quickstart]:
    # `connector sandbox dam --shape nested` serves 200 assets of seed 1: the same records
    dam = DamSandbox(assets=200, shape="nested", seed=1)
    pim = harness.local_pim()
    dam_server, pim_server = dam.serve(), pim.serve()
    world = Quickstart(tmp_path_factory.mktemp("quickstart"), dam, dam_server, pim,
                       pim_server, f"qs-{uuid.uuid4().hex[:10]}", redis_url)
    try:
        code, world.applied = world.cli("structure", "apply", str(STRUCTURE))
        assert code == 0, world.applied
        yield world
    finally:
        dam_server.stop()
        pim_server.stop()
        harness.delete_namespace(world.namespace, redis_url)


def problem(output: str, key: str) -> str:
    """The one line of `output` that starts with `key` (config errors are indented)."""
    found = [ln.strip() for ln in output.splitlines()
             if ln.strip().startswith(key + ":") and ": warning:" not in ln]
    assert len(found) == 1, output
    return found[0]


def test_structure_apply_prints_what_the_page_shows(qs):
    lines = qs.applied.splitlines()
    shown = [ln for ln in lines if ln in doc()]
    assert shown == [
        "created      family    packshots (labels, attribute_as_main_media, product_link_rules)",
        "created      attribute packshots.image_url (type, labels, media_type, prefix)",
        "updated      attribute packshots.label (labels)",
        "created      attribute packshots.media (type, media_type): created by the PIM with "
        "the family (not by this file)",
        "31 created, 1 updated",
    ]


def test_the_pages_config_passes_check_with_the_output_the_page_shows(qs):
    path = qs.write(doc_config())
    since = time.time()
    code, output = qs.cli("check", "-c", str(path))
    assert code == 0, output
    assert qs.pim_writes(since) == []
    lines = output.splitlines()
    assert lines[-1] == "OK: PIM reachable, 3 families checked, no problems, 2 warning(s)"
    page = doc()
    missing = [ln for ln in lines if ln not in page]
    assert missing == [], "check printed lines the page does not show"


MISTAKES: dict[str, tuple[str, str, str, int]] = {
    # name: (text in the page's config, replaced by, key of the problem, exit code)
    "wrong token": ("", "", "sources.mydam.rest.auth", 1),
    "wrong items_path": (
        "items_path: data ", "items_path: items", "sources.mydam.rest.list.items_path", 1
    ),
    "wrong id_field": ("id_field: id ", "id_field: uuid", "sources.mydam.rest.list.id_field", 1),
    "mapping path typo": (
        "product_ref: {property: metadata.fields.sku, type: text}     # what the PIM rule",
        "product_ref: {property: metadata.field.sku, type: text}     # what the PIM rule",
        "families.packshots.mapping.product_ref.property", 1,
    ),
    "unknown pagination key": (
        "page_size: 100}", "page_size: 100, header: Link}",
        "sources.mydam.rest.pagination.header", 2,
    ),
    "relative URL without base": (
        "    media:\n      base_url: ${DAM_URL:-http://127.0.0.1:8081}", "",
        "families.user_guides.mapping.file", 1,
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_of_the_page_prints_the_line_the_page_shows(qs, mistake):
    old, new, key, expected_code = MISTAKES[mistake]
    text = doc_config()
    if old:
        assert text.count(old) == 1, f"the page's config no longer has {old!r}"
        text = text.replace(old, new)
    path = qs.write(text, re.sub(r"\W", "_", mistake) + ".yaml")
    env = {"DAM_TOKEN": "wrong"} if mistake == "wrong token" else {}
    code, output = qs.cli("check", "-c", str(path), **env)
    assert code == expected_code, output
    line = problem(output, key)
    assert line in doc(), f"the page does not show what check printed:\n{line}"
    if mistake == "wrong token":
        assert "wrong" not in output  # the token's value is never printed


def test_explain_without_a_single_asset_endpoint_and_with_scan(qs):
    path = qs.write(doc_config())
    code, output = qs.cli("explain", GUIDE_ID, "-c", str(path))
    assert code == 1
    page = doc()
    assert [ln for ln in output.splitlines() if ln not in page] == []
    assert ("error: source 'mydam' has no single-asset endpoint: set "
            "sources.mydam.rest.get_path") in output

    code, output = qs.cli("explain", BANNER_ID, "--scan", "-c", str(path))
    assert code == 0, output
    assert [ln for ln in output.splitlines() if ln not in page] == []
    assert "transform: skipped: not a product asset: rejected by product_asset: " in output

    code, output = qs.cli("explain", GUIDE_ID, "--scan", "-c", str(path))
    assert code == 0, output
    assert "  found by scanning 5 records of the listing" in output
    assert "PIM: no asset user_guides/" in output and "a sync would create it" in output

    code, output = qs.cli("explain", "assets.nope", "--scan", "-c", str(path))
    assert code == 1
    assert ("DAM asset assets.nope not found in source mydam (scanned all 200 records of the "
            "listing)") in output


def test_a_dry_run_writes_nothing_then_the_real_sync_lands_the_assets(qs):
    config = qs.write(doc_config())
    name = f"qs-{qs.namespace}@127.0.0.1"
    argv = harness.worker_argv(name, queues=harness.QUEUES_AND_DEFAULT, concurrency=2)
    log = qs.tmp / "worker.log"
    worker = harness.start_process(argv, qs.env(CONNECTOR_CONFIG=str(config)), log)
    page = doc()
    try:
        # the page's `sync --asset` needs rest.get_path: the run fails and says so
        code, output = qs.cli_process("sync", "mydam", "--asset", GUIDE_ID, "--wait",
                                      config=config)
        assert code == 1, output + harness.log_tail(log)
        assert ("fetch failed: NoSingleGetError: source 'mydam' has no single-asset endpoint: "
                "set sources.mydam.rest.get_path (a path with {id}, such as /assets/{id})"
                ) in output

        since = time.time()
        code, output = qs.cli_process("sync", "mydam", "--dry-run", "--wait", config=config)
        assert code == 1, output + harness.log_tail(log)   # 4 records would be quarantined
        assert qs.pim_writes(since) == [], "a dry run wrote to the PIM"
        assert qs.pim.counters()["assets_stored"] == 0
        for shown in ("succeeded (dry run: nothing was written)", "  would create 188",
                      "  would upload 47 files", "  would create 5 options",
                      "  quarantined         4", "  … and 168 more assets (--json lists all 188)"):
            assert shown in output and shown in page, shown

        code, output = qs.cli_process("sync", "mydam", "--wait", config=config)
        assert code == 1, output + harness.log_tail(log)   # the quarantined records
        for shown in ("(mydam, manual): succeeded", "  created             188",
                      "  requests            4", "  mean_assets_per_request 47.0"):
            assert shown in output and shown in page, shown
        landed = {f: len(qs.pim.dump_assets(f)) for f in ("packshots", "user_guides", "videos")}
        assert landed == {"packshots": 110, "user_guides": 48 - 1, "videos": 32 - 1}, landed
        counters = qs.pim.counters()
        assert (counters["bulk_assets_total"], counters["media_uploads"]) == (188, 47)
        packshot = qs.pim.dump_assets("packshots")[0]["values"]
        assert packshot["image_url"][0]["data"].startswith(qs.dam_server.url + "/media/")
        assert isinstance(packshot["main_colors"][0]["data"], list)   # the JSON list

        code, output = qs.cli("quarantine", "list", "mydam")
        assert code in (0, 1), output
        assert [ln for ln in output.splitlines() if ln not in page] == []
    finally:
        harness.stop_processes([worker], timeout=15, kill_timeout=5)


def test_the_page_is_linked_from_the_readme_and_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/quickstart.md" in readme[:3000]  # the first screen
    for name in ("design.md", "operations.md"):
        assert "quickstart.md" in (ROOT / "docs" / name).read_text(encoding="utf-8"), name
