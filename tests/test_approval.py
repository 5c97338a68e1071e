"""Approval for any objective: the metric and direction follow the tuning objective, the threshold
is read in that direction, and the champion margin is explicit (0: not worse)."""

from __future__ import annotations

import pytest

from cvtune.errors import ConfigError
from cvtune.operators.registry import approval_rule
from cvtune.registry import APPROVED, PENDING, decide_approval

REGRESSION_MODEL = {"model_uri": "/m", "holdout_metrics": {"rmse": 53.7, "mae": 40.0, "r2": 0.4},
                    "cv": {"objective": {"metric": "validation:rmse", "type": "Minimize"}}}


def test_defaults_follow_the_objective_on_the_holdout():
    # before: holdout_metric="auc" was hard-wired, so a regression model waited for "no holdout auc"
    assert approval_rule(REGRESSION_MODEL, None, None) == ("rmse", False)
    assert approval_rule(REGRESSION_MODEL, "test:r2", "Maximize") == ("r2", True)
    with pytest.raises(ConfigError, match="approval_direction: must be Maximize or Minimize"):
        approval_rule(REGRESSION_MODEL, None, "Larger")
    with pytest.raises(ConfigError, match="holdout_metric: is empty"):
        approval_rule({"model_uri": "/m"}, None, None)


def test_threshold_is_read_in_the_metrics_direction():
    status, reason = decide_approval("rmse", 53.7, 70.0, None, maximize=False)
    assert status == APPROVED and "at most 70" in reason
    status, reason = decide_approval("rmse", 73.0, 70.0, None, maximize=False)
    assert status == PENDING and "misses the threshold (at most 70)" in reason
    assert decide_approval("auc", 0.93, 0.95, None, maximize=True)[0] == PENDING


def test_champion_margin_zero_is_not_worse_and_positive_margin_must_beat():
    champion = {"version": 3, "holdout_metrics": {"rmse": 50.0}}
    assert decide_approval("rmse", 50.0, None, champion, maximize=False)[0] == APPROVED  # a tie: not worse
    status, reason = decide_approval("rmse", 50.0, None, champion, maximize=False, margin=0.5)
    assert status == PENDING and "does not beat approved version 3 (50) by the margin 0.5; needs <= 49.5" in reason
    status, reason = decide_approval("rmse", 49.4, None, champion, maximize=False, margin=0.5)
    assert status == APPROVED and "beats approved version 3 (50) by at least 0.5" in reason
    assert decide_approval("auc", 0.91, None, {"version": 1, "holdout_metrics": {"auc": 0.9}}, margin=0.02)[0] == PENDING
    assert decide_approval("rmse", float("nan"), None, None, maximize=False)[0] == PENDING
    with pytest.raises(ConfigError, match="champion_margin"):
        decide_approval("rmse", 1.0, None, None, margin=-1)


def test_a_custom_objective_is_measured_on_the_holdout_without_a_second_definition():
    from cvtune.training import final_metric_definitions

    mine = [{"Name": "validation:mape", "Regex": "validation-mape: ([0-9.]+)"},
            {"Name": "test:rmse", "Regex": "holdout rmse ([0-9.]+)"}]
    definitions = {d["Name"]: d["Regex"] for d in final_metric_definitions(mine)}
    assert definitions["test:mape"] == "test-mape: ([0-9.]+)"
    assert definitions["test:rmse"] == "holdout rmse ([0-9.]+)"  # the config's own definition wins
    assert "test:auc" in definitions  # the generic script's still measured
