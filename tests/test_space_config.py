"""Search space and tuning config: parsing SageMaker shapes and rejecting bad input."""

from __future__ import annotations

import copy
import math

import pytest

from cvtune.config import load_config, parse_config
from cvtune.errors import ConfigError
from cvtune.space import SearchSpace

RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {"Name": "momentum", "MinValue": "0.5", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"},
        {"Name": "subsample", "MinValue": 0.5, "MaxValue": 1.0},
    ],
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "10", "ScalingType": "Auto"}],
    "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}],
}


def base_config(tmp_path, **changes):
    script = tmp_path / "train.py"
    script.write_text("print('validation:auc=0.5;')\n")
    data = {
        "entry_point": str(script),
        "static_hyperparameters": {"model": "xgboost"},
        "objective": {"metric": "validation:auc", "type": "Maximize"},
        "metric_definitions": [{"Name": "validation:auc", "Regex": "validation:auc=([0-9.]+);"}],
        "parameter_ranges": copy.deepcopy(RANGES),
    }
    data.update(changes)
    return data


def test_space_round_trips_sagemaker_shape():
    space = SearchSpace.from_parameter_ranges(RANGES)
    assert space.names == ["eta", "momentum", "subsample", "max_depth", "booster"]
    again = SearchSpace.from_parameter_ranges(space.to_parameter_ranges())
    assert again == space


def test_distributions_follow_scaling():
    space = SearchSpace.from_parameter_ranges(RANGES)
    d = space.distributions()
    assert d["eta"].log and d["eta"].low == 0.01
    assert not d["subsample"].log
    # reverse-log samples 1 - x on a log scale
    assert d["momentum"].log and math.isclose(d["momentum"].low, 0.001) and math.isclose(d["momentum"].high, 0.5)
    assert not d["max_depth"].log  # Auto, ratio 5 < 100 → Linear
    internal = space.to_internal({"eta": 0.1, "momentum": 0.99, "subsample": 0.7, "max_depth": 3, "booster": "dart"})
    assert math.isclose(internal["momentum"], 0.01)
    natural = space.from_internal(internal)
    assert math.isclose(natural["momentum"], 0.99) and natural["booster"] == "dart"


def test_auto_scaling_goes_log_for_wide_positive_ranges():
    space = SearchSpace.from_parameter_ranges(
        {"ContinuousParameterRanges": [{"Name": "C", "MinValue": "0.001", "MaxValue": "100"}]}
    )
    assert space.distributions()["C"].log


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda r: r["ContinuousParameterRanges"][0].update(MinValue="0.5"), "ContinuousParameterRanges[eta]", "less than"),
        (lambda r: r["ContinuousParameterRanges"][0].update(MinValue="0"), "eta].MinValue", "MinValue > 0"),
        (lambda r: r["ContinuousParameterRanges"][1].update(MaxValue="1.0"), "momentum].MaxValue", "MaxValue < 1"),
        (lambda r: r["IntegerParameterRanges"][0].update(MinValue="2.5"), "max_depth].MinValue", "integral"),
        (lambda r: r["CategoricalParameterRanges"][0].update(Values=[]), "booster].Values", "non-empty"),
        (lambda r: r["CategoricalParameterRanges"][0].update(Values=["a", "a"]), "booster].Values", "unique"),
        (lambda r: r["ContinuousParameterRanges"][0].update(ScalingType="Exp"), "eta].ScalingType", "unknown scaling"),
        (lambda r: r["ContinuousParameterRanges"][0].update(MinValue="abc"), "eta].MinValue", "expected a number"),
        (lambda r: r["IntegerParameterRanges"].append({"Name": "eta", "MinValue": 1, "MaxValue": 2}), "[eta]", "more than one"),
        (lambda r: r.update(FooRanges=[]), "FooRanges", "unknown range type"),
        (lambda r: r["ContinuousParameterRanges"][0].update(Step=1), "eta].Step", "unknown key"),
    ],
)
def test_bad_ranges_name_the_field(mutate, field, words):
    ranges = copy.deepcopy(RANGES)
    mutate(ranges)
    with pytest.raises(ConfigError) as err:
        SearchSpace.from_parameter_ranges(ranges)
    assert field in str(err.value)
    assert words in str(err.value)


