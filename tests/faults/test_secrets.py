"""No secret from a profile file or a token file, nor one shaped like a token, reaches results/, a log,
the HTML report or the PR markdown, whatever path it took (the server's output, its argv, the error)."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest

from pytest_coldstart.launch import registry as launch_registry
from pytest_coldstart.measure.runner import ColdStartRunner, Settings
from pytest_coldstart.model.case import Case
from pytest_coldstart.model.errors import LaunchError
from pytest_coldstart.model.redact import Redactor
from pytest_coldstart.model.registry import load_registry
from tests.conftest import REPO
from tests.faults.conftest import CPU_LANE, coldstart, fake_registry

ALNUM = string.ascii_letters + string.digits


def _random(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


@pytest.fixture
def leaked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """Secrets that never pass through a secret-named env var: files only, or recognisable by shape."""
    values = {
        "hf_token_file": "hf_" + _random(34),
        "aws_profile_secret": _random(40, ALNUM + "/+"),
        "aws_profile_key_id": "AKIA" + _random(16, string.ascii_uppercase + string.digits),
        "bearer": _random(30),
        "signature": _random(64, "0123456789abcdef"),
    }
    (tmp_path / "hf_token").write_text(values["hf_token_file"] + "\n")
    (tmp_path / "aws_credentials").write_text(
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = notthisone123456\n"
        f"[ci]\naws_access_key_id = {values['aws_profile_key_id']}\n"
        f"aws_secret_access_key = {values['aws_profile_secret']}\n")
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf_token"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws_credentials"))
    (tmp_path / "leak.txt").write_text(
        f"using hub login {values['hf_token_file']}\n"
        f"profile ci secret {values['aws_profile_secret']} for {values['aws_profile_key_id']}\n"
        f"GET /api/models Authorization: Bearer {values['bearer']}\n"
        f"fetch https://b.s3.amazonaws.com/k?X-Amz-Signature={values['signature']}&x=1\n")
    monkeypatch.setenv("FAKE_LEAK_FILE", str(tmp_path / "leak.txt"))
    # The server's argv carries one too (a --hf-token style flag).
    monkeypatch.setenv("FAKE_ARGS", f"--hf-token {values['hf_token_file']}")
    return values


def test_no_secret_reaches_results_logs_report_or_markdown(leaked: dict[str, str], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(launch_registry.LAUNCHERS, "fake", "tests.faults.fake_launcher:FakeLauncher")
    registry = fake_registry(tmp_path / "registry")
    results = tmp_path / "results"
    runner = ColdStartRunner(Settings(registry_dir=registry, results_dir=results, workdir=tmp_path / "work",
                                      repo_dir=REPO, timeout_s=30), load_registry(registry))
    with pytest.raises(LaunchError) as caught:
        runner.run(Case("fake", "mode_leaky", "fake"))
    assert "DEBUG using hub login ***" in str(caught.value)  # the log tail is in the error, masked
    report = tmp_path / "report.html"
    markdown = tmp_path / "pr.md"
    out = coldstart("report", str(results), "--out", str(report))
    assert out.returncode == 0, out
    # A base where the same case started: the head's failure is then a row of the markdown, with its error.
    (saved,) = (results / "runs").glob("*.json")
    data = json.loads(saved.read_text())
    data.update(exit_status="ok", error=None, total_ready_s=1.0, server_exit_code=0)
    (tmp_path / "base" / "runs").mkdir(parents=True)
    (tmp_path / "base" / "runs" / saved.name).write_text(json.dumps(data))
    out = coldstart("compare", str(tmp_path / "base"), str(results), "--budgets", "", "--markdown", str(markdown))
    assert out.returncode == 1 and "HEAD server failed to start" in markdown.read_text(), out
    written = [p for p in results.rglob("*") if p.is_file()] + [report, markdown]
    assert len(written) >= 4  # result, log, report, markdown
    for path in written:
        text = path.read_text(errors="replace")
        for name, value in leaked.items():
            assert value not in text, f"{name} leaked into {path}"
    assert "X-Amz-Signature=***" in (results / "logs").joinpath(next(iter(
        p.name for p in (results / "logs").iterdir()))).read_text()


def test_patterns_are_masked_without_knowing_the_value() -> None:
    redactor = Redactor(())
    text = ("hf_" + "a1" * 17 + " ASIA" + "B" * 16 + " Authorization: Bearer eyJhbGciOi.x-y_z"
            " ?X-Amz-Credential=AKIA%2F&X-Amz-Security-Token=IQo&X-Amz-Signature=abc123")
    masked = redactor.redact(text)
    assert masked == ("*** *** Authorization: Bearer *** ?X-Amz-Credential=***&X-Amz-Security-Token=***"
                      "&X-Amz-Signature=***")
    assert redactor.redact("token generation took 3 s; Bearer") == "token generation took 3 s; Bearer"


def test_the_cpu_lane_data_is_unchanged_by_redaction() -> None:
    """Ordinary log lines (paths, hashes, numbers) are not mistaken for secrets."""
    redactor = Redactor(())
    for log in (CPU_LANE.parent.parent / "vllm-cpu").glob("*.log"):
        text = log.read_text()
        assert redactor.redact(text) == text, log
