"""One streaming request and what it measured, with `vllm bench serve`'s definitions.

start  = just before the request is sent
TTFT   = first chunk with non-empty `choices` - start
ITL    = gaps between successive such chunks (per chunk, not per token)
E2EL   = last such chunk - start
tokens = `usage.completion_tokens` from the final usage chunk
A request fails on a non-200 status, an error event, a stream that ends without `usage`, or a timeout.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import httpx

from tuner.loadgen.sse import DONE, SSEParser


@dataclass
class RequestRecord:
    start: float = 0.0
    ok: bool = False
    error: str | None = None
    ttft: float | None = None
    itl: list[float] = field(default_factory=list)
    e2el: float | None = None
    end: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0

    @property
    def tpot(self) -> float | None:
        if not self.ok or self.ttft is None or self.e2el is None or self.output_tokens < 2:
            return None
        return (self.e2el - self.ttft) / (self.output_tokens - 1)


async def send_request(client: httpx.AsyncClient, url: str, body: bytes) -> RequestRecord:
    record = RequestRecord()
    parser = SSEParser()
    last_chunk_at: float | None = None
    finished = False
    record.start = time.perf_counter()
    try:
        async with client.stream("POST", url, content=body, headers={"content-type": "application/json"}) as response:
            if response.status_code != 200:
                await response.aread()
                record.error = f"http_{response.status_code}"
                record.end = time.perf_counter()
                return record
            async for chunk in response.aiter_raw():
                now = time.perf_counter()
                for data in parser.feed(chunk):
                    if data == DONE:
                        finished = True
                        continue
                    event = json.loads(data)
                    if event.get("choices"):
                        if last_chunk_at is None:
                            record.ttft = now - record.start
                        else:
                            record.itl.append(now - last_chunk_at)
                        last_chunk_at = now
                    elif "error" in event:
                        record.error = "error_event"
                    usage = event.get("usage")
                    if usage:
                        record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                        record.output_tokens = int(usage.get("completion_tokens") or 0)
    except httpx.TimeoutException:
        record.error = "timeout"
    except httpx.HTTPError as exc:
        record.error = type(exc).__name__
    except ValueError:
        record.error = "malformed_event"
    record.end = time.perf_counter()
    if record.error is None:
        if last_chunk_at is None or not record.output_tokens:
            record.error = "no_usage" if last_chunk_at is not None else "empty_stream"
        elif not finished and parser.pending.strip():
            record.error = "truncated_stream"
    if record.error is None:
        record.ok = True
        record.e2el = last_chunk_at - record.start
    return record
