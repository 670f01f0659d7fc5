"""Floor bandwidth of a weight source: configured in models.toml, or a short probe.

Local disk: write a scratch file next to the weights, fsync it, drop it from
the page cache with ``posix_fadvise(POSIX_FADV_DONTNEED)`` (no root needed:
clean pages of a file we opened), read it back and time the read. S3: time
ranged GETs of one object through a boto3 client (any endpoint, e.g. a
moto_server on 127.0.0.1). The best of a few passes is the floor: a floor is
the fastest the source delivers, not its average.

Weights already in the page cache do not come from storage: their floor is
the host->GPU copy (pinned host memory into ``cuda:0``). It is probed once per
session, only where the harness's torch sees a CUDA device, in a child process
(a CUDA context or cached allocation left in the harness would sit on the GPU
the next measured start needs); or configured as ``floor_gbps.host_to_gpu``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_coldstart.model.clock import Clock, SystemClock
from pytest_coldstart.model.efficiency import (
    FLOOR_CONFIGURED,
    FLOOR_PROBE,
    GB,
    HOST_TO_GPU,
    FloorBandwidth,
    HostToGpuFloor,
    LoadEfficiency,
    assess,
    load_time,
)
from pytest_coldstart.model.errors import ConfigError
from pytest_coldstart.model.registry import ModelSpec, split_source
from pytest_coldstart.optimize.pagecache import drop, resident_bytes

MiB = 2**20
DEFAULT_PROBE_BYTES = 128 * MiB
DEFAULT_PASSES = 3
_CHUNK = 8 * MiB
_LOCAL_KINDS = frozenset({"generated", "local"})
#: The host->GPU probe: a few GiB, best of several copies (measure.preflight.probe_host_to_gpu).
H2D_PROBE_GIB = 2.0
H2D_PROBE_REPEATS = 5
H2D_PROBE_TIMEOUT_S = 180.0
NO_CUDA = "no CUDA device (not probed)"

#: A host->GPU probe: the floor, or why there is none (the words shown after "host->GPU floor:").
HostToGpuProbe = Callable[[], "HostToGpuFloor | str"]

_H2D_CHILD = """
import json, sys
try:
    import torch
except ImportError:
    print(json.dumps({"not_probed": "torch not importable in the harness (not probed)"}))
    raise SystemExit(0)
if not torch.cuda.is_available():
    print(json.dumps({"not_probed": sys.argv[3]}))
    raise SystemExit(0)
