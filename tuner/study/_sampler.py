"""Which Optuna sampler proposes the study's configs, chosen by the evidence in benchmarks/search_efficiency.py.

On the recorded CPU surface GPSampler reached 95 % of the true front's hypervolume in a median of 11.5 launches,
TPE in 16.5, the grid in 19.5 and random search in 22 (README, "Is the search worth it?"). So `auto` takes GPSampler
when it can run well here, and multivariate TPE otherwise: GPSampler needs torch and scipy (the optional extra
`tuner[gp]`), and it has no constant liar, so with trials running in parallel it would propose the running config
again; TPE's constant liar spreads parallel workers out.
"""
from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState

from tuner.inputs.spec import Study


@dataclass(frozen=True)
class SamplerChoice:
    name: str  # tpe, nsga2, gp, random or grid: never auto
    reason: str  # why, for `auto`; empty when the study file named it


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, for a study driven by ask and tell. Optuna's own calls `Study.stop()` when the grid is
    exhausted, which only works inside `Study.optimize` and raises from `tell` otherwise; tuner's loop ends on its
    budget, and on proposals it has measured before, instead."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        return None


def gp_available() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in ("torch", "scipy"))


def choose_sampler(study: Study) -> SamplerChoice:
    name = study.spec.sampler.name
    if name != "auto":
        return SamplerChoice(name, "")
    if study.spec.parallel > 1:
        return SamplerChoice("tpe", "auto: trials run in parallel, and TPE's constant liar spreads them out")
    if not gp_available():
        return SamplerChoice("tpe", "auto: GPSampler, the best on the recorded surface, needs torch and scipy"
                                    " (pip install 'tuner[gp]')")
    return SamplerChoice("gp", "auto: GPSampler found the front in the fewest launches on the recorded surface")


def make_sampler(study: Study, seed_offset: int, choice: SamplerChoice | None = None) -> optuna.samplers.BaseSampler:
    s = study.spec.sampler
    name = (choice or choose_sampler(study)).name
    seed = None if s.seed is None else s.seed + seed_offset
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        population = s.population_size or max(4, study.spec.trials // 4)
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "grid":
        return AskTellGridSampler(study.space.grid(), seed=seed)
    startup = s.startup_trials or max(3, min(10, study.spec.trials // 3))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    with warnings.catch_warnings():  # `group` is experimental in Optuna: a user can do nothing about the warning
        warnings.simplefilter("ignore", ExperimentalWarning)
        # constant_liar: running trials count as bad guesses, so parallel workers are not all sent to one spot.
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                          constant_liar=study.spec.parallel > 1)
