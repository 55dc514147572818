"""The load client against servers as they really behave: requests queueing past --max-num-seqs, idle keep-alive
connections closed after a second (real uvicorn, as in vLLM), warm-up on; servers that close every connection;
the close/send race; a connection lost mid-response; a level aborted from another thread."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tuner.load import LevelOptions, LoadPattern, Workload, measure_level
from tuner.load.driver import Driver
from tuner.load.request import StreamingRequest

FAKE = str(Path(__file__).parents[1] / "fakes" / "fake_vllm.py")
W = Workload(model="fake", input_len=8, output_len=40, vocab_size=2048)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def uvicorn_fake(mode: str = "ok", max_num_seqs: int = 4, keep_alive_s: float = 1.0, token_ms: float = 20):
    """The fake vLLM on real uvicorn; stopped (its own process group, by PID) afterwards."""
    port = free_port()
    env = {**os.environ, "FAKE_VLLM_MODE": mode, "FAKE_VLLM_TOKEN_MS": str(token_ms), "FAKE_VLLM_STARTUP_S": "0",
           "VLLM_HTTP_TIMEOUT_KEEP_ALIVE": str(keep_alive_s)}
    proc = subprocess.Popen([sys.executable, FAKE, "--port", str(port), "--max-num-seqs", str(max_num_seqs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def options(**overrides) -> LevelOptions:
    return LevelOptions(**{"request_timeout_s": 30.0, "level_timeout_s": 60.0, **overrides})


def test_closed_loop_at_four_times_max_num_seqs_with_warmup_loses_nothing():
    # 16 streams, 4 generate at a time: four waves of 0.8 s. First-wave connections of the warm-up sit idle for
    # over 2 s while the server closes them after 1 s; the measured phase must never send on one of them.
    with uvicorn_fake() as url:
        level, _ = measure_level(url, W, LoadPattern(concurrency=16, requests=16, warmup=16), options())
    assert level.failed == 0 and level.completed == 16, level.errors
    assert level.output_tokens == 16 * 40
    assert level.server is not None and level.server.generation_tokens == level.output_tokens
    assert level.server.peak_waiting and level.server.peak_waiting > 0  # requests really queued in the server
    assert level.connections_opened >= 4  # idle connections the server closed were replaced, not reused


def test_open_loop_at_four_times_max_num_seqs_with_warmup_loses_nothing():
    # Warm-up: 8 streams, 2 generate at a time, waves of 0.8 s: first-wave connections idle 2.4 s. Then arrivals
    # 0.5 s apart on average over 8 connections: most wait in the idle pool past the 1 s keep-alive.
    with uvicorn_fake(max_num_seqs=2) as url:
        level, _ = measure_level(url, W, LoadPattern(concurrency=8, requests=8, rate=2.0, warmup=8), options())
    assert level.failed == 0 and level.completed == 8, level.errors
    assert level.server is not None and level.server.generation_tokens == level.output_tokens == 8 * 40
    assert level.connections_opened >= 1


# --- raw servers for what uvicorn does not do on demand --------------------------------------------------------
def sse_body(tokens: int = 3) -> bytes:
    content = {"choices": [{"index": 0, "text": " a", "finish_reason": None}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": tokens}}
    events = [b"data: " + json.dumps(content).encode() + b"\n\n"] * tokens
    return b"".join(events) + b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"


def head_with_length(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def read_request(reader: asyncio.StreamReader) -> bool:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return True


@contextmanager
def raw_server(handler):
    """An asyncio server in a thread; `handler(reader, writer, connection_number)` serves one connection.
    At exit the server stops, unfinished handlers are cancelled and the thread's loop is closed."""
    loop = asyncio.new_event_loop()
    started, stop = threading.Event(), asyncio.Event()
    holder: dict = {"n": 0}
    handlers: set[asyncio.Task] = set()

    async def serve(reader, writer):
        holder["n"] += 1
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer, holder["n"])
        except asyncio.CancelledError:  # the test is over
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        holder["port"] = server.sockets[0].getsockname()[1]
        holder["server"] = server
        started.set()
        await stop.wait()
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    try:
        yield f"http://127.0.0.1:{holder['port']}", holder
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