from pytest_coldstart.measure.preflight import probe_host_to_gpu
print(json.dumps(probe_host_to_gpu(size_gib=float(sys.argv[1]), repeats=int(sys.argv[2]))))
"""


def _timed_read(path: Path, clock: Clock) -> tuple[float, int, float | None]:
    """Evict *path* from the page cache, then read it sequentially: (seconds, bytes, resident share before)."""
    drop(path)
    size = path.stat().st_size
    resident_b = resident_bytes(path)
    resident = None if resident_b is None or size == 0 else resident_b / size
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        start = clock.monotonic_s()
        total = 0
        while chunk := os.read(fd, _CHUNK):
            total += len(chunk)
        return clock.monotonic_s() - start, total, resident
    finally:
        os.close(fd)


def probe_local_disk(directory: Path, *, size_bytes: int = DEFAULT_PROBE_BYTES, passes: int = DEFAULT_PASSES,
                     clock: Clock | None = None) -> FloorBandwidth:
    """Read throughput of the filesystem under *directory* with the page cache evicted.

    The scratch file is removed afterwards. Raises ``ConfigError`` if the
    directory is not writable or the kernel has no ``posix_fadvise``.
    """
    clock = clock or SystemClock()
    if not hasattr(os, "posix_fadvise"):
        raise ConfigError("the local disk probe needs os.posix_fadvise (Linux); configure floor_gbps "
                          "in benchmarks/models.toml instead")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".coldstart-floor-probe-")
    except OSError as exc:
        raise ConfigError(f"cannot write the disk probe file in {directory} ({exc.strerror}); "
                          "configure floor_gbps in benchmarks/models.toml instead") from None
    path = Path(name)
    try:
        # Incompressible bytes: a filesystem that compresses or dedups must not flatter the disk.
        block = os.urandom(MiB)
        with os.fdopen(fd, "wb") as fh:
            for _ in range(max(1, size_bytes // MiB)):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())  # dirty pages cannot be dropped; clean ones can
        samples = [_timed_read(path, clock) for _ in range(max(1, passes))]
    finally:
        path.unlink(missing_ok=True)
    rates = [n / s / GB for s, n, _ in samples if s > 0]
    if not rates:
        raise ConfigError(f"disk probe in {directory} read too fast to time; configure floor_gbps instead")
    best = max(rates)
    resident = [r for _, _, r in samples if r is not None]
    cache_note = ("page cache evicted before each pass" if not resident
                  else f"page cache evicted before each pass (mincore: {max(resident):.0%} still resident)")
    detail = (f"local disk read of {samples[0][1] // MiB} MiB in {directory}, best of {len(rates)} passes "
              f"({', '.join(f'{r:.3g}' for r in rates)} GB/s), {cache_note}")
    return FloorBandwidth(round(best, 6), FLOOR_PROBE, detail)


def probe_s3(client: Any, bucket: str, key: str, *, range_bytes: int = 8 * MiB, max_bytes: int = 256 * MiB,
             passes: int = 2, clock: Clock | None = None, endpoint: str = "") -> FloorBandwidth:
    """Throughput of sequential ranged GETs of ``s3://bucket/key`` through a boto3 *client*.

    This measures one connection, sequentially: a lower bound on what the
    source can give (Run:ai streams with many). Configure the aggregate
    figure in models.toml where it is known.
    """
    clock = clock or SystemClock()
    size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    if size == 0:
        raise ConfigError(f"s3://{bucket}/{key} is empty; probe an object with the model's weights")
    limit = min(size, max_bytes)
    rates = []
    for _ in range(max(1, passes)):
        start = clock.monotonic_s()
        got = 0
        while got < limit:
            end = min(got + range_bytes, limit) - 1
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={got}-{end}")["Body"]
            got += len(body.read())
            body.close()
        elapsed = clock.monotonic_s() - start
        if elapsed > 0:
            rates.append(got / elapsed / GB)
    if not rates:
        raise ConfigError(f"S3 probe of s3://{bucket}/{key} read too fast to time; configure floor_gbps instead")
    where = f" at {endpoint}" if endpoint else ""
    detail = (f"S3 ranged GET of {limit // MiB} MiB from s3://{bucket}/{key}{where} in {range_bytes // MiB} MiB "
              f"ranges, one connection, best of {len(rates)} passes ({', '.join(f'{r:.3g}' for r in rates)} GB/s)")
    return FloorBandwidth(round(max(rates), 6), FLOOR_PROBE, detail)


def _cpu_only_torch() -> str | None:
    """Why the harness's torch cannot see a GPU, read from its metadata alone (no import), or None."""
    if importlib.util.find_spec("torch") is None:
        return "torch not importable in the harness (not probed)"
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    # A "+cpu" wheel (the CPU lane's) has no CUDA runtime: saves importing torch (~1.5 s) to be told so.
    return NO_CUDA if version.endswith("+cpu") else None


def h2d_floor_from_answer(answer: Mapping[str, Any], *, size_gib: float = H2D_PROBE_GIB,
                          repeats: int = H2D_PROBE_REPEATS) -> HostToGpuFloor | str:
    """The floor from ``probe_host_to_gpu``'s answer (a dict), or the reason given instead of one."""
    if "not_probed" in answer:
        return str(answer["not_probed"])
    try:
        return HostToGpuFloor(float(answer["pinned_gbps"]), float(answer["pageable_gbps"]), FLOOR_PROBE,
                              f"torch copy of {int(answer.get('size_bytes', size_gib * 2**30)) / 2**30:.3g} GiB "
                              f"host->cuda:0, best of {repeats} (pinned and pageable source memory)")
    except (KeyError, TypeError, ValueError) as exc:
        return f"host->GPU probe gave no usable answer ({exc!r}) (not probed)"


def probe_host_to_gpu_floor(size_gib: float = H2D_PROBE_GIB, repeats: int = H2D_PROBE_REPEATS, *,
                            python: str | None = None, timeout_s: float = H2D_PROBE_TIMEOUT_S) -> HostToGpuFloor | str:
    """The host->GPU floor where the harness's torch sees a CUDA device, else why not (never a made-up number).

    Runs ``measure.preflight.probe_host_to_gpu`` in a child process of *python* (the harness's own
    interpreter by default), so the harness keeps no CUDA context or GPU memory. NOT run on a GPU in
    this project (no GPU here): tested against the recorded H200 answer.
    """
    if python is None:
        why = _cpu_only_torch()
        if why is not None:
            return why
    argv = [python or sys.executable, "-c", _H2D_CHILD, str(size_gib), str(repeats), NO_CUDA]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"host->GPU probe took over {timeout_s:.0f} s (not probed)"
    except OSError as exc:
        return f"host->GPU probe could not start ({exc.strerror}) (not probed)"
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"host->GPU probe failed (exit {proc.returncode}: {tail}) (not probed)"
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError:
        return f"host->GPU probe printed no answer ({lines[-1][:200]!r}) (not probed)"
    return h2d_floor_from_answer(answer, size_gib=size_gib, repeats=repeats)


