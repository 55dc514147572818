"""One trial on one slice: launch the server, meet it with the planned load, always tear it down.
    sweep_plan  SweepPlan (driver -> trial), TrialOutcome (trial -> driver), the order of a plan's levels
    run         LaunchRequest -> TrialOutcome (launch: the worker's entry, a Ray task; never raises for the trial's
                events); run_trial takes the same by argument, for tests and benchmarks
    probes      the quality probes, answered before the sweep
    watch       the server watched while levels run, and judged after each (exited, unresponsive, hung, rejecting)
    clock       where a launch's time went, phase by phase
    matrix      one launch measured over a concurrency x input x output grid (tuner study matrix)
"""
from tuner.trial.run import Observer, Seam, launch, run_trial
from tuner.trial.sweep_plan import LaunchRequest

__all__ = ["LaunchRequest", "Observer", "Seam", "launch", "run_trial"]
