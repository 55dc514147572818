"""A server killed by a signal before it served a request hit a sharp edge of its first shapes (a kernel picked or
compiled at first use; vLLM 0.32 CPU's SIGILL on a one-token first prompt): not yet the config's fault. The same
parameters are relaunched once, unpenalized; the relaunch is judged with the first launch as evidence, and the same
death on configs in a row is the environment, not a config."""
from __future__ import annotations

from tuner.contracts.outcomes import FailureClass
from tuner.contracts.results import TrialResult

# SIGKILL is not among them: the kernel's OOM killer sends it, a memory cause.
FIRST_SHAPE_SIGNALS = frozenset({"SIGILL", "SIGSEGV", "SIGBUS", "SIGABRT"})
SIGNAL_GIVE_UP_LIMIT = 2  # configs in a row whose both launches a signal killed before serving: the environment


def killed_before_serving(result: TrialResult) -> bool:
    """A signal of a first shape's sharp edge ended the server before any request was answered, and its log showed
    no memory or capacity cause (those classify as oom / kv_capacity, not crash)."""
    return (result.failure_class == FailureClass.CRASH and result.killed_by in FIRST_SHAPE_SIGNALS
            and not result.levels and not result.probes)


class FirstShapeDeaths:
    def __init__(self) -> None:
        self.in_a_row = 0  # configs in a row whose relaunch died the same way

    def judge(self, first: TrialResult, relaunch: TrialResult) -> TrialResult:
        """The relaunch's result with the first launch as evidence: a second death the same way is the config's
        (`crash`, both details); a relaunch that served carries the first death against its survival. Either way
        both launches' slice time is counted."""
        update: dict[str, object] = {"wall_s": relaunch.wall_s + first.wall_s, "relaunched_after": first.failure_detail}
        if killed_before_serving(relaunch) and relaunch.killed_by == first.killed_by:
            update["failure_detail"] = (f"{relaunch.failure_detail}; twice: its first launch died the same way"
                                        f" ({first.failure_detail[:200]})")
            self.in_a_row += 1
        elif relaunch.failure_class is None or relaunch.levels:
            self.in_a_row = 0
        return relaunch.model_copy(update=update)

    @property
    def environment_broken(self) -> bool:
        return self.in_a_row >= SIGNAL_GIVE_UP_LIMIT
