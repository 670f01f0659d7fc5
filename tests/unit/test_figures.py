"""Figures are drawn from the right data: the bars are the phases, gaps and TTFT of the results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from pytest_coldstart.logs.timeline import Phase
from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.report import figures
from pytest_coldstart.report.figures import (
    KIND_ACHIEVED,
    KIND_FLOOR,
    KIND_GAP,
    KIND_PHASE,
    KIND_REPORTED,
    KIND_TTFT,
    comparison,
    efficiency_chart,
    median_run,
    unaccounted_gaps,
    waterfall,
)

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cpu_lane() -> list[RunResult]:
    return load_results(RESULTS / "cpu-lane")


def h100() -> list[RunResult]:
    return load_results(RESULTS / "h100-llama70b")


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_waterfall_draws_every_observed_phase_where_it_happened(tmp_path: Path) -> None:
    result = next(r for r in cpu_lane() if r.optimization == "baseline" and r.exit_status == "ok")
    info = waterfall(result, tmp_path / "wf.png")
    assert is_png(info.path)
    drawn = [(b.label, b.start_s, b.duration_s) for b in info.of_kind(KIND_PHASE)]
    expected = [(p.name, p.start_s, p.duration_s) for p in result.phases if p.observed]
    assert drawn == expected and len(drawn) == 10
    assert info.notes == ("weights_download: not observed", "cuda_graphs: not observed")
    assert info.title == "tiny-llama / baseline / vllm r0: ready in 122.3 s, cache cold"


def test_waterfall_shows_vllms_own_durations_beside_the_measured_ones(tmp_path: Path) -> None:
    result = next(r for r in h100() if r.optimization == "baseline")
    info = waterfall(result, tmp_path / "wf.png")
    reported = {b.row: b for b in info.of_kind(KIND_REPORTED)}
    assert set(reported) == {"weights_download", "weights_load", "torch_compile", "cuda_graphs"}
    by_name = {p.name: p for p in result.phases}
    for name, bar in reported.items():
        assert bar.duration_s == by_name[name].reported_s
        assert bar.start_s + bar.duration_s == pytest.approx(by_name[name].end_s)  # ends where the phase ended
    assert reported["torch_compile"].duration_s == pytest.approx(61.84)


def test_waterfall_marks_unaccounted_gaps_and_they_add_up(tmp_path: Path) -> None:
    for result in (r for r in cpu_lane() if r.exit_status == "ok"):
        info = waterfall(result, tmp_path / f"{result.optimization}.png")
        gaps = info.of_kind(KIND_GAP)
        assert gaps, "the CPU lane has a gap between weights_load and torch_compile"
        assert sum(b.duration_s for b in gaps) == pytest.approx(result.unaccounted_s, abs=1e-5)
        load = next(p for p in result.phases if p.name == "weights_load")
        assert any(b.start_s == pytest.approx(load.end_s) for b in gaps)
        [ttft] = info.of_kind(KIND_TTFT)
        assert (ttft.start_s, ttft.duration_s) == (result.total_ready_s, result.ttft_s)


def test_waterfall_of_a_failed_start(tmp_path: Path) -> None:
    failed = next(r for r in cpu_lane() if r.exit_status != "ok")
    info = waterfall(failed, tmp_path / "failed.png")
    assert is_png(info.path)
    assert "FAILED (server_exited), last phase config" in info.title
    assert [b.label for b in info.of_kind(KIND_PHASE)] == ["imports", "config"]
    assert not info.of_kind(KIND_TTFT) and not info.of_kind(KIND_GAP)


def test_unaccounted_gaps_between_before_and_after_phases() -> None:
    base = cpu_lane()[0]
    phases = (Phase("imports", 1.0, 2.0, 1.0, "arrival"), Phase("config", None, None, None, "not_observed"),
              Phase("engine_init", 3.5, 5.0, 1.5, "arrival"))
    result = replace(base, phases=phases, total_ready_s=6.0, unaccounted_s=3.5)
    assert unaccounted_gaps(result) == [(0.0, 1.0), (2.0, 3.5), (5.0, 6.0)]
    assert unaccounted_gaps(replace(result, total_ready_s=None)) == [(0.0, 1.0), (2.0, 3.5)]


def test_comparison_stacks_each_optimizations_median_run_by_phase(tmp_path: Path) -> None:
    results = h100()
    info = comparison(results, tmp_path / "cmp.png")
    assert is_png(info.path)
    rows = list(dict.fromkeys(b.row for b in info.bars))
    assert rows == [f"{o} (ray-serve-llm)" for o in
                    ("baseline", "runai_streamer", "runai_streamer_sharded", "compile_cache", "all")]
    for result in results:
        row = f"{result.optimization} (ray-serve-llm)"
        bars = [(b.label, b.duration_s) for b in info.bars if b.row == row and b.kind == KIND_PHASE]
        assert bars == [(p.name, p.duration_s) for p in result.phases if p.observed]
    download = {b.row: b.duration_s for b in info.bars if b.label == "weights_download"}
    assert download == {"baseline (ray-serve-llm)": 198.0, "compile_cache (ray-serve-llm)": 218.0}


def test_comparison_of_the_cpu_lane_adds_up_to_ready(tmp_path: Path) -> None:
    info = comparison(cpu_lane(), tmp_path / "cmp.png")
    assert info.notes == ("baseline: median of 1 successful run(s), 1 failed",
                          "compile_cache: median of 1 successful run(s)")
    for result in (r for r in cpu_lane() if r.exit_status == "ok"):
        bars = [b for b in info.bars if b.row == result.optimization and b.kind != KIND_TTFT]
        assert sum(b.duration_s for b in bars) == pytest.approx(result.total_ready_s, abs=1e-5)
        assert max(b.start_s + b.duration_s for b in bars) == pytest.approx(result.total_ready_s)


def test_comparison_draws_one_model() -> None:
    with pytest.raises(ValueError, match="one model"):
        comparison(cpu_lane() + h100(), Path("unused.png"))


def test_median_run_is_a_real_run_not_a_mix() -> None:
    ok = next(r for r in cpu_lane() if r.exit_status == "ok")
    runs = [replace(ok, total_ready_s=t, repeat_index=i) for i, t in enumerate((90.0, 60.0, 120.0, 70.0))]
    assert median_run(runs).total_ready_s == 70.0  # median_low of four
    assert median_run([r for r in cpu_lane() if r.exit_status != "ok"]) is None


def test_efficiency_chart_plots_achieved_against_floor(tmp_path: Path) -> None:
    results = cpu_lane() + h100()
    info = efficiency_chart(results, tmp_path / "eff.png")
    assert is_png(info.path)
    achieved = {b.row: b.duration_s for b in info.of_kind(KIND_ACHIEVED)}
    floors = {b.row: (b.label, b.duration_s) for b in info.of_kind(KIND_FLOOR)}
    sharded = next(r for r in results if r.optimization == "runai_streamer_sharded")
    key = "llama-3-70b / runai_streamer_sharded (ray-serve-llm)"
    assert achieved[key] == pytest.approx(sharded.efficiency.achieved_gbps)
    assert floors[key] == ("floor (configured)", pytest.approx(6.013))
    assert floors["tiny-llama / baseline"][0] == "floor (probe)"
    assert len(achieved) == 7


def test_no_efficiency_no_chart(tmp_path: Path) -> None:
    assert efficiency_chart(load_results(RESULTS / "pre-efficiency"), tmp_path / "eff.png") is None
    assert not (tmp_path / "eff.png").exists()


def test_phase_colours_are_distinct_and_never_the_gap_red() -> None:
    from pytest_coldstart.logs.timeline import PHASE_NAMES

    colours = [figures.phase_colour(n) for n in PHASE_NAMES]
    assert len(set(colours)) == len(PHASE_NAMES)
    assert figures._GAP_COLOUR not in colours and "black" not in colours


def ray_serve_run() -> RunResult:
    """A launcher with its own phase table (Ray Serve LLM names its phases differently)."""
    base = next(r for r in cpu_lane() if r.exit_status == "ok")
    phases = (Phase("ingress_scale_up", 0.0, 4.0, 4.0, "arrival"), Phase("autoscale", None, None, None, "not_observed"),
              Phase("replica_scheduling", 4.0, 9.0, 5.0, "arrival"), Phase("replica_init", 9.0, 30.0, 21.0, "arrival"),
              Phase("weights_load", 30.0, 31.0, 1.0, "arrival", 0.8), Phase("first_token", 32.0, 33.0, 1.0, "harness"))
    return replace(base, launcher="ray-serve", phases=phases, total_ready_s=33.0, unaccounted_s=1.0, ttft_s=None)


def test_figures_follow_the_launchers_own_phase_table(tmp_path: Path) -> None:
    ray = ray_serve_run()
    info = waterfall(ray, tmp_path / "ray.png")
    assert is_png(info.path)
    assert [b.label for b in info.of_kind(KIND_PHASE)] == ["ingress_scale_up", "replica_scheduling", "replica_init",
                                                          "weights_load", "first_token"]
    assert info.notes == ("autoscale: not observed",)
    assert [(b.start_s, b.duration_s) for b in info.of_kind(KIND_GAP)] == [(31.0, 1.0)]
    both = comparison([ray, *[r for r in cpu_lane() if r.optimization == "baseline"]], tmp_path / "cmp.png")
    assert {b.row for b in both.bars} == {"baseline (vllm)", "baseline (ray-serve)"}
    assert figures.phase_order([ray])[:3] == ("ingress_scale_up", "autoscale", "replica_scheduling")


def test_phase_colours_stay_distinct_for_long_phase_tables() -> None:
    order = [f"phase{i}" for i in range(18)]
    assert len({figures.phase_colour(n, order) for n in order}) == 18


def test_phase_order_follows_each_launchers_declared_phases() -> None:
    """Rows come in the order the launchers declare their phases, not in whatever order results arrive."""
    from pytest_coldstart.launch.registry import phase_rules

    def result(launcher: str, names: list[str]) -> RunResult:
        phases = tuple(Phase(n, 0.0, 1.0, 1.0, "arrival") for n in names)
        return RunResult("m", "baseline", launcher, "cold", "2026-01-01T00:00:00", phases, {}, 1.0, None, None,
                         0.0, {}, "ok", "log")

    ray = [r.name for r in phase_rules("ray-serve")]
    shuffled = [result("ray-serve", list(reversed(ray[:6]))), result("vllm", ["ready", "imports", "config"]),
                result("ray-serve-llm", ["replica_init", "mystery_phase"])]  # an old launcher name: appended
    # Launchers in order of appearance, each in its declared order; unknown phases last.
    assert figures.phase_order(shuffled) == (*ray[:6], "imports", "config", "ready", "mystery_phase")


def test_ttft_spans_the_phases_where_the_first_request_started_the_server(tmp_path: Path) -> None:
    """Ray Serve scale-from-zero: ready *is* the first token, so TTFT covers the phases instead of
    following them (a 116 s TTFT stacked after 116 s of phases drew the bar out to ~232 s)."""
    ray = replace(ray_serve_run(), total_ready_s=116.2, ttft_s=116.2)
    vllm = next(r for r in cpu_lane() if r.ok and r.optimization == "baseline")
    info = comparison([ray, vllm], tmp_path / "cmp.png")
    ttft = {b.row: b for b in info.of_kind("ttft")}
    assert ttft["baseline (ray-serve)"].start_s == 0.0
    assert ttft["baseline (ray-serve)"].start_s + ttft["baseline (ray-serve)"].duration_s == pytest.approx(116.2)
    # A server that was ready before the request: TTFT follows ready.
    assert ttft["baseline (vllm)"].start_s == vllm.total_ready_s
    assert ttft["baseline (vllm)"].duration_s == pytest.approx(vllm.ttft_s)
    assert max(b.start_s + b.duration_s for b in info.bars) == pytest.approx(max(116.2, vllm.total_ready_s + vllm.ttft_s))
    assert figures.ttft_span(ray) == (0.0, 116.2) and figures.ttft_spans_phases(ray)
    [drawn] = waterfall(ray, tmp_path / "w.png").of_kind("ttft")
    assert (drawn.start_s, drawn.duration_s) == (0.0, 116.2)
    assert not figures.ttft_spans_phases(vllm)
    assert info.title.endswith("by launcher x optimization")


def test_launchers_markdown_compares_systems_per_model() -> None:
    from pytest_coldstart.report.compare import launchers_markdown

    vllm = next(r for r in cpu_lane() if r.ok and r.optimization == "baseline")
    ray = replace(ray_serve_run(), total_ready_s=116.2, ttft_s=116.2)
    assert launchers_markdown([vllm]) == ""  # one launcher: nothing to compare
    text = launchers_markdown([vllm, ray])
    assert "## Cold start across systems" in text
    ray_row = next(line for line in text.splitlines() if line.startswith("| ray-serve |"))
    # Ready is the first token there: not 116.2 + 116.2.
    assert "| 116.20 | 116.20 | 116.20 |" in ray_row and "232" not in ray_row
    vllm_row = next(line for line in text.splitlines() if line.startswith("| vllm |"))
    assert f"{vllm.total_ready_s + vllm.ttft_s:.2f}" in vllm_row
