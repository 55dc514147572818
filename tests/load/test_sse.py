"""SSE parsing and per-request measurement from raw bytes, without a network."""
from __future__ import annotations

import json

from tuner.load.http import Connection
from tuner.load.request import StreamingRequest
from tuner.load.sse import DONE, SSEParser


def ev(obj) -> bytes:
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


CONTENT = {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": " a", "finish_reason": None}]}
USAGE = {"id": "x", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


def test_events_split_across_chunks_at_every_byte():
    stream = ev(CONTENT) + ev(USAGE) + ev(b"[DONE]")
    parser = SSEParser()
    out = []
    for i in range(len(stream)):
        out += parser.feed(stream[i:i + 1])
    assert [json.loads(p) for p in out[:2]] == [CONTENT, USAGE] and out[2] == DONE
    assert parser.pending == b""


def test_multi_line_event_is_joined_and_comments_and_crlf_are_handled():
    parser = SSEParser()
    out = parser.feed(b': keep-alive\r\n\r\nevent: message\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata:[DONE]\n\n')
    assert out == [b'{"a":\n1}', DONE]
    assert json.loads(out[0]) == {"a": 1}


def feed_request(chunks: list[tuple[float, bytes]], status: int = 200) -> object:
    """Drive a StreamingRequest as the connection would: status at t=0, body chunks at given times."""
    done = []
    req = StreamingRequest(done.append)
    req.record.start = 0.0
    req.on_status(status, 0.0)
    for t, data in chunks:
        req.on_body(data, t)
    req.on_end(chunks[-1][0] if chunks else 0.0, None)
    return done[0]


def test_ttft_itl_e2el_and_usage_only_chunk():
    record = feed_request([(0.150, ev(CONTENT)), (0.160, ev(CONTENT)), (0.175, ev(CONTENT) + ev(USAGE)),
                           (0.176, ev(b"[DONE]"))])
    assert record.ok and record.error is None
    assert abs(record.ttft - 0.150) < 1e-12
    assert [round(x, 6) for x in record.itl] == [0.010, 0.015]
    assert abs(record.e2el - 0.175) < 1e-12  # the usage-only chunk is not content: E2EL ends at the last token
    assert record.output_tokens == 3 and record.prompt_tokens == 7 and record.chunks == 3
    assert abs(record.tpot - (0.175 - 0.150) / 2) < 1e-12


def test_events_in_one_read_share_its_timestamp():
    record = feed_request([(0.1, ev(CONTENT)), (0.2, ev(CONTENT) * 3 + ev(USAGE) + ev(b"[DONE]"))])
    assert record.ok and [round(x, 6) for x in record.itl] == [0.1, 0.0, 0.0]


def test_pretty_printed_json_and_chat_deltas_are_content():
    chat = b'{"choices": [ {"index": 0, "delta": {"content": "hi"}} ]}'
    empty = b'{"choices": [ ], "usage": {"completion_tokens": 1, "prompt_tokens": 1}}'
    record = feed_request([(0.05, ev(chat)), (0.06, ev(empty) + ev(b"[DONE]"))])
    assert record.ok and record.ttft == 0.05 and record.chunks == 1 and record.output_tokens == 1


def test_error_event_mid_stream_fails_the_request():
    err = {"error": {"message": "engine died", "type": "InternalError", "code": 500}}
    record = feed_request([(0.1, ev(CONTENT)), (0.11, ev(CONTENT)), (0.12, ev(err) + ev(b"[DONE]"))])
    assert not record.ok and record.error == "error_event" and "engine died" in record.error_detail


def test_stream_without_usage_and_non_200_fail():
    assert feed_request([(0.1, ev(CONTENT) + ev(b"[DONE]"))]).error == "no_usage"
    assert feed_request([(0.1, ev(USAGE) + ev(b"[DONE]"))]).error == "empty_stream"
    record = feed_request([(0.1, b'{"error": "overloaded"}')], status=503)
    assert record.error == "http_503" and "overloaded" in record.error_detail and not record.ok


def test_malformed_event_fails():
    assert feed_request([(0.1, ev(CONTENT) + ev(b"{not json") + ev(USAGE))]).error == "malformed_event"


class _Sink:
    def __init__(self):
        self.status, self.body, self.ended = None, b"", None

    def on_status(self, status, now):
        self.status = status

    def on_body(self, data, now):
        self.body += data

    def on_end(self, now, error):
        self.ended = error or "ok"


class _Transport:
    def write(self, data):
        pass

    def is_closing(self):
        return False

    def close(self):
        pass


def test_chunked_http_response_decoded_byte_by_byte():
    import asyncio

    async def run():
        conn = Connection()
        conn.connection_made(_Transport())
        sink = _Sink()
        conn.send(b"POST / HTTP/1.1\r\n\r\n", sink)
        payload = ev(CONTENT) + ev(USAGE)
        raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (10, payload[:10])
               + b"%x;ext=1\r\n%s\r\n" % (len(payload) - 10, payload[10:]) + b"0\r\n\r\n")
        for i in range(len(raw)):
            conn.data_received(raw[i:i + 1])
        return conn, sink, payload

    conn, sink, payload = asyncio.run(run())
    assert sink.status == 200 and sink.body == payload and sink.ended == "ok" and conn.usable
