"""The Ray Serve LLM driver: run as its own owned process by the ``ray-serve`` launcher.

``python -m pytest_coldstart.launch.ray_driver CONFIG.json`` starts (or joins)
Ray, deploys a Ray Serve LLM OpenAI app whose LLM deployment autoscales from
zero, prints one ``[coldstart-ray] EVENT {json}`` line per milestone, streams
the cluster's logs (``log_to_driver``), watches ``serve.status()`` and, on
SIGTERM/SIGINT, tears everything down (``serve.shutdown`` or ``serve.delete``,
then ``ray.shutdown``). The harness stamps every line on arrival.

Written against Ray 2.60 (``ray.serve.llm``; ``placement_group_config`` since
2.51, ``accelerator_config`` resolved from the bundles since 2.60).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Every line the harness acts on starts with this (``ray_timeline.EVENT_PREFIX``).
EVENT_PREFIX = "[coldstart-ray]"
#: Copied Serve log-file lines start with this (``ray_timeline.SERVE_LOG_PREFIX``).
SERVE_LOG_PREFIX = "[serve-log]"
STATUS_POLL_S = 0.25
TAIL_POLL_S = 0.1
EXIT_DEPLOY_FAILED = 3
SERVE_SHUTDOWN_TIMEOUT_S = 15.0
# Serve logs these with `log_to_stderr=False` (Ray 2.43-2.60): they reach only
# logs/serve/*.log, never the driver console, so the driver copies them.
FILE_ONLY_RE = re.compile(r"started successfully on node|Started initializing replica|"
                          r"Finished initializing replica")


def emit(event: str, **data: Any) -> None:
    """One event line; flushed so the harness stamps it when it happens."""
    sys.stdout.write(f"{EVENT_PREFIX} {event} {json.dumps(data, sort_keys=True, default=str)}\n")
    sys.stdout.flush()


def engine_kwargs_from_cli(args: Sequence[str]) -> dict[str, Any]:
    """vLLM CLI flags (as in optimizations.toml) -> Ray's ``engine_kwargs``.

    vLLM's own parser does the typing (``--gpu-memory-utilization 0.3`` is a
    float, JSON for ``--compilation-config``); only flags that differ from the
    defaults are kept, because Ray rejects ``model``/``served_model_name`` and
    passes the rest to ``AsyncEngineArgs`` / ``FrontendArgs``.
    """
    try:  # vLLM 0.11+ moved FlexibleArgumentParser; both paths exist across 0.30-0.33.
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # pragma: no cover - older vLLM
        from vllm.utils import FlexibleArgumentParser
    try:  # vLLM 0.32 moved the server's CLI definition out of entrypoints/openai.
        from vllm.entrypoints.launchers.cli_args import make_arg_parser
    except ImportError:  # pragma: no cover - vLLM <= 0.31
        from vllm.entrypoints.openai.cli_args import make_arg_parser

    parser = make_arg_parser(FlexibleArgumentParser())
    defaults = vars(parser.parse_args(["--model", "placeholder"]))
    parsed = vars(parser.parse_args(["--model", "placeholder", *args]))
    drop = {"model", "served_model_name", "host", "port", "model_tag", "dispatch_function", "subparser"}
    return {k: v for k, v in parsed.items() if k not in drop and v != defaults.get(k)}


def build_app(config: dict[str, Any], gpus: float) -> Any:
    """The Ray Serve LLM OpenAI app for *config* (see ``ray_serve.driver_config``)."""
    from ray.serve.llm import LLMConfig, build_openai_app

    tp = int(config.get("tensor_parallel_size", 1))
    llm: dict[str, Any] = {
        "model_loading_config": {"model_id": config["served_name"], "model_source": config["model_ref"]},
        "engine_kwargs": config["engine_kwargs"],
        "deployment_config": {"autoscaling_config": {
            "min_replicas": config["min_replicas"], "initial_replicas": config["initial_replicas"],
            "max_replicas": config["max_replicas"],
            # Scale-out runs (measure/scaleout.py) set target_ongoing_requests and the delays.
            **(config.get("autoscaling_extra") or {}),
        }},
        "runtime_env": {"env_vars": {name: os.environ[name] for name in config["env_var_names"]
                                     if name in os.environ}},
        # Ray LLM writes vLLM's request logs and engine stats otherwise; they add
        # nothing to a cold start and cost CPU on the 2-core lane.
        "log_engine_metrics": False,
    }
    if gpus <= 0:
        # No GPU in the cluster: CPU bundles make Ray LLM pick its CPU backend
        # (2.60 infers accelerator_config from the bundles; vLLM runs with the
        # `mp` executor instead of Ray workers).
        # Scale-out runs add a per-node replica slot so replicas land on different nodes.
        llm["placement_group_config"] = {"bundles": [{"CPU": 1, **(config.get("bundle_resources") or {})}] * tp}
    args: dict[str, Any] = {"llm_configs": [LLMConfig(**llm)]}
    if config.get("ingress_deployment_config"):
        args["ingress_deployment_config"] = config["ingress_deployment_config"]
    return build_openai_app(args)


class Driver:
    """Ray + Serve lifecycle for one cold start."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.app_name: str = config["app_name"]
        self.local = not config.get("ray_address")
        self.stop_requested = threading.Event()
        self._ray_started = False
        self._serve_started = False

    def start(self) -> None:
        import ray

        emit("ray_init_start", address=self.config.get("ray_address") or "local", pid=os.getpid())
        kwargs: dict[str, Any] = {"log_to_driver": True, "include_dashboard": False}
        if self.local:
            # Ray sizes the node by cores (2 here); vLLM's CPU bundle, the
            # ingress and the controller need more logical CPUs than that.
            kwargs["num_cpus"] = int(self.config["num_cpus"])
            kwargs["_metrics_export_port"] = int(self.config["metrics_port"])
            # Export metrics every second, not every 10 s, so the replica
            # startup histograms are there right after the first token.
            kwargs["_system_config"] = {"metrics_report_interval_ms": 1000}
        else:
            kwargs["address"] = self.config["ray_address"]
        ray.init(**kwargs)
        self._ray_started = True
        context = ray.get_runtime_context()
        nodes = [{"ip": n.get("NodeManagerAddress"), "metrics_port": n.get("MetricsExportPort")}
                 for n in ray.nodes() if n.get("Alive")]
        gpus = float(ray.cluster_resources().get("GPU", 0))
        session_dir = _session_dir()
        emit("ray_ready", ray_version=ray.__version__, session_dir=session_dir, nodes=nodes, gpus=gpus,
             job_id=context.get_job_id())
        if session_dir:
            threading.Thread(target=tail_serve_logs, args=(Path(session_dir) / "logs" / "serve", self.stop_requested),
                             name="serve-log-tail", daemon=True).start()

        from ray import serve

        engine_kwargs = engine_kwargs_from_cli(self.config["engine_args"])
        self.config["engine_kwargs"] = engine_kwargs
        emit("app_deploy_start", engine_kwargs=engine_kwargs)
        start_kwargs: dict[str, Any] = {}
        if self.config.get("proxy_location"):
            # Several nodes on one IP: a proxy per node would fight over the one port.
            start_kwargs["proxy_location"] = self.config["proxy_location"]
        serve.start(http_options={"host": self.config["host"], "port": int(self.config["port"])}, **start_kwargs)
        self._serve_started = True
        app = build_app(self.config, gpus)
        serve.run(app, name=self.app_name, route_prefix="/", blocking=False)
        emit("app_ready", deployments=self._deployments(), url=_root_url())

    def _deployments(self) -> dict[str, dict[str, Any]]:
        from ray import serve

        app = serve.status().applications.get(self.app_name)
        if app is None:
            return {}
        return {name: {"status": _text(d.status), "replicas": {_text(k): n for k, n in d.replica_states.items()},
                       "message": d.message} for name, d in app.deployments.items()}

    def watch(self) -> int:
        """Print every change of the deployments' status until told to stop."""
        from ray import serve

        last: dict[str, Any] = {}
        while not self.stop_requested.wait(STATUS_POLL_S):
            try:
                app = serve.status().applications.get(self.app_name)
            except Exception as exc:
                emit("status_error", error=f"{type(exc).__name__}: {exc}")
                continue
            if app is None:
                continue
            current = {"app": _text(app.status), "deployments": self._deployments()}
            if current != last:
                emit("status", **current)
                last = current
        return 0

    def _serve_down(self) -> None:
        try:
            _serve_down_impl(self.local, self.app_name)
        except Exception as exc:
            emit("shutdown_error", step="serve", error=f"{type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        """serve.shutdown (local) or serve.delete (shared cluster), then ray.shutdown."""
        emit("shutdown_start")
        if self._serve_started:
            # Bounded: after a failed start the ingress drains the still-open
            # first request for its graceful_shutdown_timeout_s (20 s, Ray 2.60)
            # while the controller keeps retrying the replica. A local Ray is
            # ours, so ray.shutdown() may stop what is left.
            worker = threading.Thread(target=self._serve_down, name="serve-shutdown", daemon=True)
            worker.start()
            worker.join(SERVE_SHUTDOWN_TIMEOUT_S)
            if worker.is_alive():
                emit("shutdown_error", step="serve", error=f"not done after {SERVE_SHUTDOWN_TIMEOUT_S:.0f} s; "
                     "ray.shutdown() stops the rest")
        if self._ray_started:
            import ray

            ray.shutdown()
        emit("shutdown_done")


def tail_serve_logs(directory: Path, stop: threading.Event) -> None:
    """Copy the file-only Serve lines (replica started, replica initializing) to stdout."""
    offsets: dict[Path, int] = {}
    while not stop.wait(TAIL_POLL_S):
        for path in sorted(directory.glob("*.log")) if directory.is_dir() else []:
            try:
                with path.open("rb") as fh:
                    fh.seek(offsets.get(path, 0))
                    chunk = fh.read()
            except OSError:
                continue
            # Only whole lines; a half-written one is read again next time.
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[path] = offsets.get(path, 0) + len(complete)
            for raw in complete.decode("utf-8", "replace").splitlines():
                if FILE_ONLY_RE.search(raw):
                    sys.stdout.write(f"{SERVE_LOG_PREFIX} {raw}\n")
            sys.stdout.flush()


def _serve_down_impl(local: bool, app_name: str) -> None:
    from ray import serve

    if local:
        serve.shutdown()
    else:  # never take down a cluster's other applications
        serve.delete(app_name)


def _root_url() -> str | None:
    """Where the Serve proxy listens: on an existing cluster Serve may already
    run with its own http_options, and ours are then not applied (Ray 2.60)."""
    try:
        from ray.serve.context import _get_global_client

        return str(_get_global_client().root_url)
    except Exception:
        return None


def _text(value: object) -> str:
    """Enum members and plain strings alike (serve.status() mixes them in 2.60)."""
    return str(getattr(value, "value", value))


def _session_dir() -> str | None:
    try:
        from ray._private.worker import global_worker

        return str(global_worker.node.get_session_dir_path())
    except Exception:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_coldstart.launch.ray_driver")
    parser.add_argument("--config-json", required=True,
                        help="JSON written by the ray-serve launcher (ray_serve.driver_config); env var values "
                             "are read from this process's environment, never passed here")
    args = parser.parse_args(argv)
    driver = Driver(json.loads(args.config_json))

    def on_signal(signum: int, _frame: object) -> None:
        driver.stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        driver.start()
        code = driver.watch()
    except SystemExit as exc:
        code = int(exc.code or 0)
    except BaseException as exc:
        emit("driver_error", error=f"{type(exc).__name__}: {exc}")
        code = EXIT_DEPLOY_FAILED
    finally:
        driver.shutdown()
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
