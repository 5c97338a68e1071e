"""When is a warm-start refinement worth it? Conditions on a finished tuning run.

Any condition that holds is a reason to refine (an empty list: skip):

* the best CV score misses a target (``target``);
* the best trial sits at or near a boundary of a tuned range (within ``boundary`` of the
  range's width, in the parameter's own scale) — the optimum may lie just outside;
* the top ``top_k`` trials are within one standard error of the best, measured on paired fold
  differences (:func:`paired_gap`) — the search has not separated them yet.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from cvtune.ledger import RunLedger, rank_key
from cvtune.space import CategoricalParameter, SearchSpace


def _position(value: float, low: float, high: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        value, low, high = math.log(value), math.log(low), math.log(high)
    elif scaling == "ReverseLogarithmic":
        value, low, high = -math.log(1 - value), -math.log(1 - low), -math.log(1 - high)
    return (value - low) / (high - low)


def target_reason(ledger: RunLedger, target: float | None) -> str | None:
    """The best CV score misses ``target`` (below it when maximizing, above it when minimizing)."""
    best = ledger.best_trial()
    if best is None or target is None:
        return None
    if best["mean"] < target if ledger.maximize else best["mean"] > target:
        return f"best {ledger.objective_metric} {best['mean']:.6g} misses the target {target:.6g}"
    return None


def boundary_reasons(ledger: RunLedger, boundary: float | None) -> list[str]:
    """The best sits within ``boundary`` × the range width of a tuned range's end, measured in the
    parameter's own scale: the optimum may lie just outside."""
    best = ledger.best_trial()
    if best is None or boundary is None or boundary <= 0:
        return []
    space = SearchSpace.from_parameter_ranges(
        ledger.data["config"]["parameter_ranges"], ledger.data["config"].get("static_hyperparameters")
    )
    reasons = []
    for p in space.parameters:
        if isinstance(p, CategoricalParameter) or p.name not in best["params"]:
            continue
        at = _position(float(best["params"][p.name]), p.min_value, p.max_value, p.effective_scaling)
        if at <= boundary or at >= 1 - boundary:
            side = "lower" if at <= boundary else "upper"
            reasons.append(
                f"best {p.name}={best['params'][p.name]:.6g} is at the {side} boundary of "
                f"[{p.min_value:g}, {p.max_value:g}]"
            )
    return reasons


def paired_gap(best_scores: list[float | None], other_scores: list[float | None]) -> tuple[float, float]:
    """``(gap, standard error)`` of the mean score difference between two trials.

    Both trials ran on the same folds, so the difference is taken fold by fold: a fold that is hard
    for every candidate moves both scores alike and cancels out. The standard error is that of the
    mean of the K paired differences, ``sd(d) / sqrt(K)``. With fewer than two shared folds it
    falls back to the unpaired standard error ``sqrt(sd_a² / K_a + sd_b² / K_b)``.
    """
    pairs = [(a, b) for a, b in zip(best_scores, other_scores, strict=False) if a is not None and b is not None]
    if len(pairs) >= 2:
        diffs = [a - b for a, b in pairs]
        return abs(statistics.fmean(diffs)), statistics.stdev(diffs) / math.sqrt(len(diffs))
    a = [v for v in best_scores if v is not None]
    b = [v for v in other_scores if v is not None]
    var = sum(statistics.variance(x) / len(x) for x in (a, b) if len(x) >= 2)
    return abs(statistics.fmean(a) - statistics.fmean(b)), math.sqrt(var)


def top_k_reason(ledger: RunLedger, top_k: int | None) -> str | None:
    """The ``top_k`` best trials are not separated yet: each one's mean differs from the best's by
    no more than one standard error of their paired fold differences (see :func:`paired_gap`).

    Comparing the gap with the raw fold std (as before) compared unlike things: on a problem whose
    folds differ a lot in level, every gap is far smaller than the fold std, so the rule always held.
    """
    best = ledger.best_trial()
    if best is None or not top_k or top_k < 2:
        return None
    pool = ledger.inherited_trials() + ledger.completed_trials()
    ranked = sorted(pool, key=lambda t: rank_key(t, ledger.maximize))[:top_k]
    if len(ranked) < top_k:
        return None
    gaps = [paired_gap(best["fold_scores"], t["fold_scores"]) for t in ranked if t is not best]
    if all(gap <= se for gap, se in gaps):
        widest = max(gaps, key=lambda g: g[0])
        return (
            f"the top {top_k} trials are within one standard error of the best {best['mean']:.6g} "
            f"(largest gap {widest[0]:.4g}, its standard error of paired fold differences {widest[1]:.4g})"
        )
    return None


def refinement_reasons(
    ledger: RunLedger,
    *,
    target: float | None = None,
    boundary: float | None = 0.05,
    top_k: int | None = 3,
) -> list[str]:
    """Every condition that holds (empty: skip refinement)."""
    reasons = [target_reason(ledger, target), *boundary_reasons(ledger, boundary), top_k_reason(ledger, top_k)]
    return [r for r in reasons if r]


def refinement_plan(ledger: RunLedger, reasons: list[str], factor: float) -> dict[str, Any]:
    """What ``refine`` will search: the parent's ranges narrowed around its best."""
    from cvtune.warmstart import narrow_ranges

    config = ledger.data["config"]
    space = SearchSpace.from_parameter_ranges(config["parameter_ranges"], config.get("static_hyperparameters"))
    best = ledger.best_trial()
    return {
        "refine": bool(reasons),
        "reasons": reasons,
        "parent": ledger.uri,
        "parameter_ranges": narrow_ranges(space, best["params"], factor) if best else None,
    }
