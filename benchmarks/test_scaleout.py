"""The scale-out benchmark: `pytest benchmarks -m scaleout --model tiny-llama` (the CPU-lane form).

One real run per --model: a local two-node Ray cluster (or --coldstart-ray-address), Ray Serve LLM autoscaling
from 1 to --scaleout-max-replicas under a stair-step load from `vllm bench serve`. Writes
results/scaleout/<run>.json and its figure, checks the scale-out budgets (benchmarks/budgets.toml,
[MODEL."scaleout@ray-serve"]), and records the asv series when --coldstart-asv is given.
"""

from __future__ import annotations

import shlex
import sys

import pytest

from pytest_coldstart.history.commits import resolve
from pytest_coldstart.history.scaleout import record_scaleout
from pytest_coldstart.launch.ray_cluster import parse_nodes
from pytest_coldstart.measure.scaleout import Profile, ScaleoutRun, ScaleoutSettings, parse_steps
from pytest_coldstart.model.errors import ColdstartError
from pytest_coldstart.model.scaleout import SCALEOUT_OPTIMIZATION
from pytest_coldstart.plugin import state_of
from pytest_coldstart.report.scaleout import scaleout_figure


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scaleout_model" in metafunc.fixturenames:
        metafunc.parametrize("scaleout_model", state_of(metafunc.config).models)


def _settings(config: pytest.Config, model: str) -> ScaleoutSettings:
    state = state_of(config)
    opt = config.getoption
    try:
        input_len, output_len = (int(x) for x in str(opt("scaleout_io")).split(","))
    except ValueError:
        raise pytest.UsageError(f"--scaleout-io {opt('scaleout_io')!r}: expected INPUT,OUTPUT tokens, e.g. 32,128") from None
    profile = Profile(steps=parse_steps(opt("scaleout_steps")), input_len=input_len, output_len=output_len,
                      ttft_slo_s=opt("scaleout_slo"), max_replicas=opt("scaleout_max_replicas"),
                      target_ongoing_requests=opt("scaleout_target_ongoing"))
    cluster = parse_nodes(opt("scaleout_nodes"))
    if len(cluster.workers) + 1 < profile.max_replicas:
        raise pytest.UsageError(f"--scaleout-nodes {opt('scaleout_nodes')!r}: one node per replica is needed for "
                                f"--scaleout-max-replicas {profile.max_replicas}")

    def progress(note: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(f"[scaleout] {model}: {note}")

    return ScaleoutSettings(
        model=model, results_dir=state.settings.results_dir, workdir=state.settings.workdir,
        repo_dir=state.settings.repo_dir, registry_dir=state.settings.registry_dir, profile=profile, cluster=cluster,
        ray_address=dict(state.settings.launcher_options).get("ray_address") or None,
        timeout_s=opt("scaleout_timeout"), replica_timeout_s=opt("scaleout_replica_timeout"),
        loadgen_command=tuple(shlex.split(opt("scaleout_loadgen_cmd"))), python=sys.executable, progress=progress)


@pytest.mark.scaleout
@pytest.mark.timeout(2400)  # the whole run is bounded by --scaleout-timeout (1500 s) plus tear-down
def test_scale_out(request: pytest.FixtureRequest, scaleout_model: str) -> None:
    config = request.config
    state = state_of(config)
    try:
        settings = _settings(config, scaleout_model)
        result = ScaleoutRun(settings, state.registry).run()
    except ColdstartError as exc:
        pytest.fail(str(exc), pytrace=False)
    figure = scaleout_figure(result, settings.results_dir / "scaleout" / f"{result.run_id}.png")
    print(f"\n{figure.title}\nfigure: {figure.path}")
    for step in result.steps:
        print(f"  {step.label:8} {step.rate_rps or 0:5.1f} req/s offered, {step.achieved_rps or 0:6.2f} achieved, "
              f"replicas {step.replicas_start}->{step.replicas_end}, TTFT p50/p95/p99 "
              f"{step.ttft_p50_s}/{step.ttft_p95_s}/{step.ttft_p99_s} s, {step.completed} ok, {step.failed} failed")
    history = state.history
    if history.asv_dir is not None:
        outcome = record_scaleout([result], history.asv_dir, resolve(history.repo_dir, history.commit),
                                  machine=history.machine)
        print(f"asv: {outcome.path}")
    assert result.ray_processes_left == (), f"Ray processes left behind: {result.ray_processes_left}"
    assert result.max_replicas_reached >= 2, "Serve never ran a second replica"
    assert result.replica_add_s is not None, "no replica_add_s: the added replica never served a request"
    # The budgets in force (--coldstart-budgets, else the packaged ones + benchmarks/budgets.toml), as for starts.
    budgets = state.budgets.for_case(scaleout_model, SCALEOUT_OPTIMIZATION, "ray-serve")
    measured = {"replica_add_s": result.replica_add_s, "ttft_p95_scaleout_s": result.ttft_p95_scaleout_s()}
    over = {k: (v, budgets[k]) for k, v in measured.items() if v is not None and k in budgets and v > budgets[k]}
    assert not over, "over budget: " + ", ".join(f"{k} {v:.1f} s > {b:.0f} s" for k, (v, b) in over.items())
