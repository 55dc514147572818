"""One trial on one slice: launch the server, meet it with the planned load, always tear it down.
    run    ServerConfig + SweepPlan -> TrialOutcome (runs inside a Ray task; never raises for the trial's events)
    watch  the server watched while levels run, and judged after each (exited, unresponsive, hung, rejecting)
"""
from tuner.trial.run import Observer, Seam, run_trial

__all__ = ["Observer", "Seam", "run_trial"]
