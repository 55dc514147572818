"""Every exception tuner raises, in one tree. The CLI maps them to one-line messages and exit codes
(tuner.cli._app.user_errors); inside a trial, tuner.trial.run maps them to failure classes.

    TunerError
    ├── InputError              bad user input: file, key, what was expected (exit 2)
    │   ├── ModelConfigError    a model's config.json cannot be read or lacks what the memory estimate needs
    │   ├── ServerFlagError     a server flag's value the memory estimate cannot use
    │   ├── SetupError          the server the study points at cannot do what the study asks (no /tokenize, ...)
    │   ├── InvalidURL          a base URL the load client cannot use (tuner bench --url)
    │   └── SurfaceError        a recorded surface that cannot be read, or a config it does not hold (replay)
    ├── StorageError            the storage cannot be opened, or the study is not in it (exit 2)
    │   └── StudyNotFound
    ├── TrialNotFound           a trial selector matched no usable trial (exit 2)
    ├── ServerError             a trial's server, inside the trial: classified there, never reaches the CLI
    │   ├── ServerStartupFailed startup failed, with its failure class
    │   └── ServerGone          a call to the trial's own server was refused, reset, closed or timed out
    │       └── ServerUnreachable  the load generator could not connect at all
    ├── TokenizerUnavailable    neither a local tokenizer nor the server's /tokenize: text prompts cannot be exact
    ├── WorkerFailed            a load-client worker process died or did not get ready (a bug: tuner_error)
    ├── ConnectionNotUsable     `send` on a closed, closing or busy connection: a bug in the caller
    ├── ReportFigureError       the Markdown report's figures could not be drawn (no Chromium for kaleido)
    ├── InfrastructureError     trials keep failing for reasons that are not the configuration's (exit 1)
    └── TunerBug                tuner's own code raised inside a trial (exit 1, traceback kept)

One private exception stays beside its only use: the HTTP parser's stop signal (tuner.load.http), which never
leaves that module.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tuner.contracts.outcomes import FailureClass


class TunerError(Exception):
    """Base class of every error tuner raises on purpose."""


class InputError(TunerError):
    """Bad user input: a file, a key in it, and what was expected. Exit code 2."""

    def __init__(self, source: str, key: str, expected: str) -> None:
        self.source = source
        self.key = key
        self.expected = expected
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {expected}")


class ModelConfigError(InputError):
    """A model's config.json cannot be read, or lacks what the memory estimate needs."""


class ServerFlagError(InputError):
    """A server flag's value cannot be used by the memory estimate. `key` is the flag; the caller that knows which
    file set it (the study) re-raises with that file as the source."""

    def __init__(self, flag: str, expected: str) -> None:
        super().__init__("server config", flag, expected)


class SetupError(InputError):
    """The study's server cannot serve what the study asks of it, e.g. exact-length text prompts from a server
    without vLLM's /tokenize and /detokenize. Found at the first launch at the latest; the trial is re-queued."""


class InvalidURL(InputError):
    """A base URL the client cannot use (not http/https, no host)."""

    def __init__(self, url: str) -> None:
        super().__init__("URL", url, "an http:// or https:// base URL, e.g. http://127.0.0.1:8000")


class SurfaceError(InputError):
    """A surface file that cannot be read, or a config it does not hold."""


class StorageError(TunerError):
    """The study storage cannot be opened or the study is not in it. Exit code 2."""


class StudyNotFound(StorageError):
    pass


class TrialNotFound(TunerError):
    """A trial selector matched no usable trial. Exit code 2."""


class ServerError(TunerError):
    """A vLLM server could not be started or stopped answering."""


class ServerStartupFailed(ServerError):
    def __init__(self, failure_class: FailureClass, detail: str) -> None:
        self.failure_class = failure_class
        self.detail = detail
        super().__init__(f"{failure_class}: {detail}")


class ServerGone(ServerError):
    """The trial's own server did not answer a call (tuner.server.client): `kind` is refused, reset, closed or
    timeout. The trial decides what it means from the process and its log (died_under_load, unresponsive)."""

    def __init__(self, call: str, kind: str, detail: str) -> None:
        self.call = call
        self.kind = kind
        self.detail = detail
        super().__init__(f"{call}: {kind} ({detail})")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:  # crosses process pipes (the client workers)
        return type(self), (self.call, self.kind, self.detail)


class ServerUnreachable(ServerGone):
    """Nothing answered at the server's address when the load generator connected (the measured requests)."""

    def __init__(self, detail: str, kind: str = "refused", call: str = "connect") -> None:
        super().__init__(call, kind, detail)

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (self.detail, self.kind, self.call)


class TokenizerUnavailable(TunerError):
    """Neither a usable local tokenizer nor the server's /tokenize endpoint."""


class WorkerFailed(TunerError):
    """A client worker process died or did not get ready."""


class ConnectionNotUsable(TunerError):
    """`send` on a connection that is closed, closing or busy: a bug in the caller, never a server fault."""


class ReportFigureError(TunerError):
    """The Markdown report's figures could not be drawn (no Chromium for kaleido)."""


class InfrastructureError(TunerError):
    """Trials keep failing for reasons that are not the configuration's (devices busy, workers lost)."""


class TunerBug(TunerError):
    """tuner's own code raised inside a trial: a bug to report, with the traceback kept. Exit code 1."""

    def __init__(self, trial: int, detail: str, traceback: str = "", traceback_path: object = None) -> None:
        self.trial = trial
        self.detail = detail
        self.traceback = traceback
        self.traceback_path = traceback_path
        where = f"; traceback in {traceback_path}" if traceback_path else ""
        super().__init__(
            f"trial {trial} hit a bug in tuner, not in the config or the cluster: {detail}{where}. Please report it"
            " with that file. Running trials were stopped and re-queued; run the same command to continue once fixed")
