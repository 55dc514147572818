"""Warm start: seed a study's sampler with the finished trials of another study over the same space.

A study on a new slice type (v6e-8 after v6e-4, H100 after A100) need not start blind: where the configs were good
and where they failed says much about where they will be good again. The other study's measured trials are added
to this one as finished trials, so every sampler reads them. They are marked `warm_start_from` ("STUDY#N"), carry
their source's values, constraints and outcome, and are not launches of this study: they never count against its
budget, never answer a duplicate proposal, never teach the failure rules (KV memory differs between slices) and
never join its front. Every config is measured on this study's hardware before it can be exported.
"""
from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import InputError, StudyNotFound
from tuner.inputs.spec import Study
from tuner.study.records import StudyRecord, TrialRecord, warm_start_attrs, warm_start_source


@dataclass(frozen=True)
class WarmTrial:
    source: str  # "STUDY#N"
    trial: FrozenTrial  # ready for optuna.Study.add_trial


def warm_trials(study: Study, default_storage: str) -> list[WarmTrial]:
    """The other study's measured trials, made this study's: InputError (naming the study file's warm_start key)
    when that study cannot be read or measures other objectives. Nothing is written."""
    spec = study.spec.warm_start
    if spec is None:
        return []
    from tuner.study.storage import check_storage_url, load_existing_study

    url = spec.storage or default_storage
    if spec.storage:
        check_storage_url(url, str(study.path), "warm_start.storage")
    try:
        source = load_existing_study(url, spec.study)
    except StudyNotFound as exc:
        raise InputError(str(study.path), "warm_start.study", str(exc)) from None
    theirs, ours = StudyRecord.of(source).spec.goals().objectives, study.spec.goals().objectives
    if tuple(theirs) != tuple(ours):
        raise InputError(str(study.path), "warm_start.study", f"{spec.study!r} optimizes {list(theirs)}, this study"
                         f" {list(ours)}: warm start needs the same objectives in the same order")
    return [WarmTrial(f"{spec.study}#{t.number}", _as_ours(study, spec.study, t)) for t in _usable(study, source)]


def add_warm_trials(optuna_study: optuna.Study, trials: list[WarmTrial]) -> int:
    """Add the trials not added before (a resumed study is not seeded twice). Returns how many were added."""
    have = {warm_start_source(t) for t in optuna_study.get_trials(deepcopy=False)}
    new = [w.trial for w in trials if w.source not in have]
    optuna_study.add_trials(new)
    return len(new)


def _usable(study: Study, source: optuna.Study) -> list[FrozenTrial]:
    """Finished trials the source study launched itself, whose parameters are exactly a config of this space."""
    usable = []
    for t in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(t)
        if not (record.search_launch and record.launched) or t.values is None:
            continue
        if _fits(study, t.params):
            usable.append(t)
    return usable


def _fits(study: Study, params: dict) -> bool:
    space = study.space
    if any(name not in space.parameters or not space.parameters[name].admits(v) for name, v in params.items()):
        return False
    complete = all(name in params for name in space.sampling_order() if space.parameters[name].condition_holds(params))
    return complete and space.active(params) == params and not space.violations(params)


def _as_ours(study: Study, source_name: str, t: FrozenTrial) -> FrozenTrial:
    attrs = warm_start_attrs(source_name, t)
    distributions = {name: study.space.parameters[name].distribution() for name in t.params}
    return optuna.trial.create_trial(params=dict(t.params), distributions=distributions, values=t.values,
                                     constraints=dict(t.constraints), user_attrs=attrs)
