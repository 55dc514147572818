"""A controllable stand-in for `vllm serve`, for faults a real server cannot be made to produce on demand.

Served by real uvicorn, as vLLM's API server is, and no kinder than it: at most `--max-num-seqs` requests generate
at once and the rest queue (visible in /metrics as running and waiting gauges), and idle keep-alive connections are
closed after VLLM_HTTP_TIMEOUT_KEEP_ALIVE seconds (default 5, as in vLLM). It speaks the parts of vLLM's HTTP API
tuner uses (/health, /version, /v1/models, /v1/completions streaming, /tokenize, /detokenize, /metrics) and misbehaves as
told by FAKE_VLLM_MODE (env, so the tuner's argv stays that of a real server):

  ok                   serve normally
  exit:CODE:FILE       print FILE's text (a captured real log) and exit with CODE at startup
  exit-once:CODE:FILE:MARK   as exit:..., but only while MARK does not exist (it is created): the retry succeeds
  fatal-hang:FILE      print FILE's text, then hang without exiting (vLLM sometimes does)
  log-then-serve:FILE  print FILE's text (e.g. a harmless traceback), then serve normally
  never-ready          open no port, print nothing useful, never become healthy
  die-after:N          exit(1) with a crash line after N completion requests
  die-randomly:P:N:FILE  in a share P of launches, die as die-after:N (an OOM under load that happens only sometimes,
                       like the seed's production-peak config); FILE counts launches, and launch i draws from
                       random.Random(i), so a test sees the same sequence of deaths every time
  die-anywhere:P:MAX:FILE  in a share P of launches, exit(1) at once in the middle of a stream: at a token drawn
                       from the launch's random.Random(i) of one of its first MAX completions (FILE counts launches):
                       a server dying at a random point under load, for the soak (benchmarks/death_soak.py)
  die-on:PATH:N        on the N-th request to PATH (/tokenize, /metrics, ...), exit(1) with a crash line without
                       answering it: a server that dies during one of tuner's own calls, at an exact point
  oom-above:T          print vLLM's CUDA out-of-memory line and exit(1) once the requests generating at once hold more
                       than T tokens (prompt + max_tokens each): memory that runs out only at the top of the load
                       (vLLM #21410: the startup memory probe passed, the server died under load)
  first-short-dies:N:SIG  when the very first completion after startup has a prompt shorter than N tokens, the
                       engine's worker dies by signal SIG (ILL, SEGV, BUS, ABRT), as vLLM 0.32's CPU build does on a
                       one-token first prompt (SIGILL): the worker's death line in the log, HTTP 500 EngineDeadError
                       to that request, then the API server exits 0. A longer first request is served, and after it
                       short prompts are too
  first-dies-on:LAUNCHES:SIG:FILE  the launches listed (comma-separated indices; FILE counts launches) die as
                       first-short-dies at their very first completion, whatever its length; the others serve
  hang-after:N         after N completion requests, accept requests but never produce a token; /health stays 200
  fail-every:K         every K-th completion gets HTTP 500
  truncate-every:K     every K-th completion stream stops mid-way (no usage, no [DONE])
  malformed-every:K    every K-th completion sends a non-JSON data line
  stubborn-child       also fork a child that ignores SIGTERM (tests process-group teardown)
  wrong-past:N         picks wrong tokens once the context is longer than N tokens (greedy and teacher-forced):
                       a padded-shape bug (tpu-inference #3466)
  wrong-below-batch:N  answers wrong tokens when --max-num-batched-tokens is below N (the chunked-prefill bug)

In every mode, SIGUSR1 makes the server print a crash line and exit(1) at once: a test ends it at an exact point of
the trial (tuner.trial.run.Seam) instead of after some number of requests.

FAKE_VLLM_NO_TOKENIZER=1: /tokenize and /detokenize answer 404, as an OpenAI-compatible server that is not vLLM does.

A completion with `stream` false answers as vLLM does for the quality probes: a deterministic greedy "model" (the
next token a function of the context), `token_ids` with return_token_ids, per-token `logprobs`, and
`prompt_logprobs` (the logprob of each prompt token given the ones before it: teacher forcing).

Tokens: each completion streams max_tokens chunks TOKEN_MS apart (FAKE_VLLM_TOKEN_MS, default 1) with a usage chunk.
The tokenizer is one token per whitespace-separated word ("w<id>" is token <id>). /metrics reports token counters
so client/server cross-checks work; FAKE_VLLM_SKEW multiplies the reported generation tokens (a token mismatch).
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
KEEP_ALIVE_S = float(os.environ.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE", "5"))
HOST, PORT, MODEL = arg("--host", "127.0.0.1"), int(arg("--port", "8000")), arg("--model", "fake")
MAX_NUM_SEQS = int(arg("--max-num-seqs", "256"))
MAX_NUM_BATCHED_TOKENS = int(arg("--max-num-batched-tokens", "8192"))
VOCAB = 2048
state = {"paths": {}, "completions": 0, "prompt_tokens": 0, "generation_tokens": 0, "succeeded": 0, "hang": False,
         "running": 0, "waiting": 0, "tokens_generating": 0}


def mode_arg() -> str:
    return MODE.split(":", 1)[1] if ":" in MODE else ""


def every(k_text: str) -> bool:
    return state["completions"] % int(k_text) == 0


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
        f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{MODEL}"}}'
        f" {float(state['succeeded'])}",
        f"vllm:kv_cache_usage_perc{labels} {min(1.0, state['running'] / MAX_NUM_SEQS):.4f}",
        f"vllm:num_requests_running{labels} {float(state['running'])}",
        f"vllm:num_requests_waiting{labels} {float(state['waiting'])}",
    ]) + "\n"


async def send_json(send, status: int, obj) -> None:
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


class Scheduler:
    """At most MAX_NUM_SEQS requests generate at once; the rest wait, as in vLLM's scheduler."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(MAX_NUM_SEQS)

    async def __aenter__(self) -> None:
        state["waiting"] += 1
        try:
            await self.slots.acquire()
        finally:
            state["waiting"] -= 1
        state["running"] += 1

    async def __aexit__(self, *exc) -> None:
        state["running"] -= 1
        self.slots.release()


