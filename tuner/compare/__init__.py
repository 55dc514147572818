"""`tuner compare`: an A/B verdict with confidence between the config a team runs today (A) and another (B), or
several others (B, C, ..., each judged against A).

Every side is launched on the same slice, with the same workload, SLOs and sweep (a study file's), alternately
(A B B A A B ..., or A B C C B A ...: machine drift and warm caches favour none), `launches` times each
(tuner.compare.run). Every launch is stored as it ends, as a trial of a comparison study in the study's storage
(tuner.compare.store): nothing measured is lost, an interrupted comparison resumes, and optuna-dashboard shows it.
Per metric, the verdict (tuner.compare.verdict) is the ratio B/A of the launches' means with its 95 % interval
(Student's t on the logarithms, the sides' variance pooled), read as IMPROVED, REGRESSION or WITHIN NOISE (the
interval holds 1, or the whole interval lies inside the machine's noise), with the launches per side that would
decide an undecided one. B may replace A when no SLO, success, stability or quality metric regresses and the rank
objective improved; with several candidates, each is judged against A the same way.

    sides.py    a side from a `--config` YAML (what `tuner study export` writes), a trial of a study (STUDY:N or
                N), or a `vllm serve` command line
    run.py      the alternating launches
    store.py    the comparison study: one trial per launch, the verdict as its note
    verdict.py  per-metric ratios, intervals, verdicts, and the rendering (terminal, Markdown, JSON)
"""
from tuner.compare.run import CompareRun, run_compare
from tuner.compare.sides import Side, resolve_side
from tuner.compare.store import CompareLaunch, CompareStore, is_comparison, open_store
from tuner.compare.verdict import Comparison, MetricVerdict, Verdict, compare_launches

__all__ = ["CompareLaunch", "CompareRun", "CompareStore", "Comparison", "MetricVerdict", "Side", "Verdict",
           "compare_launches", "is_comparison", "open_store", "resolve_side", "run_compare"]