def no_metrics(**overrides) -> LevelOptions:
    return options(metrics=False, **overrides)


@pytest.mark.parametrize("head", [b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
                                  b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/event-stream\r\n\r\n"])
def test_server_that_closes_every_connection(head):
    async def handler(reader, writer, n):
        if await read_request(reader):
            writer.write(head + sse_body())  # no length: the body ends when the server closes
            await writer.drain()

    with raw_server(handler) as (url, _):
        level, records = measure_level(url, W, LoadPattern(concurrency=4, requests=12, warmup=4), no_metrics())
    assert level.failed == 0 and level.completed == 12, level.errors
    assert all(r.output_tokens == 3 for r in records)


@pytest.mark.parametrize("workers", [1, 2])
def test_close_send_race_is_retried_once_on_a_new_connection(workers):
    # Every connection answers its first request, then reads the second and closes without a byte of answer:
    # the race a keep-alive timeout produces. Each such request is sent again, and never counted as failed.
    # With two client processes (one stream each) their counts are summed.
    async def handler(reader, writer, n):
        if await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()
        await read_request(reader)  # then close without answering

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=2, requests=10), no_metrics(workers=workers))
    assert level.failed == 0 and level.completed == 10, level.errors
    assert level.reconnects == level.connections_opened == 8  # all but each stream's first met a closing connection


def test_a_request_is_retried_once_only():
    # The first connection answers once; after that nothing is answered. The second request loses the race on the
    # reused connection, is sent once more on a fresh one, and fails there: not retried again.
    async def handler(reader, writer, n):
        if n == 1 and await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()
        await read_request(reader)

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=1, requests=3), no_metrics())
    assert level.completed == 1 and level.errors == {"closed_before_response": 2}
    assert level.reconnects == 1


def test_a_retry_that_finds_no_connection_is_a_failure_and_the_level_goes_on():
    # The first connection answers once, then the server stops listening and closes it as the second request
    # arrives: the retry cannot connect, so that request fails (never silently dropped), and so do the rest.
    async def handler(reader, writer, n):
        if await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()
        if await read_request(reader):
            holder["server"].close()

    with raw_server(handler) as (url, holder):
        level, records = measure_level(url, W, LoadPattern(concurrency=1, requests=3), no_metrics())
    assert level.requests == 3 and len(records) == 3
    assert level.completed == 1 and level.errors == {"connect_ConnectionRefusedError": 2}
    assert level.reconnects == 1


def test_open_loop_request_that_gets_no_connection_is_a_failure_and_the_level_goes_on():
    # Every connection is closed after one answer (HTTP/1.0); after the third answer the server stops listening.
    # Each arrival then waits for a connection that cannot be opened: it fails (counted), the next one is tried.
    async def handler(reader, writer, n):
        if await read_request(reader):
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + sse_body())
            await writer.drain()
            holder["answered"] = holder.get("answered", 0) + 1
            if holder["answered"] == 3:
                holder["server"].close()

    with raw_server(handler) as (url, holder):
        level, records = measure_level(url, W, LoadPattern(concurrency=2, requests=12, rate=100.0), no_metrics())
    assert level.requests == 12 and len(records) == 12
    assert level.completed >= 3 and level.failed >= 1
    assert set(level.errors) == {"connect_ConnectionRefusedError"}


def test_a_duration_bound_level_stops_sending_and_counts_no_failures():
    async def handler(reader, writer, n):
        while await read_request(reader):
            await asyncio.sleep(0.05)
            writer.write(head_with_length(sse_body()))
            await writer.drain()

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=2, requests=200, duration_s=0.3), no_metrics())
    assert 0 < level.requests < 200  # those never sent are not in the level at all
    assert level.failed == 0, level.errors


def test_fresh_connection_closed_before_response_is_a_failure_not_retried():
    async def handler(reader, writer, n):
        await read_request(reader)  # never answers

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=2, requests=4), no_metrics())
    assert level.failed == 4 and level.errors == {"closed_before_response": 4}
    assert level.reconnects == 0


