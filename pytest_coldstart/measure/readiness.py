"""Readiness beyond ``/health``: ``correct`` (serves the right tokens) and ``warm_s`` (latency settled).

* ``correct``: the first greedy completion (the TTFT request: temperature 0)
  must equal the oracle recorded for (model, vLLM version, engine args, prompt,
  max_tokens). Fail closed: a mismatch makes the start a failed start, not a fast
  one. With no oracle yet the completion is recorded as the oracle and
  ``correct`` stays None (unknown), so the next start is checked against it.
* ``warm_s``: seconds from ready until request latency settles: after the TTFT
  request, up to ``n`` more identical requests; steady state is the median of
  the last ``tail``; the start is warm from the first request that begins a run
  of ``k`` requests all within ``tolerance`` of steady state (SGLang's first
  benchmark after start ran at half speed because of deferred JIT).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_coldstart.launch.ttft import PROMPT, TTFTSample
from pytest_coldstart.model.files import atomic_write_json

#: Defaults: requests after TTFT, run length, tolerance, steady-state window, absolute slack for tiny latencies.
WARM_REQUESTS = 6
WARM_K = 3
WARM_TOLERANCE = 0.25
WARM_TAIL = 3
WARM_SLACK_S = 0.005


@dataclass(frozen=True)
class Request:
    """One request after ready: when it was sent (seconds since spawn) and how long the full response took."""

    sent_s: float
    latency_s: float


def settled_index(latencies: Sequence[float], *, k: int = WARM_K, tolerance: float = WARM_TOLERANCE,
                  tail: int = WARM_TAIL, slack_s: float = WARM_SLACK_S) -> int | None:
    """Index of the first request that starts *k* in a row within *tolerance* of steady state, or None."""
    if len(latencies) < max(k, tail):
        return None
    steady = statistics.median(latencies[-tail:])
    limit = steady * (1 + tolerance) + slack_s
    for i in range(len(latencies) - k + 1):
        if all(x <= limit for x in latencies[i:i + k]):
            return i
    return None


@dataclass(frozen=True)
class Warmth:
    warm_s: float | None
    steady_latency_s: float | None
    latencies_s: tuple[float, ...]
    settled_at: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"warm_s": self.warm_s, "steady_latency_s": self.steady_latency_s,
                "latencies_s": list(self.latencies_s), "settled_at": self.settled_at}


def warmth(requests: Sequence[Request], ready_s: float, **kw: Any) -> Warmth:
    """``warm_s`` from the requests sent after ready (the TTFT request first)."""
    latencies = [r.latency_s for r in requests]
    index = settled_index(latencies, **kw)
    tail = kw.get("tail", WARM_TAIL)
    steady = round(statistics.median(latencies[-tail:]), 6) if len(latencies) >= tail else None
    warm: float | None = None
    if index == 0:
        warm = 0.0
    elif index is not None:  # warm once the last slow request has answered
        before = requests[index - 1]
        warm = round(max(0.0, before.sent_s + before.latency_s - ready_s), 6)
    return Warmth(warm, steady, tuple(latencies), index)


def oracle_key(model: str, vllm_version: str | None, engine_args: Sequence[str], prompt: str = PROMPT,
               max_tokens: int = 16, launcher: str = "vllm") -> str:
    """A stable id for the (model, server, vLLM version, args, request) an oracle holds for.

    The launcher is part of it: another server (transformers serve) may decode the same greedy prompt
    differently, which is not a wrong answer from either. vLLM under Docker or Ray keeps its own oracle too.
    """
    fields = {"model": model, "vllm": vllm_version, "args": list(engine_args), "prompt": prompt,
              "max_tokens": max_tokens}
    if launcher != "vllm":  # keys of oracles recorded before launchers were part of it stay valid for vllm
        fields["launcher"] = launcher
    blob = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Correctness:
    correct: bool | None
    detail: str
    key: str
    expected: str | None = None
    got: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "detail": self.detail, "oracle_key": self.key, "expected": self.expected,
                "got": self.got}


@dataclass
class OracleStore:
    """Recorded first greedy completions, one JSON file per key under *root*."""

    root: Path
    _cache: dict[str, Any] = field(default_factory=dict)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        text = data.get("completion") if isinstance(data, dict) else None
        return text if isinstance(text, str) else None

    def record(self, key: str, completion: str, about: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path(key), {"completion": completion, **dict(about)}, overwrite=False)


def check_correct(store: OracleStore, key: str, sample: TTFTSample | None, about: Mapping[str, Any]) -> Correctness:
    """Compare the first greedy completion with the oracle; record it when there is none (fail closed on mismatch)."""
    if sample is None:
        return Correctness(None, "no completion to check", key)
    expected = store.get(key)
    if expected is None:
        try:
            store.record(key, sample.completion_text, about)
        except (OSError, FileExistsError) as exc:
            return Correctness(None, f"no oracle, and recording one failed: {exc}", key, None, sample.completion_text)
        return Correctness(None, f"no oracle yet: recorded this completion as the oracle ({store.path(key)})", key,
                           None, sample.completion_text)
    if sample.completion_text == expected:
        return Correctness(True, "first greedy completion matches the oracle", key, expected, sample.completion_text)
    return Correctness(False, "first greedy completion differs from the oracle: the server serves wrong tokens "
                              f"(oracle {store.path(key)}; delete it only if the change is intended)",
                       key, expected, sample.completion_text)


def measure_warmth(send: Callable[[], TTFTSample], now_s: Callable[[], float], ttft: TTFTSample, ready_s: float,
                   n: int = WARM_REQUESTS) -> Warmth:
    """Send *n* more requests with *send* (one at a time) and compute ``warm_s``; the TTFT request counts first."""
    # The TTFT request ended just now; it was sent its response time ago.
    requests = [Request(now_s() - ttft.first_response_s, ttft.first_response_s)]
    for _ in range(n):
        sent = now_s()
        sample = send()
        requests.append(Request(sent, sample.first_response_s))
    return warmth(requests, ready_s)
