"""Every call tuner makes to a trial's own server, except the measured requests, goes through `server_client()`.

Tokenize, detokenize, /metrics scrapes, /health, the hung-engine probe, model listing: when the server does not
answer one of them (a connection refused, reset or closed, a timeout), that is the server's outcome, not a bug in
tuner. The one rule lives here: the client's transport turns every such failure into `ServerGone`, which the
trial (tuner.trial.run.run_trial) classifies from the server's exit code and log like any other death
(`died_under_load`, or `unresponsive` while the process lives). Callers that have a meaningful fallback (the
health watch counts a refusal, a scrape records `scraped: false`) catch `ServerGone`; nobody else does, so an
exception that is not about the server answering still surfaces as `tuner_error`.

The measured requests go through the load generator's own client (tuner.load.http), which counts every failure
as a failed request instead of raising.

`transport` is the seam for tests: an `httpx.MockTransport` (or any httpx transport) stands in for the network,
and its transport errors are mapped exactly as real ones are.
"""
from __future__ import annotations

from collections.abc import Iterator

import httpx

from tuner.errors import ServerGone

# What a transport error says about the server, in the words of ServerGone.kind.
_KINDS: tuple[tuple[type[httpx.TransportError], str], ...] = (
    (httpx.TimeoutException, "timeout"),
    (httpx.ConnectError, "refused"),
    (httpx.RemoteProtocolError, "closed"),
    (httpx.ReadError, "reset"),
    (httpx.WriteError, "reset"),
)


def _gone(request: httpx.Request, exc: httpx.TransportError) -> ServerGone:
    kind = next((name for cls, name in _KINDS if isinstance(exc, cls)), "closed")
    return ServerGone(f"{request.method} {request.url.path}", kind, f"{type(exc).__name__}: {exc}")


class _GuardedStream(httpx.SyncByteStream):
    """A response body whose read errors (a reset mid-body) are mapped like the request's own."""

    def __init__(self, inner: httpx.SyncByteStream, request: httpx.Request) -> None:
        self._inner = inner
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx.TransportError as exc:
            raise _gone(self._request, exc) from exc

    def close(self) -> None:
        self._inner.close()


class ServerTransport(httpx.BaseTransport):
    """Wraps a transport (the real one by default) so that the server not answering raises ServerGone."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            raise _gone(request, exc) from exc
        stream = response.stream
        if isinstance(stream, httpx.SyncByteStream):
            response.stream = _GuardedStream(stream, request)
        return response

    def close(self) -> None:
        self._inner.close()


def server_client(timeout_s: float, headers: dict[str, str] | None = None,
                  transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """An httpx client for a trial's own server (see the module docstring)."""
    return httpx.Client(timeout=timeout_s, headers=headers or {}, transport=ServerTransport(transport))


def server_version(base_url: str, timeout_s: float = 10.0) -> str:
    """The version the server reports at /version (vLLM's own endpoint); "" when it has none (not vLLM, or an
    older build). A server that does not answer raises ServerGone, like every other call here."""
    with server_client(timeout_s) as client:
        response = client.get(f"{base_url}/version")
    if response.status_code != 200:
        return ""
    try:
        return str(response.json().get("version", ""))
    except ValueError:
        return ""
