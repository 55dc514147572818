"""The study as a library: check a study file, run (or resume) it, open a stored one. `tuner study start` is
`prepare` then `run`, with printing around them; a notebook or another service calls the same two.

    prepared = tuner.study.prepare(Path("studies/quickstart-cpu.yaml"))    # every input check; nothing written yet
    optuna_study = tuner.study.run(prepared)                                # Ray workers; resumes a stored study
    stored = tuner.study.open_study("quickstart-cpu", "sqlite:///tuner.db")

`run` takes the executor that runs the attempts (tuner.study._executor.Executor): by default Ray (or, for a study
with `replay`, the recorded surface); a test hands in a LocalExecutor(tuner.trial.launch) or its own.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from tuner.inputs.spec import Study, load_study
from tuner.planning.prelaunch import check_server_inputs, preflight
from tuner.planning.traffic import Traffic, resolve_traffic
from tuner.study._bookkeeping import create_or_load
from tuner.study._executor import Executor, Task
from tuner.study._progress import Snapshot
from tuner.study._runner import Attempt, StudyRunner
from tuner.study._sampler import SamplerChoice, choose_sampler
from tuner.study.replay import Surface
from tuner.study.storage import check_storage_url, load_existing_study, open_storage
from tuner.study.warm_start import WarmTrial, warm_trials
from tuner.trial import launch


@dataclass(frozen=True)
class PreparedStudy:
    """A study file checked and resolved, before anything is written to storage: a bad model config, dataset,
    surface or warm-start source has already raised its InputError."""

    study: Study
    storage_url: str
    name: str  # the study's name in storage
    trials: int  # the search budget of this run
    traffic: Traffic
    sampler: SamplerChoice
    surface: Surface | None = None  # replay: trials answered from this recorded surface, no server started
    warm: list[WarmTrial] = field(default_factory=list)  # another study's trials seeding the sampler
    notes: list[str] = field(default_factory=list)  # for the user: what the flag check found or why it did not run


def prepare(study_file: Path, *, trials: int | None = None, storage: str | None = None,
            name: str | None = None) -> PreparedStudy:
    """Load and check everything a run needs. `trials`, `storage` and `name` override the study file's."""
    study = load_study(study_file)
    url = storage or study.spec.storage
    check_storage_url(url, "--storage" if storage else str(study_file), "" if storage else "storage")
    preflight(study)  # input errors before anything is written to storage
    traffic = resolve_traffic(study)  # a bad dataset file, too
    surface = Surface.load(study.spec.replay.surface) if study.spec.replay else None  # and a bad surface
    warm = warm_trials(study, url)  # and a warm-start study that cannot be read
    notes = check_server_inputs(study)  # and a flag the installed server does not know
    return PreparedStudy(study=study, storage_url=url, name=name or study.spec.name,
                         trials=trials or study.spec.trials, traffic=traffic, sampler=choose_sampler(study),
                         surface=surface, warm=warm, notes=notes)


def run(prepared: PreparedStudy, *, on_progress: Callable[[Snapshot], None] | None = None,
        executor: Executor[Attempt] | None = None, ray_address: str | None = None,
        task: Task = launch,
        on_finish: Sequence[Callable[[optuna.Study], None]] = ()) -> optuna.Study:
    """Create (or resume) the study and run it to its budget, then its confirmation runs, then each `on_finish`
    callback (the CLI publishes the dashboard's notes and plots: tuner.report.publish_to_dashboard). Returns the
    study. A KeyboardInterrupt stops the running trials and re-queues them: the same call continues."""
    optuna_study = create_or_load(prepared.study, open_storage(prepared.storage_url), prepared.name, prepared.warm,
                                  prepared.sampler)
    StudyRunner(prepared.study, optuna_study, prepared.trials, on_progress=on_progress or (lambda s: None),
                ray_address=ray_address, traffic=prepared.traffic, surface=prepared.surface, task=task,
                executor=executor).run()
    for callback in on_finish:
        callback(optuna_study)
    return optuna_study


def open_study(name: str, storage: str) -> optuna.Study:
    """A stored study, for reading (tuner.study.records, tuner.report); StudyNotFound names the ones there are."""
    return load_existing_study(storage, name)
