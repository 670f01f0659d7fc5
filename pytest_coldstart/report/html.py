"""``coldstart report RESULTS_DIR --out report.html``: one self-contained HTML page.

Waterfall per run, one comparison per model, load efficiency, the published
H100 numbers on paper. PNGs are written beside the page and embedded in it
as base64, so the page alone is the artifact a CI job uploads.
"""

from __future__ import annotations

import base64
import html
import os
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_coldstart.model.case import group_by_case
from pytest_coldstart.model.efficiency import format_bytes, format_gbps
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.files import atomic_write_text
from pytest_coldstart.model.redact import MASK, Redactor, is_secret_name
from pytest_coldstart.model.result import RunResult, load_results
from pytest_coldstart.model.scaleout import SCALEOUT_DIR, ScaleoutResult, load_scaleouts
from pytest_coldstart.report.efficiency import any_host_to_gpu, host_to_gpu_cells, median_efficiency
from pytest_coldstart.report.figures import phase_order

ENV_KEYS = ("vllm", "vllm_distribution", "torch", "ray", "python", "pytest_coldstart", "gpu_name", "gpu_count",
            "cpu_model", "cpu_cores", "ram_gib", "git_commit")
_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}img{max-width:100%}
.fail{color:#b00020}.muted{color:#777}pre{white-space:pre-wrap;background:#f7f7f7;padding:.6em;font-size:.8em}
section{margin-bottom:2.5em}h2{border-bottom:2px solid #ddd}"""


_SECRET_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)=(?!\*\*\*)([^\s&<\"']+)")


@dataclass(frozen=True)
class ReportInfo:
    """What ``build_report`` wrote, and the figures' data."""

    path: Path
    figures: tuple[Any, ...]  # figures.FigureInfo
    runs: int


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")


def _num(value: float | None, digits: int = 2) -> str:
    return "not observed" if value is None else f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _scaleout_section(scaleouts: Sequence[ScaleoutResult], png_dir: Path, drawn: list[Any]) -> str:
    """Scale-out runs: the figure, then the per-step table and each replica's add time."""
    from pytest_coldstart.report.scaleout import scaleout_figure, scaleout_table

    parts = ["<section><h2>Scale-out under load</h2><p>Offered load, replicas and TTFT on one time axis; each "
             "replica's cold start (autoscaling decision to first request served) drawn with its phases.</p>"]
    for result in scaleouts:
        fig = scaleout_figure(result, png_dir / f"{_slug(result.run_id)}_scaleout.png")
        drawn.append(fig)
        parts.append(f"<h3>{_e(result.run_id)} ({_e(result.exit_status)})</h3>" + _img(fig.path, fig.title))
        if result.error:
            parts.append(f"<p class=fail>{_e(result.error)}</p>")
        rows = [(r["step"], _num(r["rate_rps"]), r["replicas"], _num(r["achieved_rps"]), _num(r["ttft_p50_s"], 3),
                 _num(r["ttft_p95_s"], 3), _num(r["ttft_p99_s"], 3), r["completed"], r["failed"],
                 _num(r["slo_attainment"], 3)) for r in scaleout_table([result])]
        parts.append(_table(("step", "offered req/s", "replicas", "achieved req/s", "TTFT p50 s", "TTFT p95 s",
                             "TTFT p99 s", "completed", "failed", "SLO attainment"), rows))
        reps = [(r.index + 1, (r.cause or "") + (" (failed)" if r.failed_s is not None else ""), r.node_id or "",
                 _num(r.replica_add_s, 1), _num(r.reported_startup_s, 1)) for r in result.replicas]
        parts.append(_table(("replica", "added by", "node", "replica_add_s", "Serve's startup s"), reps))
        thr = ", ".join(f"{k} replica(s): {v:.3f} req/s" for k, v in sorted(result.throughput_by_replicas.items()))
        parts.append(f"<p>Throughput at concurrency {result.profile.get('probe_concurrency')}: {_e(thr or 'none')}"
                     f"; efficiency against linear: {_num(result.scaling_efficiency, 3)}</p>")
    return "\n".join(parts) + "</section>"


def _run_section(result: RunResult, figure: Any) -> str:
    rows = [(p.name, _num(p.start_s), _num(p.end_s), _num(p.duration_s),
             "" if p.reported_s is None else f"{p.reported_s:.3g}", p.source) for p in result.phases]
    rows += [("unaccounted", "", "", _num(result.unaccounted_s), "", ""),
             ("total_ready_s", "", "", _num(result.total_ready_s), "", "harness"),
             ("ttft_s (after ready)", "", "", _num(result.ttft_s, 3), "", "harness")]
    anchor = _slug(result.model, result.optimization, result.launcher, result.repeat_index, result.started_at)
    parts = [f'<h3 id="{anchor}">{_e(figure.title)}</h3>', _img(figure.path, figure.title)]
    if result.efficiency is not None:
        parts.append(f"<p>{_e(result.efficiency.describe())}</p>")
    cache = result.reported.get("compile_cache_detail")
    if cache:
        parts.append(f"<p>torch.compile cache: {_e(cache)}</p>")
    if not result.ok and result.error:
        parts.append(f'<pre class="fail">{_e(result.error[:4000])}</pre>')
    table = _table(("phase", "start s", "end s", "duration s", "vLLM reported s", "source"), rows, (1, 2, 3, 4))
    parts.append(f"<details><summary>phase table</summary>{table}"
                 f"<p class=muted>log: {_e(result.log_path)}</p></details>")
    return "\n".join(parts)


def _model_table(runs: Sequence[RunResult]) -> str:
    groups: dict[str, list[RunResult]] = {}
    for r in runs:
        groups.setdefault(f"{r.optimization}/{r.launcher}", []).append(r)
    headers = ["phase (median s)", *groups]
    rows = []
    phases = phase_order(runs)
    for name in [*phases, "unaccounted", "total_ready_s", "ttft_s"]:
        row: list[object] = [name]
        for group in groups.values():
            ok = [r for r in group if r.ok]
            if name in phases:
                values = [r.phase_durations().get(name) for r in ok]
            else:
                values = [getattr(r, name if name != "unaccounted" else "unaccounted_s") for r in ok]
            seen = [v for v in values if v is not None]
            row.append(f"{statistics.median(seen):.2f}" if seen else "not observed")
        rows.append(row)
    rows.append(["runs ok / total", *[f"{sum(r.ok for r in g)}/{len(g)}" for g in groups.values()]])
    return _table(headers, rows, tuple(range(1, len(headers))))


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s/;,()]+/)+([^\s/;,()]+)")


