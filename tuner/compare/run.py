"""The launches of a comparison: alternating, one at a time on the slice, each stored as it ends (tuner.compare.store)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tuner.compare.sides import Side
from tuner.compare.store import SIDE_NAMES, CompareLaunch, CompareStore
from tuner.compare.verdict import figures_of
from tuner.contracts.quality import QualityPlan
from tuner.contracts.results import TrialResult
from tuner.contracts.serving import ServingFlags
from tuner.inputs.spec import Study
from tuner.planning.prelaunch import prompt_vocab_size
from tuner.planning.traffic import resolve_traffic, sweep_plan
from tuner.scoring.quality import QualityCheck, QualityReference, noise_gap, reference_key
from tuner.scoring.score import score_run
from tuner.trial import launch
from tuner.trial.probes import probes_for, study_probe_set
from tuner.trial.sweep_plan import LaunchRequest


def alternating(launches: int, sides: int = 2) -> list[int]:
    """Side indices in launch order, forward then backward: A B B A A B ... for two sides, A B C C B A A B C ... for
    three (an order that cancels a linear drift of the host)."""
    order: list[int] = []
    for n in range(launches):
        order += list(range(sides)) if n % 2 == 0 else list(reversed(range(sides)))
    return order


@dataclass
class CompareRun:
    sides: tuple[Side, ...]  # A (what runs today) first, then the candidates
    results: list[list[TrialResult]] = field(default_factory=list)  # per side, in launch order
    reference: QualityReference | None = None  # A's first answers to the probes, when the study's guard is on

    def __post_init__(self) -> None:
        self.results = self.results or [[] for _ in self.sides]

    def quality_check(self, tolerance: float) -> QualityCheck | None:
        return QualityCheck(self.reference, tolerance) if self.reference is not None else None


class _Probes:
    """The study's quality probes (its guard on): A's first launch answers them as the reference, every later
    launch (B's, and A's again: its own noise) is teacher-forced through A's answers."""

    def __init__(self, study: Study, vocab: int | None) -> None:
        self.probes = study_probe_set(study) if study.spec.quality.enabled and vocab else []
        self.vocab = vocab or 0
        self.key = reference_key(study.spec.model, self.probes)

    def plan(self, side: Side, reference: QualityReference | None) -> QualityPlan | None:
        probes = probes_for(self.probes, side.config.flags)
        if not probes:
            return None
        answers = tuple(reference.answering({p.name for p in probes})) if reference is not None else None
        batch = ServingFlags.of(side.config.flags).max_num_seqs or len(probes)
        return QualityPlan(probes=tuple(probes), reference=answers, vocab_size=self.vocab,
                           concurrency=max(1, min(batch, len(probes))))

    def reference_from(self, result: TrialResult) -> QualityReference | None:
        if not result.probes or any(a.error or not a.tokens for a in result.probes):
            return None
        return QualityReference(key=self.key, params={}, trial=0, answers=list(result.probes),
                                noise=noise_gap(result.probes, result.probes), server_version=result.server_version)


def run_compare(study: Study, sides: tuple[Side, ...], launches: int, store: CompareStore, out_dir: Path,
                on_event: Callable[[str], None] = lambda _: None) -> CompareRun:
    """Launch each side `launches` times, alternately (`alternating`), with the study's sweep; every launch is stored as it ends
    (its server log in out_dir). Launches already stored (an interrupted run of the same comparison) are kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = sweep_plan(study, resolve_traffic(study))
    vocab = prompt_vocab_size(study)
    probes = _Probes(study, vocab)
    run = CompareRun(sides)
    stored = store.launches()
    for earlier in stored:
        _add(run, probes, SIDE_NAMES.index(earlier.side), earlier.result)
    if stored:
        on_event(f"resuming: {len(stored)} launches already in comparison {store.name}")
    goals = study.spec.goals()
    order = alternating(launches, len(sides))
    for n, side_index in enumerate(order):
        if n < len(stored):
            continue
        side, name = sides[side_index], SIDE_NAMES[side_index]
        on_event(f"launch {n + 1}/{len(order)}: {name} ({side.label})")
        log_path = out_dir / f"launch-{n + 1:02d}-{name}.log"
        outcome = launch(LaunchRequest(config=side.config, plan=plan.with_quality(probes.plan(side, run.reference)),
                                       timeouts=study.spec.timeouts, log_path=str(log_path.absolute()),
                                       host=study.spec.server.host, vocab_size=vocab))
        result = outcome.result
        _add(run, probes, side_index, result)
        figures = figures_of(result, goals, score_run(result, goals, run.quality_check(study.spec.quality.tolerance)))
        store.add(CompareLaunch(launch=n + 1, side=name, label=side.label, result=result),
                  figures.get(goals.rank_metric))
        verdict = result.failure_class or "measured"
        on_event(f"launch {n + 1}/{len(order)}: {name} {verdict}"
                 + (f" ({result.failure_detail[:100]})" if result.failure_class else ""))
    return run


def _add(run: CompareRun, probes: _Probes, side_index: int, result: TrialResult) -> None:
    run.results[side_index].append(result)
    if run.reference is None and side_index == 0:
        run.reference = probes.reference_from(result)
