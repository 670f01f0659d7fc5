"""Typed boundaries (issue 18): no ``Any`` in the public signatures of ``model/``, and what mypy's first run found."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pytest_coldstart.model
from pytest_coldstart.model.errors import ConfigError

MODEL = Path(pytest_coldstart.model.__file__).parent
ANY = re.compile(r"\bAny\b")


def _public_annotations(tree: ast.Module) -> list[tuple[str, str]]:
    """(where, annotation) for every public function's parameters and return, and every public class's fields."""
    found: list[tuple[str, str]] = []

    def function(node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str) -> None:
        if node.name.startswith("_") and node.name not in ("__init__", "__call__"):
            return
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs,
                *filter(None, (node.args.vararg, node.args.kwarg))]
        for arg in args:
            if arg.annotation is not None:
                found.append((f"{owner}{node.name}({arg.arg})", ast.unparse(arg.annotation)))
        if node.returns is not None:
            found.append((f"{owner}{node.name} ->", ast.unparse(node.returns)))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function(node, "")
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    function(item, f"{node.name}.")
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) \
                        and not item.target.id.startswith("_"):
                    found.append((f"{node.name}.{item.target.id}", ast.unparse(item.annotation)))
    return found


def test_no_any_in_the_public_signatures_of_model():
    offenders = [f"{path.name}: {where}: {annotation}"
                 for path in sorted(MODEL.glob("*.py"))
                 for where, annotation in _public_annotations(ast.parse(path.read_text(encoding="utf-8")))
                 if ANY.search(annotation)]
    assert not offenders, "\n".join(offenders)


def test_the_walk_sees_what_it_checks():
    # The checker itself: a public Any in a parameter, a return or a field is found; a private one is not.
    tree = ast.parse("from typing import Any\n"
                     "def f(x: Any) -> int: ...\n"
                     "def g() -> dict[str, Any]: ...\n"
                     "def _h(x: Any) -> Any: ...\n"
                     "class C:\n    field: list[Any]\n    def m(self, *a: Any) -> None: ...\n")
    hits = [w for w, a in _public_annotations(tree) if ANY.search(a)]
    assert hits == ["f(x)", "g ->", "C.field", "C.m(a)"]


def test_an_unknown_aws_retry_mode_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch):
    from pytest_coldstart.optimize.s3 import retry_config

    monkeypatch.setenv("AWS_RETRY_MODE", "standart")
    with pytest.raises(ConfigError, match="AWS_RETRY_MODE='standart' is not a retry mode; use one of legacy"):
        retry_config()
    monkeypatch.setenv("AWS_RETRY_MODE", "adaptive")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert retry_config() == {"mode": "adaptive", "total_max_attempts": 3}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("compare.toml", "metrics = 5\n", r"metrics = 5: expected a table of \[metrics.NAME\] tables"),
    ("compare.toml", "[metrics]\nttft_s = 0.2\n", r"\[metrics\] ttft_s = 0.2: expected a table of \[metrics.NAME\] tables"),
    ("anchors.toml", "models = 5\n", r"models = 5; expected \[models.NAME\] tables"),
    ("anchors.toml", "observations = [1]\n", r"observations = \[1\]; expected \[\[observations\]\] tables"),
])
def test_a_toml_value_of_the_wrong_shape_is_named_not_a_traceback(tmp_path: Path, name: str, text: str,
                                                                   message: str):
    # load_toml returns dict[str, object] (no Any): mypy made every reader check the shape it indexes.
    from pytest_coldstart.history.compare import load_config
    from pytest_coldstart.report.anchors import load_anchors

    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        (load_config if name == "compare.toml" else load_anchors)(path)
