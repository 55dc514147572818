"""Per-metric verdicts between two configs' launches, and how they are shown.

Each launch is read once (`figures_of`): at its operating point (tuner.scoring: the best level that meets the SLOs,
its repeats combined), the rank objective, goodput and each SLO's latency; over the launch, the success rate and
the stability score. A metric's difference is taken on the ratio scale for rates and latencies (log B - log A, so
the interval is of B/A) and on the difference scale for shares (success, stability, which can be 0). The interval
is Student's t over the launches of both sides with their pooled variance (95 %); one launch per side gives
none. The verdict:
  WITHIN NOISE  the interval holds no change, or lies wholly inside the machine's noise (the median spread of the
                launches' own repeated levels, at least 1 %; 0.05 on the difference scale)
  IMPROVED      otherwise, B better;  REGRESSION  otherwise, B worse.
An undecided metric says how many launches per side would decide it if the difference and spread stay as seen.
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from tuner.contracts.goals import LATENCY_RE, QUALITY, STABILITY, Goals, direction_of
from tuner.contracts.results import LevelRole, TrialResult
from tuner.load.intervals import t_975
from tuner.scoring.objectives import latency
from tuner.scoring.quality import QualityCheck
from tuner.scoring.score import Score, score_run

SUCCESS = "success"
SHARES = (SUCCESS, STABILITY, QUALITY)  # compared as differences
SHARE_NOISE = 0.05
MIN_NOISE, DEFAULT_NOISE = 0.01, 0.05


def header(b_name: str = "B") -> tuple[str, ...]:
    return ("metric", "A (median)", f"{b_name} (median)", f"{b_name} vs A", "95 % CI", "verdict",
            "launches/side to decide")


HEADER = header()


class Verdict(StrEnum):
    IMPROVED = "IMPROVED"
    REGRESSION = "REGRESSION"
    WITHIN_NOISE = "WITHIN NOISE"


def figures_of(result: TrialResult, goals: Goals, score: Score) -> dict[str, float]:
    """One launch's figures by metric name (a metric it did not measure is absent), from its levels and its score
    (its answers judged against A's first when the study's guard is on)."""
    figures: dict[str, float] = {}
    sweep = [lv for lv in result.levels if lv.phase == LevelRole.SWEEP]
    sent = sum(lv.requests for lv in sweep)
    if sent:
        figures[SUCCESS] = sum(lv.completed for lv in sweep) / sent
    figures[STABILITY] = score.components.score
    if score.quality is not None:
        figures[QUALITY] = score.quality.figure
    at_point = [lv for lv in sweep if lv.reliable and lv.concurrency == score.operating_concurrency]
    if not score.feasible or not at_point:
        return figures
    figures[goals.rank_metric] = score.values[goals.rank_metric]
    if goals.slo and at_point[0].goodput_tok_s is not None:
        figures["goodput_tok_s"] = statistics.median(lv.goodput_tok_s or 0.0 for lv in at_point)
    for name in goals.slo:
        values = [v for lv in at_point if (v := latency(lv, name)) is not None]
        if values:
            figures[name] = max(values)  # the worst repeat, as the SLO check reads it
    return figures


def metric_names(goals: Goals) -> list[str]:
    names = [goals.rank_metric, *(["goodput_tok_s"] if goals.slo and goals.rank_metric != "goodput_tok_s" else []),
             *goals.slo, SUCCESS, STABILITY, QUALITY]
    return list(dict.fromkeys(names))


def direction(name: str) -> str:
    return "maximize" if name in SHARES else direction_of(name)


@dataclass(frozen=True)
class MetricVerdict:
    name: str
    a: list[float]
    b: list[float]
    scale: str  # "ratio" (B/A) or "difference" (B - A)
    estimate: float | None  # B/A, or B - A
    low: float | None
    high: float | None
    verdict: Verdict
    to_decide: int | None = None  # launches per side that would decide an undecided metric
    note: str = ""

    @property
    def guards(self) -> bool:
        """A metric B must not regress on to replace A: an SLO latency, success, stability or quality."""
        return bool(LATENCY_RE.match(self.name)) or self.name in SHARES


@dataclass
class Comparison:
    a_label: str
    b_label: str
    launches: tuple[int, int]  # per side, that served
    noise: float
    rank_metric: str
    metrics: list[MetricVerdict] = field(default_factory=list)
    versions: tuple[str, str] = ("", "")
    b_name: str = "B"  # the candidate's letter (C, D, ... when several are compared with A)

    @property
    def may_replace(self) -> bool:
        rank = next((m for m in self.metrics if m.name == self.rank_metric), None)
        regressed = any(m.verdict == Verdict.REGRESSION for m in self.metrics if m.guards)
        return rank is not None and rank.verdict == Verdict.IMPROVED and not regressed

    def summary(self) -> str:
        if self.may_replace:
            return (f"{self.b_name} may replace A: {self.rank_metric} IMPROVED and no SLO, success, stability or quality"
                    " REGRESSION")
        rank = next((m for m in self.metrics if m.name == self.rank_metric), None)
        why = [f"{m.name} REGRESSION" for m in self.metrics if m.guards and m.verdict == Verdict.REGRESSION]
        if rank is None or rank.verdict != Verdict.IMPROVED:
            why.insert(0, f"{self.rank_metric} {rank.verdict if rank else 'not measured'}")
        return f"{self.b_name} may not replace A: " + ", ".join(why)

    def rows(self) -> list[list[str]]:
        return [[m.name, _fmt(m.a, m.name), _fmt(m.b, m.name), _estimate(m), _interval(m), m.verdict.value,
                 "-" if m.to_decide is None else f"~{m.to_decide}" + (f" ({m.note})" if m.note else "")]
                for m in self.metrics]

    def markdown(self) -> str:
        lines = [f"**A**: `{self.a_label}`  \n**{self.b_name}**: `{self.b_label}`  \n{self.launches[0]} and"
                 f" {self.launches[1]}"
                 f" launches, alternating; machine noise {self.noise:.1%}"
                 + (f"; vLLM {self.versions[0]} vs {self.versions[1]}" if any(self.versions) else ""), "",
                 "| " + " | ".join(header(self.b_name)) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        return "\n".join([*lines, "", f"**{self.summary()}**", ""])

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["may_replace"], doc["summary"] = self.may_replace, self.summary()
        return doc

    def as_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=str)


def compare_launches(a_label: str, b_label: str, a: Sequence[TrialResult], b: Sequence[TrialResult],
                     goals: Goals, quality: QualityCheck | None = None, b_name: str = "B") -> Comparison:
    scores = {id(r): score_run(r, goals, quality) for r in [*a, *b]}
    fa = [figures_of(r, goals, scores[id(r)]) for r in a]
    fb = [figures_of(r, goals, scores[id(r)]) for r in b]
    spreads = [s for score in scores.values() if (s := score.evidence.repeat_spread) is not None]
    noise = max(MIN_NOISE, statistics.median(spreads)) if spreads else DEFAULT_NOISE
    versions = (next((r.server_version for r in a if r.server_version), ""),
                next((r.server_version for r in b if r.server_version), ""))
    comparison = Comparison(a_label, b_label, (len([f for f in fa if goals.rank_metric in f]),
                                               len([f for f in fb if goals.rank_metric in f])),
                            noise, goals.rank_metric, versions=versions, b_name=b_name)
    for name in metric_names(goals):
        xs, ys = [f[name] for f in fa if name in f], [f[name] for f in fb if name in f]
        if name != QUALITY or xs or ys:  # quality only when the study's guard is on
            comparison.metrics.append(judge(name, xs, ys, noise))
    return comparison


def judge(name: str, a: list[float], b: list[float], noise: float) -> MetricVerdict:
    ratio = name not in SHARES and all(x > 0 for x in [*a, *b])
    scale = "ratio" if ratio else "difference"
    if not a or not b:
        return MetricVerdict(name, a, b, scale, None, None, None, Verdict.WITHIN_NOISE, note="not measured")
    xs, ys = ([math.log(x) for x in a], [math.log(y) for y in b]) if ratio else (a, b)
    diff = statistics.mean(ys) - statistics.mean(xs)
    floor = math.log1p(noise) if ratio else SHARE_NOISE
    sign = 1.0 if direction(name) == "maximize" else -1.0
    back = (lambda d: math.exp(d)) if ratio else (lambda d: d)
    if len(a) < 2 or len(b) < 2:
        return MetricVerdict(name, a, b, scale, back(diff), None, None, Verdict.WITHIN_NOISE, to_decide=2,
                             note="one launch per side has no interval")
    # Student's t with the pooled variance: both sides are measured on one host by one client, so their launch-to-
    # launch spread (on the log scale: multiplicative noise) is the host's, not the config's; with two launches a
    # side, Welch's degrees of freedom would collapse to one whenever one side happened to repeat itself closely.
    dof = len(xs) + len(ys) - 2
    pooled = ((len(xs) - 1) * statistics.variance(xs) + (len(ys) - 1) * statistics.variance(ys)) / dof
    se = math.sqrt(pooled * (1 / len(xs) + 1 / len(ys)))
    t = t_975(dof)
    low, high = diff - t * se, diff + t * se
    inside_noise = -floor <= low and high <= floor
    holds_zero = low <= 0 <= high
    if inside_noise or holds_zero:
        verdict, to_decide = Verdict.WITHIN_NOISE, None
        if holds_zero and abs(diff) > floor and se > 0:
            to_decide = math.ceil(len(a) * (t * se / abs(diff)) ** 2) + 1
    else:
        verdict, to_decide = (Verdict.IMPROVED if sign * diff > 0 else Verdict.REGRESSION), None
    return MetricVerdict(name, a, b, scale, back(diff), back(low), back(high), verdict, to_decide)


def _fmt(values: list[float], name: str) -> str:
    if not values:
        return "-"
    v = statistics.median(values)
    if name in SHARES:
        return f"{v:.3f}"
    return f"{v:,.1f}" if LATENCY_RE.match(name) else f"{v:,.0f}"


def _estimate(m: MetricVerdict) -> str:
    if m.estimate is None:
        return "-"
    return f"{m.estimate:.3f}x" if m.scale == "ratio" else f"{m.estimate:+.3f}"


def _interval(m: MetricVerdict) -> str:
    if m.low is None or m.high is None:
        return "none"
    return f"{m.low:.3f}-{m.high:.3f}x" if m.scale == "ratio" else f"{m.low:+.3f} to {m.high:+.3f}"
