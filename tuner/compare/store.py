"""Where a comparison is kept: a study of its own in the study file's storage, one trial per launch.

optuna-dashboard lists it beside the study it was measured for (`tuner dashboard`: each launch's note, the verdict as
the study's note), and an interrupted comparison resumes from it: the `--out` directory names the comparison study
(COMPARE_STUDY_FILE), so giving the same `--out` again keeps the launches already stored and launches the rest.

A launch is stored whole (CompareLaunch: side, label, launch number and the worker's TrialResult, probes' answers
included, so verdicts can be recomputed exactly); its value is the rank objective at its operating point (FAIL when
it had none: a server that did not serve, or no level met the SLOs). The keys are the constants below.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel

from tuner.contracts.goals import direction_of
from tuner.contracts.results import TrialResult
from tuner.errors import InputError
from tuner.inputs.spec import Study
from tuner.study.storage import open_storage

COMPARE_STUDY_FILE = "compare-study.txt"  # in the --out directory: the comparison study's name

# -- study attributes ---------------------------------------------------------------------------------------------
STUDY_ATTR_KIND = "kind"
KIND_COMPARE = "compare"  # what tells a comparison study from a tuning study in one storage
STUDY_ATTR_COMPARED_FOR = "compared_for"  # the study file's study: its workload, SLOs and sweep were used
STUDY_ATTR_SIDES = "sides"  # {"A": label, "B": label, ...}
STUDY_ATTR_VERDICT = "verdict_markdown"  # the latest verdict tables, one per candidate (Comparison.markdown)

# -- trial attributes ---------------------------------------------------------------------------------------------
ATTR_LAUNCH = "compare_launch"  # the whole CompareLaunch
PARAM_SIDE = "side"  # the one parameter: A, B, ... (so the dashboard can plot the launches by side)

SideName = Literal["A", "B", "C", "D", "E", "F"]
SIDE_NAMES: tuple[str, ...] = get_args(SideName)  # A runs today; the others are candidates


class CompareLaunch(BaseModel):
    """One launch of one side, as stored."""

    launch: int  # 1-based, in launch order
    side: SideName
    label: str
    result: TrialResult

    @classmethod
    def of(cls, trial: FrozenTrial) -> CompareLaunch:
        return cls.model_validate(trial.user_attrs[ATTR_LAUNCH])


def is_comparison(study: optuna.Study) -> bool:
    return study.user_attrs.get(STUDY_ATTR_KIND) == KIND_COMPARE


@dataclass
class CompareStore:
    study: optuna.Study

    @property
    def name(self) -> str:
        return self.study.study_name

    def launches(self) -> list[CompareLaunch]:
        stored = [CompareLaunch.of(t) for t in self.study.get_trials(deepcopy=False)
                  if ATTR_LAUNCH in t.user_attrs]
        return sorted(stored, key=lambda launch: launch.launch)

    def add(self, launch: CompareLaunch, value: float | None) -> None:
        """Store one launch as it ends: COMPLETE with its rank figure, FAIL when it has none."""
        self.study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE if value is not None else TrialState.FAIL,
            params={PARAM_SIDE: launch.side}, distributions={PARAM_SIDE: CategoricalDistribution(SIDE_NAMES)},
            value=value, user_attrs={ATTR_LAUNCH: launch.model_dump(mode="json")}))

    def write_verdict(self, markdown: str) -> None:
        self.study.set_user_attr(STUDY_ATTR_VERDICT, markdown)


def open_store(study: Study, labels: tuple[str, ...], out_dir: Path) -> CompareStore:
    """The comparison study `out_dir` names (resumed), or a new one named for the study and the time (its name
    written into `out_dir` first). A directory that holds another pair's comparison is refused."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pointer = out_dir / COMPARE_STUDY_FILE
    storage = open_storage(study.spec.storage)
    goals = study.spec.goals()
    if pointer.is_file():
        name = pointer.read_text().strip()
        try:
            stored = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise InputError(str(pointer), "", f"names comparison {name!r}, which {study.spec.storage} does not hold;"
                             " give another --out") from None
        _check_same_sides(stored, labels, out_dir)
        return CompareStore(stored)
    name = f"{study.spec.name}-compare-{time.strftime('%Y%m%d-%H%M%S')}"
    stored = optuna.create_study(study_name=name, storage=storage, direction=direction_of(goals.rank_metric))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        stored.set_metric_names([goals.rank_metric])
    stored.set_user_attr(STUDY_ATTR_KIND, KIND_COMPARE)
    stored.set_user_attr(STUDY_ATTR_COMPARED_FOR, study.spec.name)
    stored.set_user_attr(STUDY_ATTR_SIDES, dict(zip(SIDE_NAMES, labels, strict=False)))
    pointer.write_text(name + "\n")
    return CompareStore(stored)


def _check_same_sides(stored: optuna.Study, labels: tuple[str, ...], out_dir: Path) -> None:
    sides: dict[str, str] = stored.user_attrs.get(STUDY_ATTR_SIDES, {})
    if tuple(sides.values()) != labels:
        held = ", ".join(f"{name}={label!r}" for name, label in sides.items())
        asked = ", ".join(repr(label) for label in labels)
        raise InputError(str(out_dir), "--out", f"holds the comparison of {held}; give another --out for {asked}")
