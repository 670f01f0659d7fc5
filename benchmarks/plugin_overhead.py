"""What does the installed plugin cost a pytest session that has no cold-start test?

Runs one empty suite (a file with one trivial test, no conftest) as a fresh ``python -m pytest``
process, with the plugin (``pytest -p coldstart`` as installed) and without it (``-p no:coldstart``),
interleaved and in alternating order so drift on the machine hits both alike; prints each pair,
the medians and their difference. Target: under 50 ms.

    .venv/bin/python benchmarks/plugin_overhead.py --pairs 20

Also prints which heavy modules the plugin's session imported (none expected: numpy, rich, httpx,
psutil load only in a session that runs cold starts). This is a benchmark, not a test: it asserts
nothing; tests/faults/test_good_guest.py checks the behaviour (nothing imported, nothing written).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "rich", "httpx", "psutil", "pydantic", "scipy", "pytest_coldstart.measure.runner")
SUITE = "def test_nothing_cold():\n    assert True\n"
PROBE = """
import sys

def pytest_unconfigure(config):
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print("HEAVY-MODULES", ",".join(heavy) or "-")
"""


def run_once(suite: Path, *plugin_args: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one ``python -m pytest`` process on *suite*.

    CPU time is the steadier figure on a shared machine (it does not count time spent waiting for a core).
    """
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin_args, str(suite)]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    return elapsed, usage.ru_utime + usage.ru_stime


def heavy_imports(suite: Path) -> str:
    """The heavy modules a session with the plugin has imported by its end."""
    probe = suite / "probe"
    probe.mkdir(exist_ok=True)
    (probe / "heavy_probe.py").write_text(PROBE.format(heavy=HEAVY))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{probe}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "heavy_probe",
                           str(suite / "test_empty.py")], cwd=suite, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("HEAVY-MODULES"):
            return line.split(" ", 1)[1]
    return f"(probe printed nothing; exit {proc.returncode})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20, help="interleaved with/without pairs (default 20)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coldstart-overhead-") as tmp:
        suite = Path(tmp)
        (suite / "test_empty.py").write_text(SUITE)
        run_once(suite)  # warm the page cache and the bytecode of both sides
        run_once(suite, "-p", "no:coldstart")
        wall: dict[str, list[float]] = {"with": [], "without": []}
        cpu: dict[str, list[float]] = {"with": [], "without": []}
        for i in range(args.pairs):
            order = [("with", ()), ("without", ("-p", "no:coldstart"))]
            if i % 2:
                order.reverse()
            for name, plugin_args in order:
                wall_s, cpu_s = run_once(suite, *plugin_args)
                wall[name].append(wall_s)
                cpu[name].append(cpu_s)
            print(f"pair {i + 1:2d}: wall with {wall['with'][-1] * 1000:7.1f} ms, without "
                  f"{wall['without'][-1] * 1000:7.1f} ms; cpu with {cpu['with'][-1] * 1000:7.1f} ms, without "
                  f"{cpu['without'][-1] * 1000:7.1f} ms")
        for label, values in (("wall", wall), ("cpu", cpu)):
            with_ms = statistics.median(values["with"]) * 1000
            without_ms = statistics.median(values["without"]) * 1000
            pairs = statistics.median([w - wo for w, wo in zip(values["with"], values["without"], strict=True)]) * 1000
            print(f"{label:4s} median: with plugin {with_ms:7.1f} ms, without {without_ms:7.1f} ms, difference "
                  f"{with_ms - without_ms:+6.1f} ms (median pairwise {pairs:+6.1f} ms; target < 50 ms)")
            # The fastest run of each side: what the session costs when nothing else wants the CPU.
            best = (min(values["with"]) - min(values["without"])) * 1000
            print(f"{label:4s} min:    with plugin {min(values['with']) * 1000:7.1f} ms, without "
                  f"{min(values['without']) * 1000:7.1f} ms, difference {best:+6.1f} ms")
        print(f"heavy modules imported with the plugin: {heavy_imports(suite)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