def _configured_gbps(model: ModelSpec, kind: str) -> float | None:
    """``floor_gbps.<kind>`` of *model* in models.toml (GB/s), if set."""
    value = dict(getattr(model, "floor_gbps", ()) or ()).get(kind)
    return None if value is None else float(value)


def configured_host_to_gpu(model: ModelSpec) -> HostToGpuFloor | None:
    """``floor_gbps.host_to_gpu`` of *model* in models.toml, if set (pinned GB/s; pageable unknown)."""
    value = _configured_gbps(model, HOST_TO_GPU)
    if value is None:
        return None
    return HostToGpuFloor(value, None, FLOOR_CONFIGURED,
                          f"models.toml [models.{model.name}] floor_gbps.{HOST_TO_GPU}")


def configured_floor(model: ModelSpec, kind: str) -> FloorBandwidth | None:
    """``floor_gbps.<kind>`` of *model* in models.toml, if set."""
    value = _configured_gbps(model, kind)
    if value is None:
        return None
    return FloorBandwidth(value, FLOOR_CONFIGURED, f"models.toml [models.{model.name}] floor_gbps.{kind}")


class FloorResolver:
    """Floors for the runs of one session: configured ones as given, probes once per directory.

    :param probe_dir: where the local disk probe writes its scratch file (same
        filesystem as generated models: the workdir).
    :param host_to_gpu_probe: called at most once per session for the host->GPU floor; returns it or
        why there is none. Default :func:`probe_host_to_gpu_floor`; tests pass a recorded answer.
    """

    def __init__(self, probe_dir: Path, *, clock: Clock | None = None, probe_bytes: int = DEFAULT_PROBE_BYTES,
                 passes: int = DEFAULT_PASSES, host_to_gpu_probe: HostToGpuProbe | None = None) -> None:
        self.probe_dir = probe_dir
        self.clock = clock or SystemClock()
        self.probe_bytes = probe_bytes
        self.passes = passes
        self.host_to_gpu_probe = host_to_gpu_probe or probe_host_to_gpu_floor
        self._probes: dict[str, FloorBandwidth | str] = {}
        self._h2d: HostToGpuFloor | str | None = None

    def host_to_gpu(self, model: ModelSpec) -> tuple[HostToGpuFloor | None, str]:
        """(the host->GPU floor or None, why there is none): configured, else probed once per session."""
        configured = configured_host_to_gpu(model)
        if configured is not None:
            return configured, ""
        if self._h2d is None:
            try:
                self._h2d = self.host_to_gpu_probe()
            except Exception as exc:  # a probe's failure is a note on the result, never a failed run
                self._h2d = f"host->GPU probe failed: {exc} (not probed)"
        return (self._h2d, "") if isinstance(self._h2d, HostToGpuFloor) else (None, self._h2d)

    def floor(self, model: ModelSpec, optimization: str) -> tuple[FloorBandwidth | None, str, str]:
        """(floor or None, source kind, why there is none)."""
        kind, _ = split_source(model.source_for(optimization))
        configured = configured_floor(model, kind)
        if configured is not None:
            return configured, kind, ""
        if kind not in _LOCAL_KINDS:
            return None, kind, (f"no floor for {kind} sources: set floor_gbps.{kind} for {model.name} in "
                                "benchmarks/models.toml (measure one with `coldstart floor`)")
        key = str(self.probe_dir)
        if key not in self._probes:
            try:
                self._probes[key] = probe_local_disk(self.probe_dir, size_bytes=self.probe_bytes,
                                                     passes=self.passes, clock=self.clock)
            except (ConfigError, OSError) as exc:
                self._probes[key] = f"disk probe failed: {exc}"
        probe = self._probes[key]
        return (probe, kind, "") if isinstance(probe, FloorBandwidth) else (None, kind, probe)

    def assess_run(self, model: ModelSpec, optimization: str, phases: Sequence[Any],
                   reported: Mapping[str, Any], *, resident_share: float | None = None) -> LoadEfficiency:
        """The efficiency object a run's result carries (the probes run after the server stopped).

        :param resident_share: share of the local weights in the page cache right before the start
            (the hygiene record), None where unknown: decides which floor applies.
        """
        if load_time(phases, reported)[0] is None:  # a start that never loaded: no reason to probe
            kind, _ = split_source(model.source_for(optimization))
            h2d = configured_host_to_gpu(model)
            return assess(model.weight_bytes, phases, reported, configured_floor(model, kind), source_kind=kind,
                          floor_note="floor not probed", host_to_gpu=h2d,
                          host_to_gpu_note="" if h2d else "not probed (no load observed)",
                          resident_share=resident_share)
        floor, kind, why = self.floor(model, optimization)
        h2d, h2d_why = self.host_to_gpu(model)
        return assess(model.weight_bytes, phases, reported, floor, source_kind=kind, floor_note=why,
                      host_to_gpu=h2d, host_to_gpu_note=h2d_why, resident_share=resident_share)
