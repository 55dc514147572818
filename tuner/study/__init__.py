"""The study: Optuna proposes flag combinations, Ray workers measure them, the driver records and scores them.

    _bookkeeping  the Optuna side: create or load, propose the next config (with the pre-launch check), record
                  and tell each trial's result, keep its artifacts
    _executor     the Ray side: one task per attempt on a free slice; Ray's failures mapped to failure classes
    _lease        which driver holds a RUNNING trial: heartbeats it renews, expiry after a grace (several drivers
                  on one study; a killed driver's trials re-queued)
    _runner       the loop between them: budget, infra retries, stop on a tuner bug, progress

The driver is the only writer to storage.
"""
from tuner.study._bookkeeping import create_or_load, recover_interrupted, stored_spec
from tuner.study._executor import WORKER_ENV, outcome_of_ray_error, ray_options
from tuner.study._runner import Snapshot, StudyRunner

__all__ = ["Snapshot", "StudyRunner", "WORKER_ENV", "create_or_load", "outcome_of_ray_error", "ray_options",
           "recover_interrupted", "stored_spec"]
