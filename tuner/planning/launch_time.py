"""A launch's slice time before one is measured: the hardware catalogue's startup estimate plus the sweep's upper
bound. The study's running cost (tuner.study.cost) uses it until a launch is measured; `study plan` prints it."""
from __future__ import annotations

from tuner.contracts.hardware import SLICES
from tuner.inputs.spec import StudySpec
from tuner.trial.sweep_plan import planned_levels


def estimated_launch_s(spec: StudySpec) -> tuple[float, str]:
    """A launch's slice time before one is measured, and how it was reckoned: the hardware catalogue's startup
    estimate plus the sweep's upper bound (every planned level at its level_timeout_s). An estimate, never a
    measurement."""
    if spec.hardware is not None:
        startup, where = SLICES[spec.hardware.name].chip.startup_estimate_s, spec.hardware.name
    elif set(spec.resources) <= {"CPU"}:
        startup, where = SLICES["cpu"].chip.startup_estimate_s, "cpu"
    else:
        startup, where = 600.0, "no hardware named"
    levels = len(planned_levels(spec.load)) + (1 if spec.load.worst_case else 0)
    sweep = levels * spec.load.level_timeout_s
    return startup + sweep, (f"estimate: startup {startup / 60:g} min ({where}, catalogue) + sweep at most"
                             f" {sweep / 60:g} min ({levels} levels x {spec.load.level_timeout_s:g} s)")
