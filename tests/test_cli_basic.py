"""The `connector` CLI skeleton: help/version, structure apply, cache, check, sandbox knobs.

Commands run through click's CliRunner against the sandbox PIM over HTTP; `--help` and
`check` also run once as real subprocesses (the installed console script).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from connector.cli import main
from sandbox.pim import PimSandboxSettings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "structure.yaml"
CONNECTOR = shutil.which("connector", path=str(Path(sys.executable).parent)) or "connector"

CONFIG: dict[str, Any] = {
    "pim": {"locales": ["en_US", "fr_FR", "de_DE"], "option_writes_per_second": 1000},
    "families": {
        "packshots": {
            "match": {"folder": "products/packshots"},
            "locale": {"default": "en_US"},
            "mapping": {"image_url": "original", "label": "name",
                        "main_colors": {"property": "property_colors"},
                        "product_ref": "property_sku"},
        },
    },
    "sources": {"dam": {"type": "rest",
                        "rest": {"base_url": "http://127.0.0.1:9", "list": {"path": "/a"}}}},
}


@pytest.fixture
def env(pim_server, namespace, monkeypatch) -> dict[str, str]:
    """AKENEO_* for the sandbox (namespace already sets CONNECTOR_NAMESPACE and REDIS_URL)."""
    sandbox, server = pim_server
    sandbox.reset()
    values = {
        "AKENEO_URL": server.url,
        "AKENEO_CLIENT_ID": "sandbox-client",
        "AKENEO_CLIENT_SECRET": "sandbox-secret",
        "AKENEO_USERNAME": "sandbox",
        "AKENEO_PASSWORD": "sandbox-password",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CONNECTOR_CONFIG", raising=False)
    return {**values, "CONNECTOR_NAMESPACE": namespace,
            "REDIS_URL": os.environ["REDIS_URL"]}


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_and_version_in_a_real_process():
    done = subprocess.run([CONNECTOR, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for command in ("cache", "check", "sandbox", "structure"):
        assert command in done.stdout
    done = subprocess.run([CONNECTOR, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "0.1.0" in done.stdout


def test_structure_apply_then_reapply(env, pim_server, tmp_path):
    sandbox, _ = pim_server
    fast = write_config(tmp_path, CONFIG)  # option writes unthrottled (default: 3/s)
    result = run("structure", "apply", str(EXAMPLE), "-c", fast)
    assert result.exit_code == 0, result.output
    assert "created      family    packshots" in result.output
    assert "updated      attribute packshots.label (labels)" in result.output
    result = run("structure", "apply", str(EXAMPLE), "--json", "-c", fast)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["unchanged"] == len(report["items"]) == 27
    assert report["summary"]["created"] == report["summary"]["updated"] == 0
    assert sandbox.store.get_family("videos")["attribute_as_main_media"] == "video_url"


def test_structure_apply_dry_run_writes_nothing(env, pim_server):
    sandbox, _ = pim_server
    result = run("structure", "apply", str(EXAMPLE), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create family    packshots" in result.output
    # what the real apply reports: `label` of packshots updated, the PIM's own attributes
    assert result.output.strip().endswith("dry run: 31 created, 1 updated")
    assert sandbox.store.families == {}


def test_structure_apply_invalid_file_exits_2_with_paths(env, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("families:\n  f:\n    attributes:\n      a: {type: colour}\n",
                    encoding="utf-8")
    result = run("structure", "apply", str(path))
    assert result.exit_code == 2
    assert "families.f.attributes.a.type: Must be one of" in result.stderr


def test_structure_apply_conflict_exits_1(env, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("families:\n  f:\n    attributes:\n"
                    "      media: {type: media_link, media_type: image}\n", encoding="utf-8")
    result = run("structure", "apply", str(path))
    assert result.exit_code == 1
    assert "CONFLICT     attribute f.media: type is 'media_file' in the PIM" in result.output


def test_cache_show_and_refresh(env, pim_server, tmp_path):
    fast = write_config(tmp_path, CONFIG)
    assert run("structure", "apply", str(EXAMPLE), "-c", fast).exit_code == 0
    result = run("cache", "show", "--json", "packshots")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    packshots = shown["families"]["packshots"]
    assert packshots["attributes"]["main_colors"]["options"][:2] == ["red", "blue"]
    assert 0 < packshots["expires_in"] <= 900
    assert shown["stats"] == {"hits": 0, "misses": 1, "fetches": 1}

    result = run("cache", "show")
    assert result.exit_code == 0
    assert "packshots: 9 attributes, main media image_url" in result.output
    assert "main_colors" in result.output and "8 options" in result.output
    assert "counters: 0 hits, 1 misses, 1 fetches" in result.output

    result = run("cache", "refresh", "packshots", "nope")
    assert result.exit_code == 1
    assert "packshots: refreshed (9 attributes)" in result.output
    assert "asset family 'nope' does not exist in the PIM" in result.stderr


def test_missing_pim_credentials_exit_2(env, monkeypatch):
    monkeypatch.delenv("AKENEO_CLIENT_SECRET")
    result = run("cache", "show", "packshots")
    assert result.exit_code == 2
    assert "AKENEO_CLIENT_SECRET" in result.stderr


def test_check_in_a_real_process(env, pim_server, tmp_path):
    good = write_config(tmp_path, CONFIG)
    assert run("structure", "apply", str(EXAMPLE), "-c", good).exit_code == 0
    proc_env = {**os.environ, **env}
    # the PIM side only: this config's DAM (127.0.0.1:9) is down on purpose
    done = subprocess.run([CONNECTOR, "check", "--no-dam", "--config", good],
                          capture_output=True, text=True, timeout=60, env=proc_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: PIM reachable, 1 family checked, no problems" in done.stdout

    broken = dict(CONFIG, families={"packshots": dict(CONFIG["families"]["packshots"])})
    broken["families"]["packshots"]["mapping"] = {"main_colour": "property_colors"}
    done = subprocess.run([CONNECTOR, "check", "--json"], capture_output=True, text=True,
                          timeout=60, env={**proc_env,
                                           "CONNECTOR_CONFIG": write_config(tmp_path, broken)})
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    assert report["findings"][0]["path"] == "families.packshots.mapping.main_colour"
    assert "sources.dam.rest.base_url" in [f["path"] for f in report["findings"]]  # DAM down
    assert report["sources"]["dam"]["reachable"] is False


def test_check_asks_the_media_connection_for_a_token(env, pim_server, tmp_path, monkeypatch):
    """AKENEO_MEDIA_* (uploads on a second Akeneo connection): `check` proves it works,
    says what the PIM answered when it does not, refuses the main connection twice over,
    and a partial set is a configuration error."""
    sandbox, _server = pim_server
    good = write_config(tmp_path, CONFIG)
    assert run("structure", "apply", str(EXAMPLE), "-c", good).exit_code == 0
    media = {"AKENEO_MEDIA_CLIENT_ID": "uploads", "AKENEO_MEDIA_CLIENT_SECRET": "up-secret",
             "AKENEO_MEDIA_USERNAME": "sandbox", "AKENEO_MEDIA_PASSWORD": "sandbox-password"}
    for key, value in media.items():
        monkeypatch.setenv(key, value)
    sandbox.update_settings(extra_clients={"uploads": "up-secret"})
    try:
        ok = run("check", "--no-dam", "--config", good)
        assert ok.exit_code == 0, ok.output
        monkeypatch.setenv("AKENEO_MEDIA_CLIENT_SECRET", "wrong")
        refused = run("check", "--no-dam", "--json", "--config", good)
        assert refused.exit_code == 1, refused.output
        finding = json.loads(refused.stdout)["findings"][0]
        assert finding["path"] == "environment AKENEO_MEDIA_*"
        assert "refused the media connection" in finding["message"]
        assert "wrong" not in refused.output
        monkeypatch.setenv("AKENEO_MEDIA_CLIENT_ID", "sandbox-client")
        same = run("check", "--no-dam", "--config", good)
        assert same.exit_code == 1 and "is the main connection" in same.stdout
        monkeypatch.delenv("AKENEO_MEDIA_PASSWORD")
        partial = run("check", "--no-dam", "--config", good)
        assert partial.exit_code == 2 and "AKENEO_MEDIA_PASSWORD" in partial.stderr
    finally:
        sandbox.update_settings(extra_clients={})


def test_check_config_errors_exit_2(env, tmp_path):
    bad = dict(CONFIG, pim={"timeout": -1}, families={"packshots": {"mapping": {}}})
    result = run("check", "--config", write_config(tmp_path, bad))
    assert result.exit_code == 2
    assert "configuration error(s)" in result.stderr
    assert "pim.timeout" in result.stderr
    assert "families.packshots.match" in result.stderr
    result = run("check")  # no config at all
    assert result.exit_code == 2
    assert "CONNECTOR_CONFIG" in result.stderr


def test_sandbox_knobs_are_validated_before_serving():
    result = run("sandbox", "pim", "--port", "0", "--set", "latency=fast", "--set", "nope=1")
    assert result.exit_code == 2
    assert "--set latency:" in result.stderr
    assert "--set nope: unknown setting" in result.stderr


def test_sandbox_knob_types_follow_the_defaults():
    from connector.cli.sandbox import apply_settings

    settings = apply_settings(PimSandboxSettings(), (
        "latency=0.25", "max_concurrency=2", "reject_early=yes", "locales=[\"en_US\"]",
        "seed=7",
    ))
    assert settings.latency == 0.25 and settings.max_concurrency == 2
    assert settings.reject_early is True and settings.locales == ["en_US"]
    assert settings.seed == 7
