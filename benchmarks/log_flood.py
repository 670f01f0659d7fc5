"""How fast, and in how much memory, does the harness read a server's log flood?

A writer prints ``--mb`` MiB of 8 KiB lines as fast as the pipe takes them (what
a server stuck in a debug-logging loop does); the harness reads it through
``OwnedProcess`` (stamp, redact, write the log file, keep it) while the main
thread asks the ``Server`` for its timeline every second, as a progress report
does. Printed: the read rate (MB/s) and the harness's peak RSS growth (MiB).

    .venv/bin/python benchmarks/log_flood.py --mb 256
    PYTHONPATH=OTHER_CHECKOUT .venv/bin/python benchmarks/log_flood.py --mb 256   # another version

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # an explicit PYTHONPATH (another checkout) wins

WRITER = """
import sys
line = b"INFO flood " + b"x" * 8180 + b"\\n"
out = sys.stdout.buffer
for _ in range(int(sys.argv[1]) * 128):  # 128 lines of 8 KiB a MiB
    out.write(line)
out.flush()
"""


def main() -> int:
    from pytest_coldstart.launch.base import LaunchSpec, Server
    from pytest_coldstart.launch.process import OwnedProcess
    from pytest_coldstart.model.clock import SystemClock
    from pytest_coldstart.model.redact import Redactor

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="MiB of 8 KiB lines to write (default %(default)s)")
    args = parser.parse_args()
    me = psutil.Process()
    peak = [me.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            time.sleep(0.05)

    base_rss = peak[0]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "flood.log"
        clock = SystemClock()
        process = OwnedProcess([sys.executable, "-c", WRITER, str(args.mb)], env={"PATH": "/usr/bin:/bin"},
                               log_path=log, clock=clock, redactor=Redactor.from_env({}))
        spec = LaunchSpec(model_ref="flood", served_name="flood", port=1, log_path=log, timeout_s=600)
        server = Server(spec, process, clock)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        process.start()
        reports = 0
        while process.poll() is None:
            server.phase_in_progress()  # what a progress report asks for
            reports += 1
            time.sleep(1.0)
        process.stop()
        took_s = time.perf_counter() - t0
        stop.set()
        sampler.join()
        size = log.stat().st_size
    print(f"log flood: {size / 1e6:.0f} MB of 8 KiB lines read in {took_s:.1f} s = {size / 1e6 / took_s:.1f} MB/s; "
          f"peak RSS growth {(peak[0] - base_rss) / 2**20:.0f} MiB ({(peak[0] - base_rss) / size:.2f}x the log); "
          f"{reports} progress reports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
