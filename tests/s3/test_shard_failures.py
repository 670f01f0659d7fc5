"""A sharded save that fails leaves nothing that looks finished."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.optimize.shard import ShardError, ShardSpec, save_sharded
from tests.conftest import requires_vllm


def test_not_a_model_dir_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        save_sharded(ShardSpec(tmp_path), tmp_path / "out", env={}, log_path=tmp_path / "log")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
@requires_vllm
def test_a_crashing_save_leaves_no_checkpoint(tmp_path: Path) -> None:
    model = tmp_path / "broken-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["NoSuchArchitecture"], "model_type": "nope"}))
    out = tmp_path / "shards" / "broken-tp1"
    out.mkdir(parents=True)
    (out / "model-rank-0-part-0.safetensors").write_bytes(b"an older save")
    env = {**os.environ, "VLLM_CACHE_ROOT": str(tmp_path / "vc"), "HF_HUB_OFFLINE": "1"}
    with pytest.raises(ShardError, match=r"failed \(exit code [1-9]\d*\); full log: .*broken\.log"):
        save_sharded(ShardSpec(model), out, env=env, log_path=tmp_path / "broken.log", timeout_s=300)
    # The older save is untouched and no staging directory is left behind.
    assert (out / "model-rank-0-part-0.safetensors").read_bytes() == b"an older save"
    assert sorted(p.name for p in out.parent.iterdir()) == ["broken-tp1"]
