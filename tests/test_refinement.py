"""Refinement you can trust: narrowing keeps the best inside for every scaling (property test),
and each rule (boundary, top k within noise) is tested on its own."""

from __future__ import annotations

import math
import random

import pytest

from cvtune.ledger import RunLedger, score_stats
from cvtune.refinement import boundary_reasons, paired_gap, refinement_reasons, top_k_reason
from cvtune.space import SearchSpace
from cvtune.warmstart import narrow_ranges


def space_of(kind: str, low: float, high: float, scaling: str) -> SearchSpace:
    key = "IntegerParameterRanges" if kind == "int" else "ContinuousParameterRanges"
    low_s, high_s = (str(int(low)), str(int(high))) if kind == "int" else (repr(low), repr(high))
    return SearchSpace.from_parameter_ranges({key: [{"Name": "p", "MinValue": low_s, "MaxValue": high_s, "ScalingType": scaling}]})


CASES = [("float", "Linear"), ("float", "Logarithmic"), ("float", "ReverseLogarithmic"), ("int", "Linear"), ("int", "Logarithmic")]


@pytest.mark.parametrize(("kind", "scaling"), CASES)
def test_narrowing_keeps_the_best_inside_for_thousands_of_random_cases(kind, scaling):
    rs = random.Random(hash((kind, scaling)) % 2**32)
    for _ in range(3000):
        if scaling == "ReverseLogarithmic":
            low = rs.uniform(0.0, 0.99)
            high = rs.uniform(low + 1e-6, 0.999999)
        elif kind == "int":
            low = rs.randint(1, 50)
            high = rs.randint(low + 1, low + 500)
        elif scaling == "Logarithmic":
            low = 10 ** rs.uniform(-8, 2)
            high = low * 10 ** rs.uniform(0.01, 6)
        else:
            low = rs.uniform(-1000, 1000)
            high = low + 10 ** rs.uniform(-6, 4)
        space = space_of(kind, low, high, scaling)
        p = space["p"]
        best = rs.randint(int(p.min_value), int(p.max_value)) if kind == "int" else rs.uniform(p.min_value, p.max_value)
        factor = rs.choice([0.1, 0.25, 0.5, 0.9, 1.0])
        narrowed = SearchSpace.from_parameter_ranges(narrow_ranges(space, {"p": best}, factor))["p"]
        assert narrowed.min_value <= best <= narrowed.max_value, (low, high, best, factor, narrowed)
        assert p.min_value <= narrowed.min_value < narrowed.max_value <= p.max_value


def test_narrowing_does_not_push_an_interior_best_to_the_boundary():
    """The issue's case: best lambda 0.075 in a log range [0.001, 10] got [0.316, 10]."""
    space = space_of("float", 0.001, 10.0, "Logarithmic")
    narrowed = SearchSpace.from_parameter_ranges(narrow_ranges(space, {"p": 0.075}, 0.5))["p"]
    assert narrowed.min_value < 0.075 < narrowed.max_value
    assert math.isclose(math.sqrt(narrowed.min_value * narrowed.max_value), 0.075)


def make_ledger(tmp_path, trials, *, maximize=False, ranges=None):
    manifest = {"manifest_uri": "m", "fingerprint": "f", "folds": [{} for _ in trials[0][1]]}
    config = {"objective": {"metric": "validation:rmse", "type": "Maximize" if maximize else "Minimize"},
              "entry_point": "train.py", "metric_definitions": [],
              "parameter_ranges": ranges or {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]}}
    ledger = RunLedger.create(str(tmp_path / "ledger.json"), run_id="r", config=config, config_fingerprint="c", manifest=manifest)
    for x, scores in trials:
        trial = ledger.new_trial({"x": x}, {"x": x})
        mean, std = score_stats(scores)
        trial.update(state="Completed", mean=mean, std=std, fold_scores=list(scores))
    return ledger


def noisy_folds(offsets, fold_levels, jitter, seed):
    rs = random.Random(seed)
    return [[level + offset + rs.gauss(0, jitter) for level in fold_levels] for offset in offsets]


def test_top_k_does_not_fire_when_fold_levels_dwarf_consistent_gaps(tmp_path):
    """The issue's case: fold std ≈ 480, trial gaps ≈ 5, the same on every fold: clearly separated."""
    levels = [1000.0, 1500.0, 2200.0, 800.0, 1900.0]  # folds differ by hundreds (std ≈ 520)
    scores = noisy_folds([0.0, 5.0, 10.0], levels, jitter=0.5, seed=1)
    ledger = make_ledger(tmp_path, list(zip([0.2, 0.5, 0.8], scores, strict=True)))
    assert ledger.best_trial()["std"] > 400
    assert top_k_reason(ledger, 3) is None
    # the old rule (gap <= the best's raw fold std) would have fired
    best = ledger.best_trial()
    assert all(abs(t["mean"] - best["mean"]) <= best["std"] for t in ledger.completed_trials())


def test_top_k_fires_when_the_gaps_really_are_within_noise(tmp_path):
    levels = [1000.0, 1500.0, 2200.0, 800.0, 1900.0]
    noise = [[0, 0, 0, 0, 0], [15, -15, 10, -10, 0], [-10, 12, -12, 10, 0]]  # per fold, ≫ the gaps of 1 and 2
    scores = [[level + offset + e for level, e in zip(levels, eps, strict=True)]
              for offset, eps in zip([0.0, 1.0, 2.0], noise, strict=True)]
    ledger = make_ledger(tmp_path / "a", list(zip([0.2, 0.5, 0.8], scores, strict=True)))
    reason = top_k_reason(ledger, 3)
    assert reason and "standard error of paired fold differences" in reason
    assert top_k_reason(ledger, 4) is None  # fewer trials than k: no verdict


def test_paired_gap_statistic():
    gap, se = paired_gap([10.0, 20.0, 30.0], [9.0, 19.5, 28.5])
    diffs = [1.0, 0.5, 1.5]
    assert gap == pytest.approx(1.0)
    assert se == pytest.approx((sum((d - 1.0) ** 2 for d in diffs) / 2) ** 0.5 / 3 ** 0.5)
    gap, se = paired_gap([10.0, None, 30.0], [None, 19.5, 28.5])  # one shared fold: unpaired fallback
    assert gap == pytest.approx(abs(20.0 - 24.0)) and se > 0


def test_boundary_rule_on_its_own(tmp_path):
    ranges = {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0.001", "MaxValue": "10", "ScalingType": "Logarithmic"}]}
    at_edge = make_ledger(tmp_path / "a", [(0.0012, [1.0, 1.1]), (0.5, [2.0, 2.1])], ranges=ranges)
    [reason] = boundary_reasons(at_edge, 0.05)
    assert "lower boundary" in reason
    inside = make_ledger(tmp_path / "b", [(0.075, [1.0, 1.1]), (0.5, [2.0, 2.1])], ranges=ranges)
    assert boundary_reasons(inside, 0.05) == []  # 0.075 is in the middle of the log range
    assert boundary_reasons(at_edge, None) == [] and boundary_reasons(at_edge, 0) == []
    # the combined decision collects each rule's verdict
    assert refinement_reasons(at_edge, target=0.5, boundary=0.05, top_k=None)[0].startswith("best validation:rmse 1.05 misses")
