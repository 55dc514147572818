"""How a trial ended, as string enums: stored as their values, compared as members.

A trial's *failure class* says why its server stopped serving (or never started); its *outcome* is what scoring
made of the whole launch: a failure class when the server never served a measured level, else one of Outcome.
"""
from __future__ import annotations

from enum import StrEnum

from tuner.errors import ServerStartupFailed, TokenizerUnavailable


class FailureClass(StrEnum):
    OOM = "oom"
    KV_CAPACITY = "kv_capacity"
    INVALID_CONFIG = "invalid_config"
    CRASH = "crash"
    STARTUP_TIMEOUT = "startup_timeout"
    DIED_UNDER_LOAD = "died_under_load"
    UNRESPONSIVE = "unresponsive"
    INFRA = "infra"
    TUNER_ERROR = "tuner_error"  # an exception in tuner's own code: a bug to report, never the config's fault
    SETUP_ERROR = "setup_error"  # the user's setup cannot serve the study (no tokenizer endpoints): exit 2

    @property
    def is_config_failure(self) -> bool:
        """The configuration is to blame: penalize the trial so the sampler learns the boundary."""
        return disposition_of(self) == Disposition.TELL


class Disposition(StrEnum):
    """What the study loop does with a launch that came back (tuner.study._runner)."""

    TELL = "tell"  # scored and told to Optuna: measured, or penalized for the config's own failure
    RETRY = "retry"  # not the config's fault: the same parameters again (a streak of them stops the study)
    STOP_SETUP = "stop_setup"  # the user's setup cannot serve the study: stop with how to fix it (exit 2)
    STOP_BUG = "stop_bug"  # tuner's own code failed: stop, keep the config for the next run, never penalize


# Every failure class not listed is the config's: told, penalized.
_DISPOSITIONS: dict[FailureClass, Disposition] = {
    FailureClass.INFRA: Disposition.RETRY,
    FailureClass.SETUP_ERROR: Disposition.STOP_SETUP,
    FailureClass.TUNER_ERROR: Disposition.STOP_BUG,
}


def disposition_of(failure: FailureClass | None) -> Disposition:
    """None (the server served) is told like a config failure: scoring decides what it was."""
    return Disposition.TELL if failure is None else _DISPOSITIONS.get(failure, Disposition.TELL)


class Outcome(StrEnum):
    """What scoring made of a launch that was not a failure class (tuner.scoring.score)."""

    MEASURED = "measured"  # an operating point met every SLO: feasible
    SLO_MISS = "slo_miss"  # reliable levels, none met every SLO
    UNRELIABLE = "unreliable"  # every measured level was flagged
    NO_MEASUREMENT = "no_measurement"  # no level completed a request, and no failure class says why
    WRONG_OUTPUT = "wrong_output"  # answers differ from the reference's beyond its own noise (tuner.scoring.quality)
    PENALIZED = "penalized"  # storages from before scores were stored: infeasible, reason unknown


def failure_of_exception(exc: BaseException) -> tuple[FailureClass, str]:
    """The failure class and one-line detail of an exception that ended a launch, wherever it was caught (inside the
    trial, or by the executor when one escaped it). A server that went silent is judged inside the trial, from the
    process and its log (tuner.trial.run), not here: the exception alone cannot say whether it died or hung."""
    if isinstance(exc, ServerStartupFailed):
        return exc.failure_class, exc.detail
    if isinstance(exc, TokenizerUnavailable):  # the user's setup (no tokenizer endpoints): never the config, never a bug
        return FailureClass.SETUP_ERROR, str(exc)
    # Anything else is tuner's own code: a bug to report, never the config's or the cluster's fault.
    return FailureClass.TUNER_ERROR, f"{type(exc).__name__}: {exc}"
