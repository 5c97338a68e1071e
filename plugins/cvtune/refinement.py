"""When is a warm-start refinement worth it? Conditions on a finished tuning run.

Any condition that holds is a reason to refine (an empty list: skip):

* the best CV score misses a target (``target``);
* the best trial sits at or near a boundary of a tuned range (within ``boundary`` of the
  range's width, in the parameter's own scale) — the optimum may lie just outside;
* the top ``top_k`` trials are within one standard deviation of the best — the search has not
  separated them yet.
"""

from __future__ import annotations

import math
from typing import Any

from cvtune.ledger import RunLedger, rank_key
from cvtune.space import CategoricalParameter, SearchSpace


def _position(value: float, low: float, high: float, scaling: str) -> float:
    if scaling == "Logarithmic":
        value, low, high = math.log(value), math.log(low), math.log(high)
    elif scaling == "ReverseLogarithmic":
        value, low, high = -math.log(1 - value), -math.log(1 - low), -math.log(1 - high)
    return (value - low) / (high - low)


def refinement_reasons(
    ledger: RunLedger,
    *,
    target: float | None = None,
    boundary: float | None = 0.05,
    top_k: int | None = 3,
) -> list[str]:
    best = ledger.best_trial()
    if best is None:
        return []
    reasons = []
    maximize = ledger.maximize
    metric = ledger.objective_metric
    if target is not None and (best["mean"] < target if maximize else best["mean"] > target):
        reasons.append(f"best {metric} {best['mean']:.6g} misses the target {target:.6g}")
    if boundary is not None and boundary > 0:
        space = SearchSpace.from_parameter_ranges(
            ledger.data["config"]["parameter_ranges"], ledger.data["config"].get("static_hyperparameters")
        )
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
    if top_k and top_k > 1:
        ranked = sorted(ledger.completed_trials(), key=lambda t: rank_key(t, maximize))[:top_k]
        if len(ranked) == top_k and all(abs(t["mean"] - best["mean"]) <= best["std"] for t in ranked):
            reasons.append(
                f"the top {top_k} trials are within one std ({best['std']:.4g}) of the best {best['mean']:.6g}"
            )
    return reasons


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
