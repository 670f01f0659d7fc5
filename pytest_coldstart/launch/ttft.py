"""Time to first token through the OpenAI client, streaming."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_coldstart.model.clock import Clock

PROMPT = "the cold start of a model server"


@dataclass(frozen=True)
class TTFTSample:
    """Request sent -> first content token, and -> last chunk of the response."""

    ttft_s: float | None
    first_response_s: float
    completion_text: str
    chunks: int


def measure_ttft(base_url: str, model: str, clock: Clock, *, max_tokens: int = 16,
                 timeout_s: float = 120.0, prompt: str = PROMPT) -> TTFTSample:
    """Send one streaming completion and time it.

    ``ttft_s`` is None when the stream carried no non-empty text (a model that
    only emits special tokens); the full response time is still measured.
    """
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", timeout=timeout_s, max_retries=0)
    try:
        sent = clock.monotonic_s()
        stream = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens,
                                           temperature=0.0, stream=True)
        first: float | None = None
        parts: list[str] = []
        chunks = 0
        for chunk in stream:
            chunks += 1
            text = chunk.choices[0].text if chunk.choices else ""
            if text and first is None:
                first = clock.monotonic_s()
            parts.append(text or "")
        done = clock.monotonic_s()
    finally:
        client.close()
    return TTFTSample(None if first is None else round(first - sent, 6), round(done - sent, 6), "".join(parts), chunks)
