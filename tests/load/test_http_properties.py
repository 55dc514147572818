"""Property tests of the response path: whatever way the bytes of a response are split across socket reads, and
however it is framed (Content-Length, chunked, until close; keep-alive or not; several responses on one
connection), the request sees the same events, tokens and usage. JSON strings may hold Unicode line separators
(U+2028, U+0085: vLLM's random-weight models emit them): only \\n and \\r end SSE lines."""
from __future__ import annotations

import asyncio
import itertools
import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tuner.load.http import Connection
from tuner.load.request import StreamingRequest
from tuner.load.sse import SSEParser

TEXT = st.text(alphabet=st.sampled_from([*"ab ,:{}\"\\", "\u2028", "\u2029", "\u0085", "é", "😀"]), max_size=8)


def sse_stream(texts: list[str], prompt_tokens: int = 5) -> bytes:
    events = [{"choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in texts]
    usage = {"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(texts)}}
    # ensure_ascii=False: the separators travel as raw UTF-8 bytes, as a server may send them
    body = b"".join(b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in [*events, usage])
    return body + b"data: [DONE]\n\n"


def frame(body: bytes, framing: str, keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    if not keep_alive:
        head += b"Connection: close\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    if framing == "chunked":
        parts, i = [], 0
        while i < len(body):
            piece = body[i:i + 7]
            parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            i += 7
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(parts) + b"0\r\n\r\n"
    return head + b"\r\n" + body  # until close


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


class FakeTransport:
    def __init__(self) -> None:
        self.closing = False
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True


def run_responses(raw: bytes, cuts: list[int], requests: int, close_at_end: bool) -> tuple[list, Connection]:
    """Send `requests` requests one after another on one Connection, feeding `raw` in the given pieces."""

    async def drive() -> tuple[list, Connection]:
        conn = Connection()
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        records: list = []
        active: list[StreamingRequest] = []

        def next_request() -> None:
            if len(records) < requests and conn.usable:
                request = StreamingRequest(on_done)
                active.append(request)
                request.start(conn, b"POST / HTTP/1.1\r\n\r\n", 60.0)

        def on_done(record) -> None:
            records.append(record)
            next_request()

        next_request()
        for piece in split(raw, cuts):
            conn.data_received(piece)
        if close_at_end:
            conn.connection_lost(None)
        for request in active:  # no request timer may outlive the test's loop
            if request.timer is not None:
                request.timer.cancel()
        return records, conn

    return asyncio.run(drive())


@settings(max_examples=150, deadline=None)
@example(texts=["a\u2028b", "\u0085", "\u2029c"], framing="chunked", keep_alive=True, cuts=[40, 41, 42],
         responses=2)
@given(texts=st.lists(TEXT.filter(bool), min_size=1, max_size=6), framing=st.sampled_from(["length", "chunked", "close"]),
       keep_alive=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
       responses=st.integers(min_value=1, max_value=3))
def test_any_split_and_framing_gives_the_same_record(texts, framing, keep_alive, cuts, responses):
    until_close = framing == "close"
    if until_close or not keep_alive:
        responses = 1  # the server ends the connection with the response
    raw = frame(sse_stream(texts), framing, keep_alive) * responses
    records, conn = run_responses(raw, cuts, responses, close_at_end=until_close)
    assert len(records) == responses
    for record in records:
        assert record.ok, record.error
        assert record.chunks == len(texts) and record.output_tokens == len(texts) and record.prompt_tokens == 5
        assert len(record.itl) == len(texts) - 1
    assert conn.usable == (keep_alive and not until_close)


@settings(max_examples=150, deadline=None)
@example(texts=["x\u2028y\u2029z\u0085"], cuts=[9, 10, 11, 12], crlf=False)  # cuts inside the separators' bytes
@given(texts=st.lists(TEXT, min_size=1, max_size=6), cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=10),
       crlf=st.booleans())
def test_sse_events_survive_any_split_and_unicode_separators(texts, cuts, crlf):
    payloads = [json.dumps({"t": t}, ensure_ascii=False).encode() for t in texts]
    stream = b"".join(b"data: " + p + b"\n\n" for p in payloads)
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    parser = SSEParser()
    out = []
    for piece in split(stream, cuts):
        out += parser.feed(piece)
    assert [json.loads(p)["t"] for p in out] == texts
    assert parser.pending == b""


def test_a_truncated_chunked_body_is_a_failure():
    raw = frame(sse_stream(["a", "b"]), "chunked", True)
    records, _ = run_responses(raw[:-20], [7, 30], 1, close_at_end=True)
    assert len(records) == 1 and not records[0].ok and records[0].error == "connection_closed"


def test_unicode_line_separators_do_not_end_an_sse_line():
    text = "x\u2028y\u0085z\u2029"
    payload = json.dumps({"t": text}, ensure_ascii=False).encode()
    assert len(payload.decode().splitlines()) == 4  # what a str-based line splitter would make of it
    (out,) = SSEParser().feed(b"data: " + payload + b"\n\n")
    assert json.loads(out)["t"] == text