def test_connection_lost_after_the_first_byte_is_a_failure_even_on_a_reused_connection():
    # Each connection answers its first request, then starts answering the second and closes mid-response.
    async def handler(reader, writer, n):
        if await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()
        if await read_request(reader):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\ndata: {\"choices\"")
            await writer.drain()

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=1, requests=4), no_metrics())
    assert level.completed == 2 and level.errors == {"connection_closed": 2}
    assert level.reconnects == 0


def generation_tokens(url: str) -> float:
    line = next(ln for ln in httpx.get(f"{url}/metrics").text.splitlines() if ln.startswith("vllm:generation_tokens_total"))
    return float(line.rsplit(" ", 1)[1])


def abort_when(url: str, abort: threading.Event, tokens_done: float, fired: list[float]) -> threading.Thread:
    """Set `abort` 0.3 s after the server generated `tokens_done` tokens; the moment goes into `fired`."""

    def watch() -> None:
        deadline = time.monotonic() + 30
        while generation_tokens(url) < tokens_done and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        fired.append(time.monotonic())
        abort.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("hang_after, workers", [(0, 1), (4, 1), (4, 2)],
                         ids=["during-warm-up", "during-measured-phase", "two-client-processes"])
def test_abort_ends_the_level_within_a_second_and_counts_every_request(hang_after, workers):
    # The server accepts requests after the first `hang_after` but never produces a token for them, as a hung
    # engine does; only the abort can end the level before its 120 s timeouts.
    abort, fired = threading.Event(), []
    with uvicorn_fake(f"hang-after:{hang_after}") as url:
        abort_when(url, abort, hang_after * 40, fired)
        level, records = measure_level(url, W, LoadPattern(concurrency=4, requests=8, warmup=4),
                                       options(level_timeout_s=120.0, request_timeout_s=120.0, abort=abort,
                                               workers=workers))
        returned = time.monotonic()
    # The abort is polled every 0.1 s (about 1 s end to end on a quiet machine: closing connections, child
    # processes exiting, a /metrics scrape); the bound leaves room for a busy CI machine, against 120 s without it.
    assert returned - fired[0] < 3.0
    assert level.requests == 8 and len(records) == 8
    assert level.failed == 8 and level.errors == {"aborted": 8}


def test_abort_set_before_the_level_sends_nothing():
    abort = threading.Event()
    abort.set()
    with uvicorn_fake() as url:
        level, _ = measure_level(url, W, LoadPattern(concurrency=4, requests=8, warmup=4), options(abort=abort))
        assert generation_tokens(url) == 0
    assert level.errors == {"aborted": 8}


# --- a bug in the client surfaces as its exception, at once: never as failed requests or a level timeout --------
class ConsumerBug(Exception):
    pass


def raise_bug(*_args, **_kwargs):
    raise ConsumerBug("a bug in the client")


@pytest.mark.parametrize("callback", ["on_body", "on_end"])
@pytest.mark.parametrize("rate", [None, 50.0], ids=["closed-loop", "open-loop"])
def test_an_exception_in_a_callback_fails_the_level_with_it(monkeypatch, callback, rate):
    async def handler(reader, writer, n):
        while await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()

    monkeypatch.setattr(StreamingRequest, callback, raise_bug)
    with raw_server(handler) as (url, _):
        started = time.monotonic()
        with pytest.raises(ConsumerBug):
            measure_level(url, W, LoadPattern(concurrency=2, requests=6, rate=rate), no_metrics(level_timeout_s=60.0))
    assert time.monotonic() - started < 10


def test_an_exception_in_an_arrival_fails_the_open_loop_level(monkeypatch):
    async def handler(reader, writer, n):
        while await read_request(reader):
            writer.write(head_with_length(sse_body()))
            await writer.drain()

    # An arrival (OpenLoop's timer callback) sends through the driver: the bug is raised inside that callback.
    monkeypatch.setattr(Driver, "start_request", raise_bug)
    with raw_server(handler) as (url, _):
        with pytest.raises(ConsumerBug):
            measure_level(url, W, LoadPattern(concurrency=2, requests=6, rate=50.0), no_metrics(level_timeout_s=60.0))