scheduler: Scheduler | None = None


class holding:
    """The tokens a generating request holds (its KV cache and activations); oom-above:T dies past T of them."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    async def __aenter__(self) -> None:
        state["tokens_generating"] += self.tokens
        if MODE.startswith("oom-above") and state["tokens_generating"] > int(mode_arg()):
            print("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (fake: "
                  f"{state['tokens_generating']} tokens generating at once)", flush=True)
            os._exit(1)

    async def __aexit__(self, *exc) -> None:
        state["tokens_generating"] -= self.tokens


async def client_gone(receive) -> None:
    """Returns when the client disconnects (uvicorn also says so once the response is complete)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def completion(send, receive, req: dict) -> None:
    state["completions"] += 1
    n = int(req.get("max_tokens") or 16)
    prompt = req.get("prompt")
    prompt_tokens = len(prompt) if isinstance(prompt, list) else len(fake_encode(str(prompt)))
    if MODE.startswith("first-short-dies:") and state["completions"] == 1:
        shortest, name = mode_arg().split(":")
        if prompt_tokens < int(shortest):
            await worker_killed_by(send, name)
    if MODE.startswith("die-after") and state["completions"] > int(mode_arg()):
        print("RuntimeError: fake engine core died (EngineDeadError)", flush=True)
        os._exit(1)
    if MODE.startswith("hang-after") and state["completions"] > int(mode_arg()):
        state["hang"] = True
    if state["hang"]:
        await asyncio.sleep(3600)  # accepted, never a token: a hung engine
    if MODE.startswith("fail-every") and every(mode_arg()):
        await send_json(send, 500, {"error": {"message": "fake internal error"}})
        return
    truncate = MODE.startswith("truncate-every") and every(mode_arg())
    malformed = MODE.startswith("malformed-every") and every(mode_arg())
    if req.get("stream") is False:
        await answer(send, req)
        return
    gone = asyncio.ensure_future(client_gone(receive))
    try:
        await stream(send, n, prompt_tokens, truncate, malformed, gone)
    finally:
        gone.cancel()


