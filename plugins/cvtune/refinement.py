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

from cvtune.ledger import RunLedger
from cvtune.ranking import ranked_candidates
from cvtune.space import CategoricalParameter, ContinuousParameter, IntegerParameter, SearchSpace


def _position(value: float, low: float, high: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        value, low, high = math.log(value), math.log(low), math.log(high)
    elif scaling == "ReverseLogarithmic":
        value, low, high = -math.log(1 - value), -math.log(1 - low), -math.log(1 - high)
    return (value - low) / (high - low)


def _positions(ledger: RunLedger, best: dict[str, Any]) -> list[tuple[ContinuousParameter | IntegerParameter, float]]:
    """Each tuned numeric parameter of ``best`` and where its value sits in its range (0 = lower end,
    1 = upper end, in the parameter's own scale)."""
    space = SearchSpace.from_parameter_ranges(
        ledger.data["config"]["parameter_ranges"], ledger.data["config"].get("static_hyperparameters")
    )
    return [(p, _position(float(best["params"][p.name]), p.min_value, p.max_value, p.effective_scaling))
            for p in space.parameters if not isinstance(p, CategoricalParameter) and p.name in best["params"]]


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
    reasons = []
    for p, at in _positions(ledger, best):
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
    gaps = _top_k_gaps(ledger, top_k)
    if best is None or gaps is None:
        return None
    if all(gap <= se for gap, se in gaps):
        widest = max(gaps, key=lambda g: g[0])
        return (
            f"the top {top_k} trials are within one standard error of the best {best['mean']:.6g} "
            f"(largest gap {widest[0]:.4g}, its standard error of paired fold differences {widest[1]:.4g})"
        )
    return None


def _top_k_gaps(ledger: RunLedger, top_k: int | None) -> list[tuple[float, float]] | None:
    """``(gap, standard error)`` of each of the other ``top_k - 1`` best trials against the best;
    ``None`` when the rule is off or fewer than ``top_k`` trials completed."""
    best = ledger.best_trial()
    if best is None or not top_k or top_k < 2:
        return None
    ranked = [c.trial for c in ranked_candidates([ledger], ledger.maximize)[:top_k]]
    if len(ranked) < top_k:
        return None
    return [paired_gap(best["fold_scores"], t["fold_scores"]) for t in ranked if t is not best]


def refinement_rules(
    ledger: RunLedger,
    *,
    target: float | None = None,
    boundary: float | None = 0.05,
    top_k: int | None = 3,
) -> list[dict[str, Any]]:
    """Every condition's verdict on a finished run, for the decision and the report.

    One entry per rule (``target``, ``boundary``, ``top_k``): ``holds``, ``off`` (switched off),
    the ``statistic`` it looked at, the ``threshold`` it compared it with, and a sentence
    (``detail``; ``reasons`` lists what holds). The boundary rule also lists each tuned
    parameter's ``position`` in its range (0 = lower end, 1 = upper end, in its own scale); its
    statistic is the smallest distance to an end. The top-k rule's statistic is the largest gap
    to the best and its threshold that gap's standard error. ``reasons_of(rules)`` equals
    :func:`refinement_reasons`.
    """
    best = ledger.best_trial()
    if best is None:
        return []
    metric = ledger.objective_metric
    rules: list[dict[str, Any]] = []

    reason = target_reason(ledger, target)
    rules.append({
        "rule": "target", "holds": reason is not None, "off": target is None, "statistic": best["mean"],
        "threshold": target, "reasons": [reason] if reason else [],
        "detail": reason or (f"no target set (best {metric} {best['mean']:.6g})" if target is None
                             else f"best {metric} {best['mean']:.6g} meets the target {target:.6g}"),
    })

    if boundary is None or boundary <= 0:
        rules.append({"rule": "boundary", "holds": False, "off": True, "statistic": None, "threshold": None,
                      "parameters": [], "reasons": [], "detail": "boundary check off"})
    else:
        params = [{"name": p.name, "value": best["params"][p.name], "position": at,
                   "near": at <= boundary or at >= 1 - boundary} for p, at in _positions(ledger, best)]
        hits = boundary_reasons(ledger, boundary)
        closest = min((min(q["position"], 1 - q["position"]) for q in params), default=None)
        rules.append({
            "rule": "boundary", "holds": bool(hits), "off": False, "statistic": closest, "threshold": boundary,
            "parameters": params, "reasons": hits,
            "detail": "; ".join(hits) if hits else (
                f"no tuned parameter within {boundary:g} of a range end"
                + (f" (closest {closest:.3g})" if closest is not None else "")
            ),
        })

    gaps = _top_k_gaps(ledger, top_k)
    reason = top_k_reason(ledger, top_k)
    if not top_k or top_k < 2:
        rules.append({"rule": "top_k", "holds": False, "off": True, "statistic": None, "threshold": None,
                      "reasons": [], "detail": "top-k check off"})
    elif gaps is None:
        rules.append({"rule": "top_k", "holds": False, "off": False, "statistic": None, "threshold": None,
                      "k": top_k, "reasons": [], "detail": f"fewer than {top_k} completed trials"})
    else:
        widest = max(gaps, key=lambda g: g[0])
        rules.append({
            "rule": "top_k", "holds": reason is not None, "off": False, "statistic": widest[0],
            "threshold": widest[1], "k": top_k, "reasons": [reason] if reason else [],
            "detail": reason or (
                f"the top {top_k} trials are separated: a gap of {widest[0]:.4g} exceeds its standard error "
                f"{widest[1]:.4g}" if widest[0] > widest[1] else
                f"some of the top {top_k} trials differ from the best by more than one standard error"
            ),
        })
    return rules


def reasons_of(rules: list[dict[str, Any]]) -> list[str]:
    """The reasons to refine in ``rules`` (empty: skip)."""
    return [r for rule in rules for r in rule.get("reasons") or []]


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


def refinement_plan(
    ledger: RunLedger, reasons: list[str], factor: float, rules: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What ``refine`` will search: the parent's ranges narrowed around its best; with the
    ``rules``' verdicts and the original ranges, for the report."""
    from cvtune.warmstart import narrow_ranges

    config = ledger.data["config"]
    space = SearchSpace.from_parameter_ranges(config["parameter_ranges"], config.get("static_hyperparameters"))
    best = ledger.best_trial()
    return {
        "refine": bool(reasons),
        "reasons": reasons,
        "rules": rules or [],
        "narrowing": factor,
        "parent": ledger.uri,
        "parent_run_id": ledger.run_id,
        "original_ranges": config["parameter_ranges"],
        "parameter_ranges": narrow_ranges(space, best["params"], factor) if best else None,
    }