def shown_path(text: str) -> str:
    """*text* with every absolute local path cut to its last component (``.../model``).

    A report is shared (a PR comment, the history site): the harness's scratch paths say nothing to a
    reader and name the machine's layout. Results keep the full path; only what is shown is cut.
    """
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}", text)


def _efficiency_table(results: Sequence[RunResult]) -> str:
    groups = group_by_case(results)
    h2d = any_host_to_gpu(results)  # the host->GPU columns only where some run has that floor
    rows = []
    for key, runs in groups.items():
        model, opt, launcher = key.astuple()
        eff = median_efficiency(runs)
        extra = host_to_gpu_cells(eff) if h2d else ()
        if eff is None:
            rows.append((model, opt, launcher, "-", "not recorded", "-", "-", "-", "-", *extra,
                         "no successful run carries an efficiency object (failed, or written before it existed)"))
            continue
        pct = "-" if eff.percent_of_floor is None else f"{eff.percent_of_floor:.3g}%"
        scope = f" ({eff.load_scope})" if eff.load_scope else ""
        how = eff.note or f"load: {eff.load_basis}{scope}; floor: {eff.floor_detail}"
        if eff.host_to_gpu is not None:
            how += f"; host->GPU floor: {eff.host_to_gpu.detail or eff.host_to_gpu.source}"
        elif eff.host_to_gpu_note:
            how += f"; host->GPU floor: {eff.host_to_gpu_note}"
        how = shown_path(how)
        rows.append((model, opt, launcher, format_bytes(eff.weight_bytes),
                     "not observed" if eff.load_s is None else f"{eff.load_s:.3g}", format_gbps(eff.achieved_gbps),
                     "-" if eff.floor_gbps is None else f"{format_gbps(eff.floor_gbps)} ({eff.floor_source})",
                     "-" if eff.floor_s is None else f"{eff.floor_s:.3g}", pct, *extra, how))
    extra_head = ("in page cache", "host->GPU pinned GB/s", "host->GPU floor s", "% of host->GPU",
                  "floor that applies") if h2d else ()
    return _table(("model", "optimization", "launcher", "weights", "load s", "load at GB/s", "floor GB/s",
                   "floor s", "% of floor", *extra_head, "how"), rows,
                  (3, 4, 5, 7, 8, *((9, 11, 12) if h2d else ())))