async def worker_killed_by(send, name: str) -> None:
    """vLLM's words when a signal kills its engine's worker, the answer the request gets, and the API server's own
    exit (code 0: it shut down "cleanly" after its engine died)."""
    code = -int(getattr(signal, f"SIG{name}"))
    print(f"ERROR 12-07 14:00:00 [multiproc_executor.py:150] Worker proc VllmWorker-0 died unexpectedly (exit code:"
          f" {code}), shutting down executor.", flush=True)
    print("ERROR 12-07 14:00:00 [async_llm.py:480] EngineDeadError: EngineCore encountered an issue. See stack trace"
          " (above) for the root cause.", flush=True)
    await send_json(send, 500, {"error": {"message": "EngineCore encountered an issue.", "type": "EngineDeadError"}})
    await asyncio.sleep(0.2)
    os._exit(0)


def wrong_for(context_len: int) -> bool:
    if MODE.startswith("wrong-past:"):
        return context_len > int(mode_arg())
    if MODE.startswith("wrong-below-batch:"):
        return int(mode_arg()) > MAX_NUM_BATCHED_TOKENS
    return False


def greedy(context: list[int]) -> tuple[int, float]:
    """The fake model's choice after `context`, and its logprob; a wrong server picks another token."""
    token = (context[-1] * 31 + len(context) * 7 + 3) % VOCAB if context else 3
    return ((token + 1) % VOCAB, -0.05) if wrong_for(len(context)) else (token, -0.05 - 0.01 * (token % 7))


def logprob_of(context: list[int], token: int) -> float:
    chosen, logprob = greedy(context)
    return logprob if token == chosen else -6.0 - 0.001 * (token % 11)


async def answer(send, req: dict) -> None:
    """A non-streaming completion: the probes' greedy answers and teacher-forced prompt logprobs."""
    prompt = [int(t) for t in req["prompt"]] if isinstance(req.get("prompt"), list) else fake_encode(str(req.get("prompt")))
    n = int(req.get("max_tokens") or 16)
    assert scheduler is not None
    async with scheduler:
        context, tokens, logprobs = list(prompt), [], []
        for _ in range(n):
            token, logprob = greedy(context)
            tokens.append(token)
            logprobs.append(logprob)
            context.append(token)
            if TOKEN_S:
                await asyncio.sleep(TOKEN_S)
    choice = {"index": 0, "text": fake_decode(tokens), "finish_reason": "length"}
    if req.get("return_token_ids"):
        choice["token_ids"] = tokens
    if req.get("logprobs") is not None:
        choice["logprobs"] = {"tokens": [f"token_id:{t}" for t in tokens], "token_logprobs": logprobs,
                              "text_offset": [], "top_logprobs": None}
    if req.get("prompt_logprobs") is not None:
        choice["prompt_logprobs"] = [None] + [
            {str(t): {"logprob": logprob_of(prompt[:i], t), "rank": 1, "decoded_token": f"w{t}"}}
            for i, t in enumerate(prompt) if i > 0]
    state["prompt_tokens"] += len(prompt)
    state["generation_tokens"] += n
    state["succeeded"] += 1
    await send_json(send, 200, {"id": "x", "object": "text_completion", "model": MODEL, "choices": [choice],
                                "usage": {"prompt_tokens": len(prompt), "completion_tokens": n,
                                          "total_tokens": len(prompt) + n}})


