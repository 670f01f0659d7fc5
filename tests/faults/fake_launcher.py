"""``--launcher fake``: the real Server (readiness, TTFT, stop) around tests/faults/fake_server.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pytest_coldstart.launch.base import Launcher, LaunchSpec, Server
from pytest_coldstart.launch.process import OwnedProcess
from pytest_coldstart.model.clock import Clock
from pytest_coldstart.model.redact import Redactor

SERVER = Path(__file__).with_name("fake_server.py")


class FakeLauncher(Launcher):
    kind: ClassVar[str] = "fake"

    def start(self, spec: LaunchSpec, clock: Clock) -> Server:
        env = {**os.environ, **spec.env}
        argv = [spec.python, str(SERVER), "--port", str(spec.port), "--mode", env.get("FAKE_MODE", "ok")]
        if env.get("FAKE_PID_FILE"):
            argv += ["--pid-file", env["FAKE_PID_FILE"]]
        argv += env.get("FAKE_ARGS", "").split()
        process = OwnedProcess(argv, env=env, log_path=spec.log_path, clock=clock, redactor=Redactor.from_env(env))
        process.start()
        return Server(spec, process, clock)
