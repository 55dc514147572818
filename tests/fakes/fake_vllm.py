"""A controllable stand-in for `vllm serve`, for faults a real server cannot be made to produce on demand.

Speaks the parts of vLLM's HTTP API tuner uses (/health, /v1/models, /v1/completions streaming, /metrics) and
misbehaves as told by FAKE_VLLM_MODE (env, so the tuner's argv stays that of a real server):

  ok                   serve normally
  exit:CODE:FILE       print FILE's text (a captured real log) and exit with CODE at startup
  exit-once:CODE:FILE:MARK   as exit:..., but only while MARK does not exist (it is created): the retry succeeds
  fatal-hang:FILE      print FILE's text, then hang without exiting (vLLM sometimes does)
  never-ready          open no port, print nothing useful, never become healthy
  die-after:N          exit(1) with a crash line after N completion requests
  hang-after:N         after N completion requests, accept connections but never answer
  fail-every:K         every K-th completion gets HTTP 500
  truncate-every:K     every K-th completion stream stops mid-way (no usage, no [DONE])
  malformed-every:K    every K-th completion sends a non-JSON data line
  stubborn-child       also fork a child that ignores SIGTERM (tests process-group teardown)

Tokens: each completion streams max_tokens chunks TOKEN_MS apart (FAKE_VLLM_TOKEN_MS, default 1) with a usage chunk.
/metrics reports generation/prompt token counters so client/server cross-checks work; FAKE_VLLM_SKEW multiplies the
reported generation tokens (to provoke a token-mismatch flag).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path


def arg(name: str, default: str | None = None) -> str | None:
    argv = sys.argv
    return argv[argv.index(name) + 1] if name in argv else default


MODE = os.environ.get("FAKE_VLLM_MODE", "ok")
TOKEN_S = float(os.environ.get("FAKE_VLLM_TOKEN_MS", "1")) / 1000
SKEW = float(os.environ.get("FAKE_VLLM_SKEW", "1"))
STARTUP_S = float(os.environ.get("FAKE_VLLM_STARTUP_S", "0.3"))
HOST, PORT, MODEL = arg("--host", "127.0.0.1"), int(arg("--port", "8000")), arg("--model", "fake")
state = {"completions": 0, "prompt_tokens": 0, "generation_tokens": 0, "hang": False}


def mode_arg() -> str:
    return MODE.split(":", 1)[1] if ":" in MODE else ""


def every(k_text: str) -> bool:
    return state["completions"] % int(k_text) == 0


async def write_json(writer, status: int, obj) -> None:
    body = json.dumps(obj).encode()
    writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body))
    await writer.drain()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def completion(writer, req: dict) -> None:
    state["completions"] += 1
    n = int(req.get("max_tokens") or 16)
    prompt = req.get("prompt")
    prompt_tokens = len(prompt) if isinstance(prompt, list) else len(fake_encode(str(prompt)))
    if MODE.startswith("die-after") and state["completions"] > int(mode_arg()):
        print("RuntimeError: fake engine core died (EngineDeadError)", flush=True)
        os._exit(1)
    if MODE.startswith("hang-after") and state["completions"] > int(mode_arg()):
        state["hang"] = True
    if state["hang"]:
        await asyncio.sleep(3600)
    if MODE.startswith("fail-every") and every(mode_arg()):
        await write_json(writer, 500, {"error": {"message": "fake internal error"}})
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    truncate = MODE.startswith("truncate-every") and every(mode_arg())
    malformed = MODE.startswith("malformed-every") and every(mode_arg())
    for i in range(n):
        if truncate and i == n // 2:
            writer.write(b"0\r\n\r\n")  # a clean end of the HTTP body, but a stream missing its usage and [DONE]
            await writer.drain()
            return
        event = {"id": "x", "object": "text_completion", "model": MODEL, "choices": [{"index": 0, "text": " t", "finish_reason": None}]}
        writer.write(chunk(b"data: " + json.dumps(event).encode() + b"\n\n"))
        if malformed and i == 1:
            writer.write(chunk(b"data: {not json\n\n"))
        await writer.drain()
        if TOKEN_S:
            await asyncio.sleep(TOKEN_S)
    state["prompt_tokens"] += prompt_tokens
    state["generation_tokens"] += n
    usage = {"id": "x", "object": "text_completion", "model": MODEL, "choices": [],
             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": n + prompt_tokens}}
    writer.write(chunk(b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"))
    writer.write(b"0\r\n\r\n")
    await writer.drain()


def fake_encode(text: str) -> list[int]:
    """The fake's tokenizer: one token per whitespace-separated word; "w<id>" is token <id>."""
    return [int(w[1:]) if w[:1] == "w" and w[1:].isdigit() else 16 + sum(w.encode()) % 1000 for w in text.split()]


def fake_decode(ids: list[int]) -> str:
    return " ".join(f"w{i}" for i in ids)


def metrics_text() -> str:
    labels = f'{{engine="0",model_name="{MODEL}"}}'
    return "\n".join([
        "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
        f"vllm:prompt_tokens_total{labels} {float(state['prompt_tokens'])}",
        f"vllm:generation_tokens_total{labels} {float(state['generation_tokens']) * SKEW}",
        f"vllm:num_preemptions_total{labels} 0.0",
        f"vllm:kv_cache_usage_perc{labels} 0.25",
        f"vllm:num_requests_running{labels} 0.0",
        f"vllm:num_requests_waiting{labels} 0.0",
    ]) + "\n"


async def handle(reader, writer) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            _, path, _ = lines[0].split(" ", 2)
            length = next((int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")), 0)
            raw = await reader.readexactly(length) if length else b""
            if state["hang"] and path != "/metrics":
                await asyncio.sleep(3600)
            if path == "/health":
                await write_json(writer, 200, {})
            elif path == "/v1/models":
                await write_json(writer, 200, {"object": "list", "data": [{"id": MODEL, "max_model_len": 4096}]})
            elif path == "/metrics":
                body = metrics_text().encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
            elif path == "/tokenize":
                ids = fake_encode(json.loads(raw).get("prompt", ""))
                await write_json(writer, 200, {"tokens": ids, "count": len(ids), "max_model_len": 4096})
            elif path == "/detokenize":
                await write_json(writer, 200, {"prompt": fake_decode(json.loads(raw).get("tokens", []))})
            elif path == "/v1/completions":
                await completion(writer, json.loads(raw))
            else:
                await write_json(writer, 404, {"error": "not found"})
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve() -> None:
    server = await asyncio.start_server(handle, HOST, PORT)
    print(f"INFO: Application startup complete. fake vLLM on {HOST}:{PORT} pid={os.getpid()}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    print(f"INFO fake vLLM starting, mode {MODE}, pid {os.getpid()}", flush=True)
    if MODE.startswith("exit:"):
        code, path = mode_arg().split(":", 1)
        print(Path(path).read_text(), flush=True)
        sys.exit(int(code))
    if MODE.startswith("exit-once:"):
        code, path, mark = mode_arg().split(":", 2)
        if not Path(mark).exists():
            Path(mark).write_text("failed once\n")
            print(Path(path).read_text(), flush=True)
            sys.exit(int(code))
    if MODE.startswith("fatal-hang:"):
        print(Path(mode_arg()).read_text(), flush=True)
        time.sleep(3600)
    if MODE == "never-ready":
        time.sleep(3600)
    if MODE == "stubborn-child":
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(3600)
            os._exit(0)
    time.sleep(STARTUP_S)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
