"""Time to first token: one streamed completion, under one overall deadline.

The request goes over httpx with the OpenAI completions wire format (SSE
``data:`` lines). The deadline is absolute: it is checked after every chunk,
and a watchdog closes the response when it passes, so neither a server that
trickles keep-alive bytes (every read succeeds, the response never ends) nor
one that goes silent mid-stream can hold the run past it. A per-read timeout
alone (the openai client's) bounds neither.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import httpx

from pytest_coldstart.model.clock import Clock

PROMPT = "the cold start of a model server"


@dataclass(frozen=True)
class TTFTSample:
    """Request sent -> first content token, and -> last chunk of the response."""

    ttft_s: float | None
    first_response_s: float
    completion_text: str
    chunks: int


class TTFTDeadline(TimeoutError):
    """No complete first response before the deadline; ``stage`` says how far it got."""

    def __init__(self, stage: str, waited_s: float) -> None:
        self.stage = stage
        self.waited_s = waited_s
        super().__init__(f"no complete first response within {waited_s:.1f} s (reached: {stage})")


def _texts(buffer: bytearray) -> tuple[list[str | None], bool]:
    """Complete SSE events in *buffer* (consumed): their texts, and whether ``[DONE]`` was seen."""
    texts: list[str | None] = []
    done = False
    while b"\n" in buffer:
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        line = line.strip()
        if not line.startswith(b"data:"):
            continue  # blank separators, ": keep-alive" comments
        payload = line[5:].strip()
        if payload == b"[DONE]":
            done = True
            continue
        try:
            choices = json.loads(payload).get("choices") or []
        except ValueError:
            continue
        texts.append(choices[0].get("text") if choices else None)
    return texts, done


def measure_ttft(base_url: str, model: str, clock: Clock, *, max_tokens: int = 16,
                 timeout_s: float = 120.0, prompt: str = PROMPT) -> TTFTSample:
    """Send one streaming completion and time it; raises ``TTFTDeadline`` after *timeout_s* in all.

    ``ttft_s`` is None when the stream carried no non-empty text (a model that
    only emits special tokens); the full response time is still measured.
    """
    sent = clock.monotonic_s()
    deadline = sent + timeout_s
    stage = "request sent, no response headers"
    first: float | None = None
    parts: list[str] = []
    chunks = 0

    def left() -> float:
        remaining = deadline - clock.monotonic_s()
        if remaining <= 0:
            raise TTFTDeadline(stage, timeout_s)
        return remaining

    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True}
    try:
        with httpx.Client(timeout=httpx.Timeout(left(), connect=min(10.0, left()))) as client, \
                client.stream("POST", f"{base_url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                response.read()
                raise httpx.HTTPStatusError(f"completion request answered {response.status_code}: "
                                            f"{response.text[:300]}", request=response.request, response=response)
            stage = "headers received, no token yet"
            watchdog = threading.Timer(left(), response.close)
            watchdog.daemon = True
            watchdog.start()
            try:
                buffer = bytearray()
                done = False
                for raw in response.iter_raw():
                    left()
                    buffer.extend(raw)
                    texts, done = _texts(buffer)
                    for text in texts:
                        chunks += 1
                        if text and first is None:
                            first = clock.monotonic_s()
                            stage = "first token received, response not finished"
                        parts.append(text or "")
                    if done:
                        break
            except (httpx.HTTPError, httpx.StreamError, OSError, ValueError):
                if clock.monotonic_s() >= deadline:  # the watchdog closed it
                    raise TTFTDeadline(stage, timeout_s) from None
                raise
            finally:
                watchdog.cancel()
    except httpx.TimeoutException:
        raise TTFTDeadline(stage, timeout_s) from None
    finished = clock.monotonic_s()
    if finished > deadline:
        raise TTFTDeadline(stage, timeout_s)
    return TTFTSample(None if first is None else round(first - sent, 6), round(finished - sent, 6), "".join(parts),
                      chunks)
