"""The study: Optuna proposes flag combinations, workers measure them, the driver records and scores them.

    api           the library entry point: prepare (check a study file), run (start or resume), open_study
    _runner       the loop: launch while the stop rules allow, hand what comes back to its disposition, confirm
    _dispositions what came back from an attempt: told, retried, or the study stopped (setup error, tuner's bug);
                  the relaunches before any verdict (killed before serving, the quality reference)
    _stop_rules   when the search stops launching (trial count, duplicates, budget, patience, infra streak), and why
    _first_shapes a server a signal killed before it served: relaunched once, judged with both launches
    _drivers      other drivers of the same study: their running trials, theirs re-queued when their lease expires
    _progress     the snapshot the progress display shows, kept current
    _bookkeeping  the Optuna side: create or load, propose the next config (with the pre-launch check), record
                  and tell each trial's result, keep its artifacts
    _executor     where attempts run: Ray tasks on free slices (Ray's failures mapped to failure classes), or
                  threads of this process (LocalExecutor)
    _lease        which driver holds a RUNNING trial: heartbeats it renews, expiry after a grace (several drivers
                  on one study; a killed driver's trials re-queued)
    _sampler      which Optuna sampler (auto: GP, or TPE with a constant liar for parallel trials)
    records       what a study stores per trial and per study, and the only code that reads or writes it
    front         the study's front (confirmed medians, else single launches within the noise): pareto, export
    cost          what the study spent in slice time, by phase, and what a grid would have cost
    _quality      the quality reference: the first launch's answers, which later launches are held to
    storage       Optuna storage URLs (SQLite, PostgreSQL)
    replay        a recorded response surface answering trials instead of servers (the search benchmark)
    warm_start    finished trials of another study seeding this one's sampler
    _optuna       every private Optuna name tuner uses, each with why no public API serves
    _ray_guard    Ray's agents end with a killed driver

The driver is the only writer to storage. Importing a submodule (the records, say) does not import Ray or the
loop: the names below are loaded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PreparedStudy": "tuner.study.api", "prepare": "tuner.study.api", "run": "tuner.study.api",
    "open_study": "tuner.study.api", "Executor": "tuner.study._executor", "LocalExecutor": "tuner.study._executor",
    "create_or_load": "tuner.study._bookkeeping", "recover_interrupted": "tuner.study._bookkeeping",
    "stored_spec": "tuner.study._bookkeeping", "WORKER_ENV": "tuner.study._executor",
    "outcome_of_ray_error": "tuner.study._executor", "ray_options": "tuner.study._executor",
    "Snapshot": "tuner.study._progress", "StudyRunner": "tuner.study._runner",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuner.study' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