def test_prompts_are_the_same_in_every_process():
    # hash() of a tuple holding None (an open loop's `rate` of a closed-loop level) differs between processes on
    # Python 3.11, so the seed must come from a stable hash; the prompts themselves are compared.
    code = ("import hashlib; from tuner.load.runner import build_requests, level_seed, LoadPattern;"
            "from tuner.load.http import Target; from tuner.load import Workload;"
            "w = Workload(model='m', input_len=8, output_len=8, vocab_size=2048);"
            "seed = level_seed(w, LoadPattern(concurrency=4, rate=None), 0);"
            "requests = build_requests(Target.parse('http://h:1'), w, 4, seed, None, {});"
            "print(hashlib.sha256(b''.join(requests)).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(n)}).stdout for n in (1, 2)}
    assert len(digests) == 1


# --- a dying server closes sockets at every point: each ends as failed requests, never as an exception -------------
def test_a_connection_closed_after_it_was_handed_to_a_request_fails_that_request_only():
    """The server closed the connection after the pool handed it out and before the request was written (the race
    that raised ConnectionNotUsable out of a client worker): the request ends like the close/send race."""
    from tuner.load.http import Connection

    class Closing:
        def is_closing(self) -> bool:
            return True

    async def attempt() -> list:
        ended: list = []
        conn = Connection()
        conn.transport = Closing()  # type: ignore[assignment]
        conn.requests_sent = 1  # it served one request before
        StreamingRequest(ended.append).start(conn, b"POST / HTTP/1.1\r\n\r\n", 5.0)
        assert ended == []  # ended on the next loop turn, never inside the caller
        await asyncio.sleep(0)
        return ended

    (record,) = asyncio.run(attempt())
    assert record.error == "closed_before_response" and not record.ok


def test_a_server_that_accepts_then_closes_every_new_connection_fails_requests_not_the_client():
    # The first two connections serve; every later one is closed at once, before a request is read: a server dying
    # while its socket still accepts. Keep-alive connections close after each answer (HTTP/1.0), so every request
    # after the first two needs a new connection.
    async def handler(reader, writer, n):
        if n > 2:
            return  # closed at once (raw_server closes the writer)
        if await read_request(reader):
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + sse_body())
            await writer.drain()

    with raw_server(handler) as (url, _):
        level, records = measure_level(url, W, LoadPattern(concurrency=2, requests=10), no_metrics())
    assert level.requests == 10 and len(records) == 10
    assert level.completed == 2 and level.failed == 8
    assert set(level.errors) <= {"closed_before_response", "connection_closed"}


def test_a_connection_reset_mid_stream_is_a_failed_request():
    import struct

    async def handler(reader, writer, n):
        if await read_request(reader):
            body = sse_body(tokens=3)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n"
                         % (len(body) + 100) + body[:40])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            writer.transport.abort()

    with raw_server(handler) as (url, _):
        level, _ = measure_level(url, W, LoadPattern(concurrency=2, requests=4), no_metrics())
    assert level.requests == 4 and level.failed == 4 and set(level.errors) == {"connection_closed"}


@pytest.mark.parametrize("point", ["at_connect", "after_request_read", "mid_response", "between_responses"])
def test_a_server_dying_at_each_point_ends_the_level_with_failures_counted(point):
    """One server process that dies (every socket closed, the port closed) at an exact point of the level."""
    async def handler(reader, writer, n):
        for _ in range(100):
            if point == "at_connect" and holder.get("dead"):
                return
            if not await read_request(reader):
                return
            holder["seen"] = holder.get("seen", 0) + 1
            if holder["seen"] == 3 and point in ("at_connect", "after_request_read"):
                holder["dead"] = True
                holder["server"].close()
                return
            body = sse_body()
            if holder["seen"] == 3 and point == "mid_response":
                writer.write(head_with_length(body)[:-30])
                await writer.drain()
                holder["server"].close()
                return
            writer.write(head_with_length(body))
            await writer.drain()
            if holder["seen"] == 3 and point == "between_responses":
                holder["server"].close()
                return

    with raw_server(handler) as (url, holder):
        level, records = measure_level(url, W, LoadPattern(concurrency=2, requests=8), no_metrics())
    assert level.requests == 8 and len(records) == 8
    assert level.completed + level.failed == 8 and level.failed >= 1
