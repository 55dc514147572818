"""An OpenAI-style streaming server with a known schedule, for checking a load generator's accuracy.

Every request's first token is written T ms after the request has been read, then one token every I ms, each as
its own SSE event, then a usage event and [DONE]. Times are absolute (arrival + T + k*I), so a late timer does not
push later tokens back. The server is plain asyncio with one JSON parse per request and no work per token beyond
one write, so at the loads used here its own error is well under a millisecond.

It also serves /metrics with vLLM's counter names, and can misbehave on purpose:
    --fail-every K        every K-th request gets HTTP 500
    --error-every K       every K-th request sends an error event halfway through its stream
    --metrics-scale F     the /metrics generation-token counter reports F x the tokens really sent
Usage: python scheduled_server.py --port 0 --ttft-ms 150 --itl-ms 10   (prints "LISTENING <port>" when ready)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.requests = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = 0
        self.running = 0


def event(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def plain(writer: asyncio.StreamWriter, status: str, body: bytes, ctype: str = "application/json") -> None:
    writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
                 % (status.encode(), ctype.encode(), len(body), body))


async def stream(state: State, writer: asyncio.StreamWriter, req: dict, chat: bool, arrival: float) -> None:
    args = state.args
    loop = asyncio.get_running_loop()
    state.requests += 1
    n_request = state.requests
    if args.fail_every and n_request % args.fail_every == 0:
        plain(writer, "500 Internal Server Error", b'{"error":{"message":"scheduled failure","code":500}}')
        return
    n = int(req.get("max_tokens") or req.get("max_completion_tokens") or 16)
    prompt = req.get("prompt") if not chat else " ".join(m.get("content", "") for m in req.get("messages", []))
    prompt_tokens = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
    obj = "chat.completion.chunk" if chat else "text_completion"
    choice = (lambda: {"index": 0, "delta": {"content": " tok"}}) if chat else (
        lambda: {"index": 0, "text": " tok", "finish_reason": None})
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    error_at = n // 2 if args.error_every and n_request % args.error_every == 0 else None
    state.running += 1
    state.prompt_tokens += prompt_tokens
    try:
        for k in range(n):
            due = arrival + (args.ttft_ms + k * args.itl_ms) / 1000.0
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if error_at is not None and k == error_at:
                writer.write(event({"error": {"message": "scheduled mid-stream error", "type": "InternalError",
                                              "code": 500}}))
                writer.write(event_done())
                writer.write(b"0\r\n\r\n")
                return
            writer.write(event({"id": "x", "object": obj, "model": req.get("model", "m"), "choices": [choice()]}))
            state.generation_tokens += 1
        writer.write(event({"id": "x", "object": obj, "model": req.get("model", "m"), "choices": [],
                            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                      "total_tokens": n + prompt_tokens}}))
        writer.write(event_done())
        writer.write(b"0\r\n\r\n")
        state.success += 1
    finally:
        state.running -= 1


def event_done() -> bytes:
    data = b"data: [DONE]\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def metrics_text(state: State) -> bytes:
    gen = state.generation_tokens * state.args.metrics_scale
    lines = [
        "# TYPE vllm:prompt_tokens_total counter",
        f'vllm:prompt_tokens_total{{model_name="m"}} {float(state.prompt_tokens)}',
        f'vllm:generation_tokens_total{{model_name="m"}} {float(gen)}',
        f'vllm:request_success_total{{finished_reason="length",model_name="m"}} {float(state.success)}',
        'vllm:num_preemptions_total{model_name="m"} 0.0',
        f'vllm:num_requests_running{{model_name="m"}} {float(state.running)}',
        'vllm:num_requests_waiting{model_name="m"} 0.0',
        f'vllm:kv_cache_usage_perc{{model_name="m"}} {min(1.0, state.running / 256):.4f}',
    ]
    return ("\n".join(lines) + "\n").encode()


async def handle(state: State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            raw = await reader.readexactly(length) if length else b""
            arrival = loop.time()  # the schedule starts when the whole request has been read
            if path.startswith(("/v1/completions", "/v1/chat/completions")):
                await stream(state, writer, json.loads(raw), "chat" in path, arrival)
            elif path.startswith("/metrics"):
                plain(writer, "200 OK", metrics_text(state), "text/plain; version=0.0.4")
            elif path.startswith("/tokenize"):
                req = json.loads(raw) if raw else {}
                toks = list(range(len(str(req.get("prompt", "")).split())))
                plain(writer, "200 OK", json.dumps({"tokens": toks, "count": len(toks)}).encode())
            elif path.startswith("/health"):
                plain(writer, "200 OK", b"")
            else:
                plain(writer, "200 OK", json.dumps({"object": "list", "data": [
                    {"id": "m", "object": "model", "max_model_len": 100000}]}).encode())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError, ValueError):
        pass
    finally:
        writer.close()


async def main(args: argparse.Namespace) -> None:
    state = State(args)
    server = await asyncio.start_server(lambda r, w: handle(state, r, w), "127.0.0.1", args.port, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--ttft-ms", type=float, default=150.0)
    p.add_argument("--itl-ms", type=float, default=10.0)
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--error-every", type=int, default=0)
    p.add_argument("--metrics-scale", type=float, default=1.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        pass


def launch(**options):
    """Context manager for tests: start this server as a subprocess on a free port, yield its base URL, and
    always stop that process (by its PID) afterwards. Options are the command-line flags, e.g. ttft_ms=100."""
    import contextlib
    import subprocess

    @contextlib.contextmanager
    def running():
        argv = [sys.executable, __file__, "--port", "0"]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line.startswith("LISTENING"):
                raise RuntimeError(f"scheduled server did not start: {line!r}")
            yield f"http://127.0.0.1:{int(line.split()[1])}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return running()