def test_name_both_static_and_tuned_is_rejected():
    with pytest.raises(ConfigError, match="both static and tuned"):
        SearchSpace.from_parameter_ranges(RANGES, static={"eta": 0.1})


def test_grid_needs_values_for_continuous(tmp_path):
    with pytest.raises(ConfigError, match="GridValues"):
        parse_config(base_config(tmp_path, strategy="Grid"), base_dir=None)
    ranges = {
        "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "GridValues": [0.01, 0.1]}],
        "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "4"}],
    }
    config = parse_config(base_config(tmp_path, strategy="Grid", parameter_ranges=ranges), base_dir=None)
    assert config.max_trials == 6  # grid size
    points = config.space.grid(seed=1)
    assert len(points) == 6 and len({tuple(sorted(p.items())) for p in points}) == 6
    assert points == config.space.grid(seed=1) and points != config.space.grid(seed=2)


def test_config_defaults_and_sagemaker_objective_shape(tmp_path):
    config = parse_config(
        base_config(tmp_path, objective={"MetricName": "validation:logloss", "Type": "Minimize"},
                    metric_definitions=[{"Name": "validation:logloss", "Regex": "validation:logloss=([0-9.]+);"}]),
        base_dir=None,
    )
    assert config.objective.type == "Minimize" and config.objective.direction == "minimize"
    assert config.strategy == "Bayesian" and config.max_trials == 20
    assert config.space.hyperparameters({"eta": 0.1}) == {"model": "xgboost", "eta": 0.1}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"objective": {"metric": "validation:rmse"}}, "metric_definitions"),
        ({"objective": {"metric": "validation:auc", "type": "Max"}}, "objective.type"),
        ({"objective": {"metric": "validation:auc", "type": "Minimize"}}, "objective.type"),  # the worst model
        ({"strategy": "Hyperopt"}, "strategy"),
        ({"max_trials": 0}, "max_trials"),
        ({"max_parallel_trials": "two"}, "max_parallel_trials"),
        ({"max_trails": 5}, "max_trails"),
        ({"entry_point": "/nope/train.py"}, "entry_point"),
        ({"metric_definitions": [{"Name": "validation:auc", "Regex": "auc="}]}, "metric_definitions[0].Regex"),
        ({"metric_definitions": [{"Name": "validation:auc", "Regex": "(["}]}, "metric_definitions[0].Regex"),
        ({"static_hyperparameters": ["a"]}, "static_hyperparameters"),
    ],
)
def test_bad_config_names_the_field(tmp_path, changes, field):
    with pytest.raises(ConfigError) as err:
        parse_config(base_config(tmp_path, **changes), base_dir=None)
    assert str(err.value).startswith(field)


def test_typo_gets_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'max_trials'"):
        parse_config(base_config(tmp_path, max_trails=5), base_dir=None)


def test_yaml_file_resolves_entry_point_relative_to_itself(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("")
    (tmp_path / "cfg").mkdir()
    cfg = tmp_path / "cfg" / "t.yaml"
    cfg.write_text(
        "entry_point: ../code/train.py\n"
        "objective: {metric: 'validation:auc'}\n"
        "metric_definitions: [{Name: 'validation:auc', Regex: 'auc=([0-9.]+)'}]\n"
        "parameter_ranges: {IntegerParameterRanges: [{Name: d, MinValue: 1, MaxValue: 3}]}\n"
    )
    config = load_config(str(cfg), max_trials=7)
    assert config.entry_point == str(tmp_path / "code" / "train.py")
    assert config.max_trials == 7


def test_shipped_config_is_valid():
    config = load_config("include/configs/breast_cancer_xgboost.yaml")
    assert config.objective.metric == "validation:auc"
    assert set(config.space.names) == {"eta", "max_depth", "min_child_weight", "subsample", "colsample_bytree", "lambda"}


def test_fingerprint_ignores_budget_but_not_ranges(tmp_path):
    a = parse_config(base_config(tmp_path), base_dir=None)
    b = a.with_overrides(max_trials=50)
    assert a.fingerprint() == b.fingerprint()
    ranges = copy.deepcopy(RANGES)
    ranges["ContinuousParameterRanges"][0]["MaxValue"] = "0.4"
    c = parse_config(base_config(tmp_path, parameter_ranges=ranges), base_dir=None)
    assert a.fingerprint() != c.fingerprint()