async def stream(send, n: int, prompt_tokens: int, truncate: bool, malformed: bool, gone: asyncio.Future) -> None:
    assert scheduler is not None
    async with scheduler, holding(prompt_tokens + n):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(n):
            if gone.done():  # as vLLM does, a request whose client left is aborted and frees its slot
                return
            if truncate and i == n // 2:
                await send({"type": "http.response.body", "body": b""})  # a clean end, missing usage and [DONE]
                return
            if state.get("die_at") == (state["completions"], i):
                die(f"mid-stream, completion {state['completions']}, token {i}")
            chunk = {"id": "x", "object": "text_completion", "model": MODEL,
                     "choices": [{"index": 0, "text": " t", "finish_reason": None}]}
            body = event(chunk) + (b"data: {not json\n\n" if malformed and i == 1 else b"")
            await send({"type": "http.response.body", "body": body, "more_body": True})
            if TOKEN_S:
                await asyncio.sleep(TOKEN_S)
        state["prompt_tokens"] += prompt_tokens
        state["generation_tokens"] += n
        state["succeeded"] += 1
    usage = {"id": "x", "object": "text_completion", "model": MODEL, "choices": [],
             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": n + prompt_tokens}}
    await send({"type": "http.response.body", "body": event(usage) + b"data: [DONE]\n\n"})


def die(why: str) -> None:
    print(f"RuntimeError: fake engine core died ({why}) (EngineDeadError)", flush=True)
    os._exit(1)


def die_on(path: str) -> None:
    """die-on:PATH:N: the N-th request to PATH is never answered."""
    state["paths"][path] = state["paths"].get(path, 0) + 1
    if MODE.startswith("die-on:"):
        wanted, n = mode_arg().rsplit(":", 1)
        if wanted == path and state["paths"][path] == int(n):
            die(f"during request {n} to {path}")


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                global scheduler
                scheduler = Scheduler()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    raw = await read_body(receive)
    die_on(path)
    if path == "/health":
        await send_json(send, 200, {})
    elif path == "/version":
        await send_json(send, 200, {"version": os.environ.get("FAKE_VLLM_VERSION", "0.32.0+fake")})
    elif path == "/v1/models":
        await send_json(send, 200, {"object": "list", "data": [{"id": MODEL, "max_model_len": 4096}]})
    elif path == "/metrics":
        body = metrics_text().encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
    elif path in ("/tokenize", "/detokenize") and os.environ.get("FAKE_VLLM_NO_TOKENIZER"):
        await send_json(send, 404, {"detail": "Not Found"})  # an OpenAI-compatible server that is not vLLM
    elif path == "/tokenize":
        ids = fake_encode(json.loads(raw).get("prompt", ""))
        await send_json(send, 200, {"tokens": ids, "count": len(ids), "max_model_len": 4096})
    elif path == "/detokenize":
        await send_json(send, 200, {"prompt": fake_decode(json.loads(raw).get("tokens", []))})
    elif path == "/v1/completions":
        await completion(send, receive, json.loads(raw))
    else:
        await send_json(send, 404, {"error": "not found"})


def serve() -> None:
    import uvicorn

    print(f"INFO fake vLLM on {HOST}:{PORT} pid={os.getpid()}, max-num-seqs {MAX_NUM_SEQS}, "
          f"keep-alive {KEEP_ALIVE_S:g} s", flush=True)
    uvicorn.run(app, host=HOST, port=PORT, timeout_keep_alive=KEEP_ALIVE_S, access_log=False, log_level="info",
                lifespan="on")


def next_launch(counter: Path) -> int:
    launch = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(launch + 1))
    return launch


def launch_dies(probability: float, counter: Path) -> bool:
    import random

    return random.Random(next_launch(counter)).random() < probability


def main() -> None:
    global MODE
    signal.signal(signal.SIGUSR1, lambda *_: die("SIGUSR1"))
    print(f"INFO fake vLLM starting, mode {MODE}, pid {os.getpid()}", flush=True)
    if MODE.startswith("die-randomly:"):
        probability, after, counter = mode_arg().split(":", 2)
        MODE = f"die-after:{after}" if launch_dies(float(probability), Path(counter)) else "ok"
    if MODE.startswith("die-anywhere:"):
        import random

        probability, most, counter = mode_arg().split(":", 2)
        draw = random.Random(next_launch(Path(counter)))
        if draw.random() < float(probability):
            state["die_at"] = (draw.randint(1, int(most)), draw.randint(0, 3))
        MODE = "ok"
    if MODE.startswith("first-dies-on:"):
        launches, name, counter = mode_arg().split(":", 2)
        dies = next_launch(Path(counter)) in {int(n) for n in launches.split(",") if n}
        MODE = f"first-short-dies:{10**9}:{name}" if dies else "ok"
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
    if MODE.startswith("log-then-serve:"):
        print(Path(mode_arg()).read_text(), flush=True)
    if MODE == "never-ready":
        time.sleep(3600)
    if MODE.startswith("never-ready-once:"):  # the first launch never answers /health (a busy host), later ones do
        mark = Path(mode_arg())
        if not mark.exists():
            mark.write_text("hung once\n")
            time.sleep(3600)
        MODE = "ok"
    if MODE == "stubborn-child" and os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
        os._exit(0)
    time.sleep(STARTUP_S)
    serve()


if __name__ == "__main__":
    main()
