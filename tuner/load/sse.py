"""Incremental Server-Sent Events parser over raw bytes.

Bytes arrive in arbitrary chunks; an event ends at a blank line. Only `data:` fields matter for OpenAI-style
streams; several `data:` lines in one event are joined with a newline, as the SSE specification says.
"""
from __future__ import annotations

DONE = b"[DONE]"


class SSEParser:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Return the data payloads of every event completed by this chunk."""
        buffer = self._buffer + chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # may be the first half of a CRLF split across reads: decide next time
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *events, rest = buffer.split(b"\n\n")
        self._buffer = rest + held
        payloads = []
        for event in events:
            if event[:6] == b"data: " and b"\n" not in event:  # nearly every event of a token stream
                payloads.append(event[6:])
                continue
            data = _data_of(event)
            if data is not None:
                payloads.append(data)
        return payloads

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (a truncated stream leaves some)."""
        return self._buffer


def _data_of(event: bytes) -> bytes | None:
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None  # comments (": keep-alive"), "event:" or "id:" only
    parts = [line[5:][1:] if line[5:6] == b" " else line[5:] for line in lines]
    return b"\n".join(parts)
