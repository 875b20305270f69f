"""Each docs/sources/<dam>.md walkthrough, as a new user copies it (issue 14: "each vendor
example syncs against its sandbox (or moto) from a fresh clone with only the README and
docs/sources/"): the sandbox shape, the exported variables and the config path are read
from the page's runnable block itself, then `connector check` must pass against that
sandbox (moto for S3) and the PIM sandbox with the demo structure. The doc's ports are
swapped for free ones; nothing else of the page is changed. The full sync through workers
is tests/e2e/test_s3_sqs_e2e.py (S3) and the sandbox syncs of tests/test_dam_*.py."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from sandbox.dam import DamSandbox
from sandbox.harness import SandboxSecrets, local_pim
from sandbox.server import BackgroundServer
from tests.aws_moto import Aws

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "sources"
RUNNABLE = re.compile(r"^## (?:A runnable example|Try it)[^\n]*\n(.*?)^```bash\n(.*?)^```",
                      re.M | re.S)


def runnable_block(page: str) -> str:
    """The first bash block of the page's runnable section, continuation lines joined."""
    match = RUNNABLE.search((DOCS / page).read_text())
    assert match, f"docs/sources/{page} has no runnable bash block"
    return match.group(2).replace("\\\n", " ")


def exports(block: str) -> dict[str, str]:
    """KEY=VALUE of every `export` line (comments dropped, as the shell does)."""
    found: dict[str, str] = {}
    for line in block.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line[len("export "):], comments=True):
                key, _, value = word.partition("=")
                found[key] = value
    return found


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def pim_server() -> Iterator[BackgroundServer]:
    server = local_pim().serve()
    yield server
    server.stop()


@pytest.fixture
def pim_env(pim_server: BackgroundServer, namespace: str,
            monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox PIM of docs/quickstart.md §2, its structure applied."""
    for key, value in SandboxSecrets().env(pim_server.url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONNECTOR_CONFIG", raising=False)
    result = run("structure", "apply", str(ROOT / "examples" / "structure.yaml"))
    assert result.exit_code == 0, result.output


def passes_check(config: Path, block: str) -> dict[str, Any]:
    """`connector check --json` passes, and every `connector sync NAME` of the page names
    a source of the config."""
    result = run("check", "-c", str(config), "--json")
    report: dict[str, Any] = json.loads(result.output)
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert (result.exit_code, errors) == (0, []), result.output
    sources = yaml.safe_load(config.read_text())["sources"]
    named = re.findall(r"^connector (?:sync|reconcile|intake sqs) (\w+)", block, re.M)
    assert named and set(named) <= set(sources), (named, sorted(sources))
    for name in set(named):
        probe = report["sources"][name]
        assert probe["reachable"] and probe["sampled"] > 0, probe
    return report


@pytest.mark.parametrize("page", ["cloudinary.md", "bynder.md", "graphql.md"])
def test_a_vendor_walkthrough_passes_check_against_its_sandbox(
    page: str, pim_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = runnable_block(page)
    dam = re.search(r"^connector sandbox dam --shape (\w+) --port (\d+)", block, re.M)
    assert dam, block
    shape, port = dam.groups()
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    pim_port = re.search(r"^connector sandbox pim &\s+# http://127\.0\.0\.1:(\d+)", quickstart,
                         re.M)
    assert pim_port and port != pim_port.group(1), "the DAM sandbox on the PIM sandbox's port"
    sandbox = DamSandbox(assets=60, shape=shape, seed=4)
    server = sandbox.serve()
    try:
        netloc = server.url.split("://", 1)[1]
        variables = exports(block)
        for key, value in variables.items():
            monkeypatch.setenv(key, value.replace(f"127.0.0.1:{port}", netloc))
        config = ROOT / variables["CONNECTOR_CONFIG"]
        monkeypatch.delenv("CONNECTOR_CONFIG")  # check -c, as the tests of check do
        passes_check(config, block)
    finally:
        server.stop()


def test_the_s3_walkthrough_passes_check_against_moto(
    aws: Aws, pim_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """docs/sources/s3.md: its exports, its bucket script and its `sed` copy of
    examples/s3.yaml, with moto's port for 5000."""
    block = runnable_block("s3.md").replace("http://127.0.0.1:5000", aws.url)
    for key, value in exports(block).items():
        if key != "CONNECTOR_CONFIG":
            monkeypatch.setenv(key, value)
    script = re.search(r"^python - <<'PY'\n(.*?)^PY$", block, re.M | re.S)
    assert script, block
    exec(compile(script.group(1), "docs/sources/s3.md", "exec"), {})
    sed = re.search(r"^sed .*?> my-s3\.yaml$", block, re.M)
    assert sed, block
    command = sed.group(0).replace("> my-s3.yaml", f"> {shlex.quote(str(tmp_path))}/my-s3.yaml")
    subprocess.run(["bash", "-c", command], cwd=ROOT, check=True)
    report = passes_check(tmp_path / "my-s3.yaml", block)
    assert report["sources"]["bucket"]["families"]["user_guides"] == 1, report["sources"]
