"""Cache hygiene: cold clears and evicts (measured with mincore), warm keeps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_coldstart.optimize import hygiene


def _model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(os.urandom(3 * 2**20))
    return model


def test_evict_drops_the_files_from_the_page_cache(tmp_path: Path) -> None:
    model = _model(tmp_path)
    for path in model.iterdir():
        path.read_bytes()  # bring them in
    before = hygiene.resident_bytes(model / "model.safetensors")
    assert before is not None and before > 2 * 2**20
    result = hygiene.evict(hygiene.model_files(model))
    assert result.files == 2 and result.bytes_total == 3 * 2**20 + 2
    assert result.resident_before_bytes is not None and result.resident_before_bytes >= before
    assert result.resident_after_bytes == 0, "posix_fadvise(DONTNEED) left pages resident"
    assert hygiene.resident_bytes(model / "model.safetensors") == 0


def test_cold_plan_gives_fresh_caches_and_records_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(tmp_path)
    assets = tmp_path / "assets"
    (assets / "model_streamer" / "abc").mkdir(parents=True)
    (assets / "model_streamer" / "abc" / "config.json").write_text("{}")
    plan = hygiene.plan("cold", compile_root=tmp_path / "run" / "vllm_cache", run_root=tmp_path / "run",
                        assets_dir=assets, local_model_dir=model)
    assert plan.env["VLLM_CACHE_ROOT"] == str(tmp_path / "run" / "vllm_cache")
    assert plan.env["TRITON_CACHE_DIR"].startswith(plan.env["VLLM_CACHE_ROOT"])
    assert Path(plan.env["HF_HUB_CACHE"]).is_dir() and not any(Path(plan.env["HF_HUB_CACHE"]).iterdir())
    (model / "model.safetensors").read_bytes()
    record = hygiene.apply(plan).to_record()
    assert not any(assets.iterdir())
    assert record["hygiene"] == "cold" and record["kept"] == []
    cleared = " | ".join(record["cleared"])
    for what in ("VLLM_CACHE_ROOT", "HF hub cache", "vLLM assets", "page cache of the model's 2 local file(s)"):
        assert what in cleared
    assert record["page_cache"]["files"] == 2 and record["page_cache"]["resident_after_bytes"] == 0


def test_cold_refuses_a_used_compile_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "torch_compile_cache").mkdir(parents=True)
    with pytest.raises(ValueError, match="needs an empty VLLM_CACHE_ROOT"):
        hygiene.plan("cold", compile_root=root, run_root=tmp_path, assets_dir=tmp_path / "a", local_model_dir=None)


def test_compile_keeps_the_compile_cache_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "torch_compile_cache").mkdir(parents=True)
    plan = hygiene.plan("compile", compile_root=root, run_root=tmp_path / "run", assets_dir=tmp_path / "a",
                        local_model_dir=None)
    record = hygiene.apply(plan).to_record()
    assert (root / "torch_compile_cache").is_dir()
    assert record["kept"] and "VLLM_CACHE_ROOT" in record["kept"][0]
    assert any("HF hub cache" in c for c in record["cleared"])


def test_warm_keeps_everything(tmp_path: Path) -> None:
    model = _model(tmp_path)
    (model / "model.safetensors").read_bytes()
    plan = hygiene.plan("warm", compile_root=tmp_path / "root", run_root=tmp_path / "run",
                        assets_dir=tmp_path / "a", local_model_dir=model)
    assert "HF_HUB_CACHE" not in plan.env and "TRITON_CACHE_DIR" not in plan.env
    record = hygiene.apply(plan).to_record()
    assert record["cleared"] == [] and record["page_cache"]["files"] == 0
    assert (hygiene.resident_bytes(model / "model.safetensors") or 0) > 0
    with pytest.raises(ValueError, match="unknown hygiene mode"):
        hygiene.plan("tepid", compile_root=tmp_path, run_root=tmp_path, assets_dir=tmp_path, local_model_dir=None)
