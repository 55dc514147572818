"""`tuner compare`: an A/B verdict with confidence between the config a team runs today (A) and another (B).

Both are launched on the same slice, with the same workload, SLOs and sweep (a study file's), alternately (A B B A
A B ...: machine drift and warm caches favour neither), `launches` times each (tuner.compare.run). Every launch's
result is written as it ends (launches.jsonl), so nothing measured is lost. Per metric, the verdict
(tuner.compare.verdict) is the ratio B/A of the launches' means with its 95 % interval (Student's t on the logarithms, the sides' variance pooled),
read as IMPROVED, REGRESSION or WITHIN NOISE (the interval holds 1, or the whole interval lies inside the machine's
noise), with the launches per side that would decide an undecided one. B may replace A when no SLO, success or
stability metric regresses and the rank objective improved.

    sides.py    a side from a `--config` YAML (what `tuner study export` writes), a trial of a study (STUDY:N or
                N), or a `vllm serve` command line
    run.py      the alternating launches
    verdict.py  per-metric ratios, intervals, verdicts, and the rendering (terminal, Markdown, JSON)
"""
from tuner.compare.run import CompareRun, run_compare
from tuner.compare.sides import Side, resolve_side
from tuner.compare.verdict import Comparison, MetricVerdict, Verdict, compare_launches

__all__ = ["CompareRun", "Comparison", "MetricVerdict", "Side", "Verdict", "compare_launches", "resolve_side",
           "run_compare"]
