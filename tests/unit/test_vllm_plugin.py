"""The in-vLLM probe: stdlib only, inert without the env var, wraps without changing behaviour.

These run the probe in a fresh interpreter against a stand-in ``vllm`` package
(the hook mechanics only); the real vLLM is exercised by
tests/integration/test_inside_vllm.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO


def _run(code: str, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "COLDSTART_EVENTS_FILE"}
    full["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(REPO)])
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True,
                          timeout=120, check=False)


def _fake_vllm(tmp_path: Path) -> None:
    worker = tmp_path / "site" / "vllm" / "v1" / "worker"
    worker.mkdir(parents=True)
    for d in (tmp_path / "site" / "vllm", tmp_path / "site" / "vllm" / "v1", worker):
        (d / "__init__.py").write_text("")
    (worker / "gpu_worker.py").write_text(textwrap.dedent("""
        def init_worker_distributed_environment(*a):
            return "dist"

        class Worker:
            rank = 3
            def load_model(self, *, load_dummy_weights=False):
                return ("loaded", load_dummy_weights)
            def determine_available_memory(self):
                raise MemoryError("boom")
            def compile_or_warm_up_model(self):
                return self.load_model()  # a wrapped step calling another
    """))
    # An importer that binds the function by name, as cpu_worker.py does in vLLM 0.32.
    (worker / "cpu_worker.py").write_text(textwrap.dedent("""
        from vllm.v1.worker.gpu_worker import Worker, init_worker_distributed_environment
        class CPUWorker(Worker):
            def init_device(self):
                return init_worker_distributed_environment()
    """))


def test_import_pulls_in_only_the_standard_library(tmp_path):
    out = _run("""
        import sys
        before = set(sys.modules)
        import pytest_coldstart.logs.vllm_plugin
        new = {m.split('.')[0] for m in set(sys.modules) - before if not m.startswith('__')}  # __mp_main__: an alias
        print(sorted(new - set(sys.stdlib_module_names) - {'pytest_coldstart'}))
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_inert_without_the_env_var(tmp_path):
    _fake_vllm(tmp_path)
    out = _run("""
        import sys
        hooks = list(sys.meta_path)
        from pytest_coldstart.logs import vllm_plugin
        vllm_plugin.register()
        from vllm.v1.worker.gpu_worker import Worker
        assert sys.meta_path == hooks
        assert not hasattr(Worker.load_model, "__coldstart_wrapped__")
        assert not hasattr(Worker.load_model, "__wrapped__")
        print("inert")
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "inert"


def test_wraps_steps_on_import_and_records_events(tmp_path):
    _fake_vllm(tmp_path)
    events = tmp_path / "events.jsonl"
    out = _run("""
        from pytest_coldstart.logs import vllm_plugin
        vllm_plugin.register()
        vllm_plugin.register()  # vLLM may call it more than once per process
        from vllm.v1.worker.gpu_worker import Worker
        from vllm.v1.worker.cpu_worker import CPUWorker
        w = CPUWorker()
        assert w.load_model(load_dummy_weights=True) == ("loaded", True)
        assert w.compile_or_warm_up_model() == ("loaded", False)
        try:
            w.determine_available_memory()
        except MemoryError as exc:
            assert str(exc) == "boom"  # the server's own exception, unchanged
        else:
            raise AssertionError("exception swallowed")
        assert w.init_device() == "dist"
        assert Worker.load_model.__name__ == "load_model"
    """, tmp_path, {"COLDSTART_EVENTS_FILE": str(events)})
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    steps = [(r["step"], r.get("rank"), r.get("error")) for r in records if r["kind"] == "step"]
    assert steps[0][0] == "imports"
    assert ("load_model", 3, None) in steps
    assert ("memory_profiling", 3, "MemoryError") in steps
    assert ("distributed_init", None, None) in steps  # bound by name in cpu_worker, still wrapped
    assert ("device_init", 3, None) in steps
    # compile_or_warm_up_model called load_model: both recorded, nested.
    assert [s for s, _, _ in steps].count("load_model") == 2
    for r in records:
        if r["kind"] == "step":
            assert r["mono_start"] <= r["mono_end"] and r["wall_start"] <= r["wall_end"]
            assert r["pid"] > 0 and r["process"] == "main"
    # Targets this stand-in lacks are reported once each, not raised.
    missing = [r["target"] for r in records if r["kind"] == "missing"]
    assert "vllm.v1.worker.gpu_worker:Worker.initialize_from_config" in missing
    assert len(missing) == len(set(missing))


def test_an_unwritable_events_file_never_breaks_the_server(tmp_path):
    _fake_vllm(tmp_path)
    out = _run("""
        from pytest_coldstart.logs import vllm_plugin
        vllm_plugin.register()
        from vllm.v1.worker.gpu_worker import Worker
        print(Worker().load_model())
    """, tmp_path, {"COLDSTART_EVENTS_FILE": str(tmp_path / "no" / "such" / "dir" / "events.jsonl")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('loaded', False)"
    assert "pytest-coldstart probe: cannot append" in out.stderr
    assert out.stderr.count("cannot append") == 1  # logged once


def test_the_v2_model_runner_is_hooked(tmp_path):
    """vLLM 0.32's V2 runner (v1/worker/gpu/model_runner.py) has its own load_model and capture_model (issue 19)."""
    _fake_vllm(tmp_path)
    gpu = tmp_path / "site" / "vllm" / "v1" / "worker" / "gpu"
    gpu.mkdir()
    (gpu / "__init__.py").write_text("")
    (gpu / "model_runner.py").write_text(textwrap.dedent("""
        class GPUModelRunner:
            def load_model(self, load_dummy_weights=False):
                return "v2-loaded"
            def capture_model(self, *, profile_only=False):
                return 1024
    """))
    events = tmp_path / "events.jsonl"
    out = _run("""
        from pytest_coldstart.logs import vllm_plugin
        vllm_plugin.register()
        from vllm.v1.worker.gpu.model_runner import GPUModelRunner
        from vllm.v1.worker.gpu_worker import Worker
        runner = GPUModelRunner()
        assert runner.capture_model(profile_only=True) == 1024
        assert runner.load_model() == "v2-loaded"
        # The worker's step wraps the runner's: the nested call of the same step is not recorded again.
        Worker.load_model = vllm_plugin._wrap(lambda self: runner.load_model(), "load_model")
        Worker().load_model()
    """, tmp_path, {"COLDSTART_EVENTS_FILE": str(events)})
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "step"]
    assert steps.count("graph_capture") == 1
    assert steps.count("load_model") == 2  # the runner's own call, then the worker's (not its nested runner call)
    missing = {r["target"] for r in records if r["kind"] == "missing"}
    assert "vllm.v1.worker.gpu.model_runner:GPUModelRunner.profile_run" in missing
    assert "vllm.v1.worker.gpu.model_runner:GPUModelRunner.capture_model" not in missing