def _anchors_section(anchors_path: Path | None) -> str:
    from pytest_coldstart.report.anchors import DEFAULT_ANCHORS, load_anchors, paper_rows

    path = anchors_path or DEFAULT_ANCHORS
    if anchors_path is None and not path.is_file():
        return ""
    anchors = load_anchors(path)
    rows = [(f"{r.model.label} (TP{r.model.tensor_parallel_size})", r.observation.what,
             f"{r.observation.seconds:g}", f"{r.achieved_gbps:.3g}", r.floor.label, f"{r.floor_s:.3g}",
             f"{r.percent_of_floor:.3g}%") for r in paper_rows(anchors)]
    return ("<section><h2>Published H100 load times against the floor (on paper)</h2>"
            f"<p class=muted>computed from {_e(path.name)}; each row's source is cited in that file</p>"
            + _table(("model", "load", "observed s", "load at GB/s", "floor", "floor s", "% of floor"), rows,
                     (2, 3, 5, 6)) + "</section>")


def build_report(results_dir: Path, out: Path, *, png_dir: Path | None = None,
                 anchors_path: Path | None = None) -> ReportInfo:
    """Render every run under *results_dir* into *out* (HTML) and *png_dir* (PNGs)."""
    from pytest_coldstart.report import figures

    results = load_results(results_dir) if (results_dir / "runs").is_dir() or not (results_dir / SCALEOUT_DIR).is_dir() \
        else []
    scaleouts = load_scaleouts(results_dir) if (results_dir / SCALEOUT_DIR).is_dir() else []
    if not results and not scaleouts:
        raise ConfigError(f"no runs under {results_dir / 'runs'}; run the benchmarks first "
                          f"(pytest benchmarks -m coldstart --coldstart-results {results_dir})")
    png_dir = png_dir or out.parent / f"{out.stem}-figures"
    drawn: list[Any] = []
    by_model: dict[str, list[RunResult]] = {}
    for r in results:
        by_model.setdefault(r.model, []).append(r)
    body = []
    if results:
        chart = figures.efficiency_chart(results, png_dir / "efficiency.png")
        eff = "<section><h2>Load efficiency</h2><p>Weight bytes / load time against the floor bandwidth of the " \
              "source (a short probe, or floor_gbps in benchmarks/models.toml); medians over repeats.</p>"
        if any_host_to_gpu(results):
            eff += ("<p>Weights already in the page cache are held to the host-&gt;GPU floor instead (pinned copy "
                    "into the GPU, probed once per session or floor_gbps.host_to_gpu): from RAM the storage floor "
                    "says nothing about what a loader leaves on the table.</p>")
        if chart is not None:
            drawn.append(chart)
            eff += _img(chart.path, chart.title)
        body.append(eff + _efficiency_table(results) + "</section>")
    if scaleouts:
        body.append(_scaleout_section(scaleouts, png_dir, drawn))
    for model, runs in by_model.items():
        parts = [f"<section><h2>{_e(model)}</h2>"]
        if any(r.ok for r in runs):
            cmp_fig = figures.comparison(runs, png_dir / f"{_slug(model)}_comparison.png")
            drawn.append(cmp_fig)
            parts += [_img(cmp_fig.path, cmp_fig.title), f"<p class=muted>{_e('; '.join(cmp_fig.notes))}</p>"]
        parts.append(_model_table(runs))
        for r in runs:
            name = _slug(r.started_at.split(".")[0].replace(":", ""), r.model, r.optimization, r.launcher,
                         f"r{r.repeat_index}")
            wf = figures.waterfall(r, png_dir / f"{name}_waterfall.png")
            drawn.append(wf)
            parts.append(_run_section(r, wf))
        body.append("\n".join(parts) + "</section>")
    body.append(_anchors_section(anchors_path))
    env = results[-1].environment if results else scaleouts[-1].environment
    env_rows = [(k, env.get(k)) for k in ENV_KEYS if env.get(k) is not None]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>Cold-start report</title><style>{_CSS}</style>"
            f"</head><body><h1>Cold-start report</h1><p class=muted>{len(results)} run(s)"
            f"{f' and {len(scaleouts)} scale-out run(s)' if scaleouts else ''} from {_e(shown_path(str(results_dir)))}, "
            f"generated {stamp}</p>{_table(('environment', ''), env_rows)}" + "\n".join(body) + "</body></html>\n")
    # The results are redacted when written; this also catches a secret of the machine building the
    # report, and any NAME=value whose name looks secret (an error message quoting an env line).
    page = Redactor.from_env(os.environ).redact(page)
    page = _SECRET_ASSIGNMENT.sub(lambda m: f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0),
                                  page)
    atomic_write_text(out, page)  # an artifact to share, written whole or not at all
    return ReportInfo(out, tuple(drawn), len(results))
