"""Secrets from the server's side: what the server itself is given (a key on its command line, a password in
its servers.toml or models.toml ``env``, a password inside a URL) never reaches a result, a log, the HTML
report or the markdown, though the harness's own environment never held it."""

from __future__ import annotations

import json
import secrets
import string
import sys
from pathlib import Path

import pytest

from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import LaunchError
from pytest_coldstart.model.redact import Redactor, argv_secrets
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO
from tests.faults.conftest import TINY, coldstart
from tests.faults.fake_launcher import SERVER

ALNUM = string.ascii_letters + string.digits


def _random(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


@pytest.fixture
def server_secrets(tmp_path: Path) -> tuple[dict[str, str], Path, Path]:
    """A servers.toml entry and a registry whose server is given secrets the harness never sees."""
    values = {"api_key": "sk-" + _random(32), "db_password": _random(20), "redis_password": _random(18),
              "hub_password": _random(16), "short_url_password": _random(6)}  # too short to be learned by value
    servers = tmp_path / "servers.toml"
    servers.write_text(
        "[servers.careless]\n"
        f'command = ["{{python}}", "{SERVER}", "--port", "{{port}}", "--mode", "secrets", '
        f'"--api-key", "{values["api_key"]}"]\n'
        'readiness_url = "{base_url}/health"\n'
        f'env = {{ DB_PASSWORD = "{values["db_password"]}", '
        f'FAKE_URL = "redis://:{values["redis_password"]}@127.0.0.1:6379/0" }}\n')
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "models.toml").write_text(
        f'[models.fake]\nsource = "local:{TINY}"\nserved_name = "fake"\nweight_bytes = 1685112\n'
        'optimizations = ["baseline", "failing"]\n'
        f'env = {{ HUB_MIRROR = "https://ci:{values["hub_password"]}@hub.example.com/models", '
        f'PROXY = "http://u:{values["short_url_password"]}@proxy:3128" }}\n')
    (registry / "optimizations.toml").write_text(
        '[optimizations.baseline]\ncache = "cold"\n\n'
        '[optimizations.failing]\ncache = "cold"\nenv = { FAKE_EXIT = "1" }\n')
    return values, servers, registry


def test_server_side_secrets_reach_no_result_log_report_or_markdown(server_secrets: tuple[dict[str, str], Path, Path],
                                                                    tmp_path: Path) -> None:
    values, servers, registry = server_secrets
    results = tmp_path / "results"
    settings = Settings(registry_dir=registry, results_dir=results, workdir=tmp_path / "work", repo_dir=REPO,
                        timeout_s=30, python=sys.executable, probe=False, otel=False, warm_requests=0,
                        launcher_options=(("command_server", "careless"), ("command_servers", str(servers))))
    runner = ColdStartRunner(settings, load_registry(registry))
    ok = runner.run(Case("fake", "baseline", "command"))
    assert ok.ok, ok.error
    with pytest.raises(LaunchError):  # its error carries the log tail, with the URL it logged
        runner.run(Case("fake", "failing", "command"))
    saved = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]
    assert len(saved) == 2
    good = next(r for r in saved if r["exit_status"] == "ok")
    bad = next(r for r in saved if r["exit_status"] != "ok")
    assert "--api-key" in good["server_argv"] and "***" in good["server_argv"]  # the flag stays, its value not
    assert good["env_overrides"]["HUB_MIRROR"] == "https://ci:***@hub.example.com/models"
    assert "redis://:***@127.0.0.1" in bad["error"]
    report, markdown = tmp_path / "report.html", tmp_path / "efficiency.md"
    out = coldstart("report", str(results), "--out", str(report), "--markdown", str(markdown))
    assert out.returncode == 0, out
    written = [p for p in results.rglob("*") if p.is_file()] + [report, markdown]
    assert len(written) >= 6  # two results, two logs, the report, the markdown
    for path in written:
        text = path.read_text(errors="replace")
        for name, value in values.items():
            assert value not in text, f"{name} leaked into {path}"


def test_argv_secret_flags_and_url_passwords_are_recognised() -> None:
    argv = ["srv", "--api-key", "k" * 12, "--hf-token=hf_x", "--port", "8000", "--password", "p" * 8,
            "--tokenizer", "meta/llama", "--max-tokens", "16"]
    assert argv_secrets(argv) == {"k" * 12, "hf_x", "p" * 8}  # not --tokenizer's nor --max-tokens' value
    redactor = Redactor(())
    assert redactor.redact("GET https://user:hunter2@host/x") == "GET https://user:***@host/x"
    assert redactor.redact("redis://:s3cr3t@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redactor.redact("Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C)") == \
        "Uvicorn running on http://0.0.0.0:8000 (Press CTRL+C)"
