"""What the progress line says when a trial is done: its figures where they were read, how precisely the operating
point is known and what ended its levels, whether drafts paid, whether it was stopped as dominated, and the slice
time it held: "trial 4 done: output_tok_s 1,658, stability 0.774 at c=16; +/-5.6% (95 %, 201 requests, to +/-5%)
[2.2 min of slice time]"."""
from __future__ import annotations

from tuner.contracts.results import LevelRole, TrialResult
from tuner.scoring.score import Score


def done_line(score: Score, result: TrialResult) -> str:
    held = f" [{result.wall_s / 60:.1f} min of slice time]" if result.wall_s else ""
    stopped = "; stopped: dominated by the front" if result.dominated else ""
    return _verdict(score) + _precision(result, score) + _drafts(result) + stopped + held


def _verdict(score: Score) -> str:
    figures = ", ".join(f"{name} {_figure(value)}" for name, value in score.values.items())
    where = f" at {score.operating_point}" if score.operating_point else ""
    # The quality figure is shown whenever the guard judged the launch, objective or not.
    quality = (f", quality {score.quality.figure:.3f}" if score.quality is not None
               and "quality" not in score.values else "")
    if score.feasible:
        return f"{figures}{where}{quality}" + (f" (then {score.outcome})" if score.outcome != "measured" else "")
    if score.outcome == "slo_miss":
        return f"slo_miss: {score.detail}"
    if score.quality is not None and score.outcome == "wrong_output":
        return f"penalized: wrong_output (quality {score.quality.figure:.3f}: {score.quality.describe()})"
    return f"penalized: {score.outcome}"


def _drafts(result: TrialResult) -> str:
    """How speculation fared at the launch's top measured level, under the study's sampling: the figure that says
    whether the drafts paid."""
    level = next((lv for lv in reversed(result.levels) if lv.phase == LevelRole.SWEEP and lv.speculation is not None), None)
    if level is None or level.speculation is None:
        return ""
    return f"; drafts at c={level.concurrency}: {level.speculation.describe()}"


def _precision(result: TrialResult, score: Score) -> str:
    """How precisely the operating point's throughput is known: "; +/-4.1 % (95 %, 236 requests, to +/-5 %)", from
    its most precise measurement (the repeat, coarse first), or why it has no interval."""
    measured = [(lv, lv.output_throughput_ci) for lv in result.levels if lv.phase == LevelRole.SWEEP and lv.reliable
                and lv.concurrency == score.operating_concurrency and lv.output_throughput_ci is not None]
    if not measured or not score.feasible:
        return ""
    level, ci = min(measured, key=lambda m: m[1].relative if m[1].relative is not None else float("inf"))
    if ci.relative is None:
        return f"; no 95 % CI ({ci.reason}; {level.describe_end()})"
    return f"; +/-{ci.relative:.1%} (95 %, {level.describe_end()})"


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
