"""Warm start: both types, any number of parents, transitive parents, validation, narrowing."""

from __future__ import annotations

import copy
import math

import pytest

from cvtune.best import overall_best
from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from cvtune.space import SearchSpace
from cvtune.tuner import CVTuner
from cvtune.warmstart import IDENTICAL, TRANSFER, WarmStart, load_parents, narrow_ranges
from tests.fakes import ScriptedBackend
from tests.test_tuner import MANIFEST, make_config, score


def tune(tmp_path, run_id, config=None, manifest=MANIFEST, warm=None, **changes):
    backend = ScriptedBackend(score)
    tuner = CVTuner(config or make_config(tmp_path, **changes), manifest, backend, run_id=run_id,
                    artifact_root=str(tmp_path / "art"), poll_s=0, warm_start=warm)
    summary = tuner.run()
    return summary, RunLedger.load(summary["ledger"]), backend, tuner


def test_identical_counts_parents_as_observations_and_best_spans_them(tmp_path):
    _, p1, _, _ = tune(tmp_path, "p1", max_trials=5)
    _, p2, _, _ = tune(tmp_path, "p2", max_trials=5, seed=9)
    warm = WarmStart(IDENTICAL, load_parents([p1.uri, p2.uri]))
    summary, child, backend, tuner = tune(tmp_path, "child", warm=warm, max_trials=3)
    # parents' trials were not re-run: only the child's own 3 trials launched jobs
    assert len(backend.submitted) == 3 * 3
    assert all(name.startswith("child-") for name in backend.submitted)
    # the sampler saw the parents' 10 trials plus the child's 3
    assert len(tuner.proposer.study.trials) == 13
    # the best spans parents and child
    pool = p1.completed_trials() + p2.completed_trials() + child.completed_trials()
    best_mean = max(t["mean"] for t in pool)
    assert summary["best"]["mean"] == best_mean
    best = overall_best([child])
    assert best["mean"] == best_mean and best["run_id"] in {"p1", "p2", "child"}
    assert child.data["warm_start"] == {"type": IDENTICAL, "parents": [p1.uri, p2.uri], "requested": []}


def test_transfer_evaluates_parents_best_first_on_new_data(tmp_path):
    parents = [tune(tmp_path, f"p{i}", max_trials=4, seed=i)[1] for i in range(6)]  # more than SageMaker's 5
    new_data = copy.deepcopy(MANIFEST)
    new_data["fingerprint"] = "e" * 64
    warm = WarmStart(TRANSFER, load_parents([p.uri for p in parents]))
    summary, child, backend, tuner = tune(tmp_path, "child", manifest=new_data, warm=warm, max_trials=8)
    firsts = child.trials[:6]
    for parent, trial in zip(parents, firsts, strict=True):
        assert trial["source"].startswith(f"parent:{parent.run_id}#")
        assert trial["params"] == parent.best_trial()["params"]
    assert all(t["source"] is None for t in child.trials[6:])
    # parents' history reached the sampler (6 x 4 observations + the child's 8)
    assert len(tuner.proposer.study.trials) == 24 + 8
    # the best comes from this run only (parents' scores are on other data)
    assert summary["best"]["run_id"] == "child"


def test_identical_refuses_other_data_and_transitive_follows_grandparents(tmp_path):
    _, gp, _, _ = tune(tmp_path, "gp", max_trials=2)
    _, p, _, _ = tune(tmp_path, "p", max_trials=2, warm=WarmStart(IDENTICAL, load_parents([gp.uri])))
    assert [x.run_id for x in load_parents([p.uri], transitive=True)] == ["p", "gp"]
    assert [x.run_id for x in load_parents([p.uri])] == ["p"]
    other = copy.deepcopy(MANIFEST)
    other["fingerprint"] = "0" * 64
    with pytest.raises(ConfigError, match="TRANSFER_LEARNING for new data"):
        tune(tmp_path, "c", manifest=other, warm=WarmStart(IDENTICAL, load_parents([p.uri])), max_trials=1)


def test_identical_refuses_changed_code_next_to_the_entry_point(tmp_path):
    # the entry point is unchanged, a module it imports is not: not the same "training image"
    code = tmp_path / "code"
    code.mkdir()
    (code / "features.py").write_text("SCALE = 1\n")
    script = code / "train.py"
    script.write_text("# scripted\n")
    _, parent, _, _ = tune(tmp_path, "par", max_trials=2, entry_point=str(script))
    _, same, _, _ = tune(tmp_path, "same", max_trials=1, entry_point=str(script),
                         warm=WarmStart(IDENTICAL, load_parents([parent.uri])))
    assert same.status == "Completed"
    (code / "features.py").write_text("SCALE = 2\n")
    with pytest.raises(ConfigError, match=r"parents\[0\] \(run par\).*same training code.*TRANSFER_LEARNING"):
        tune(tmp_path, "changed", max_trials=1, entry_point=str(script),
             warm=WarmStart(IDENTICAL, load_parents([parent.uri])))
    _, moved_on, _, _ = tune(tmp_path, "transfer", max_trials=1, entry_point=str(script),
                             warm=WarmStart(TRANSFER, load_parents([parent.uri])))
    assert moved_on.status == "Completed"


def test_parent_validation(tmp_path):
    _, parent, _, _ = tune(tmp_path, "par", max_trials=2)
    with pytest.raises(ConfigError, match=r"parents\[0\]: no run ledger"):
        load_parents([str(tmp_path / "nope.json")])
    unfinished = RunLedger.load(parent.uri)
    unfinished.data["status"] = "InProgress"
    unfinished.uri, unfinished.token = str(tmp_path / "unfinished.json"), None  # a new file: no version to match
    unfinished.save()
    with pytest.raises(ConfigError, match="not finished"):
        load_parents([unfinished.uri])
    with pytest.raises(ConfigError, match="same objective"):
        tune(tmp_path, "c1", warm=WarmStart(TRANSFER, [parent]), max_trials=1,
             objective={"metric": "validation:score", "type": "Minimize"})
    with pytest.raises(ConfigError, match="names differ"):
        tune(tmp_path, "c2", warm=WarmStart(TRANSFER, [parent]), max_trials=1,
             static_hyperparameters={"model": "toy", "extra": 1})
    with pytest.raises(ConfigError, match="is integer in the parent but continuous"):
        tune(tmp_path, "c3", warm=WarmStart(TRANSFER, [parent]), max_trials=1, parameter_ranges={
            "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"},
                                          {"Name": "n", "MinValue": "1", "MaxValue": "5"}]})
    # a parameter may move from tuned to static
    summary, *_ = tune(tmp_path, "c4", warm=WarmStart(TRANSFER, [parent]), max_trials=2,
                       static_hyperparameters={"model": "toy", "n": 3},
                       parameter_ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]})
    assert summary["trials"] == {"Completed": 2}


def test_narrowing_in_the_parameters_own_scale():
    space = SearchSpace.from_parameter_ranges({
        "ContinuousParameterRanges": [
            {"Name": "eta", "MinValue": "0.001", "MaxValue": "1", "ScalingType": "Logarithmic"},
            {"Name": "sub", "MinValue": "0", "MaxValue": "1", "ScalingType": "Linear"},
            {"Name": "mom", "MinValue": "0.9", "MaxValue": "0.9999", "ScalingType": "ReverseLogarithmic"},
        ],
        "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "10"}],
        "CategoricalParameterRanges": [{"Name": "b", "Values": ["x", "y"]}],
    })
    ranges = narrow_ranges(space, {"eta": 0.01, "sub": 0.95, "mom": 0.99, "depth": 5, "b": "x"}, factor=0.5)
    narrowed = SearchSpace.from_parameter_ranges(ranges)
    eta = narrowed["eta"]
    # log scale: 3 decades wide → 1.5 decades around 0.01
    assert math.isclose(math.log10(eta.max_value) - math.log10(eta.min_value), 1.5)
    assert math.isclose(math.sqrt(eta.min_value * eta.max_value), 0.01)
    sub = narrowed["sub"]
    assert (sub.min_value, sub.max_value) == pytest.approx((0.5, 1.0))  # clipped at 1, width kept
    mom = narrowed["mom"]
    assert 0.9 <= mom.min_value < 0.99 < mom.max_value <= 0.9999
    assert narrowed["depth"].min_value <= 5 <= narrowed["depth"].max_value
    assert narrowed["b"].values == ("x", "y")
    with pytest.raises(ConfigError, match="factor"):
        narrow_ranges(space, {}, factor=0)


@pytest.mark.parametrize("kind", [IDENTICAL, TRANSFER])
@pytest.mark.parametrize("strategy", ["Bayesian", "Random"])
def test_a_child_with_its_parents_seed_never_repeats_their_candidates(tmp_path, kind, strategy):
    """Before: with parents of fewer than 10 trials and the same seed, the child's first trials
    were exact copies of the parent's (same candidates, same scores)."""
    _, parent, _, _ = tune(tmp_path, "parent", max_trials=5, seed=7, strategy=strategy)
    manifest = MANIFEST
    if kind == TRANSFER:
        manifest = copy.deepcopy(MANIFEST)
        manifest["fingerprint"] = "e" * 64
    _, child, _, tuner = tune(tmp_path, "child", manifest=manifest, warm=WarmStart(kind, [parent]),
                              max_trials=6, seed=7, strategy=strategy)
    parent_params = [t["params"] for t in parent.trials]
    sampled = [t for t in child.trials if t["source"] is None]  # TRANSFER's deliberate re-run of the best aside
    assert len(sampled) >= 5
    assert not [t["params"] for t in sampled if t["params"] in parent_params]


def test_exact_repeats_from_the_sampler_are_skipped():
    from cvtune.proposers import FixedProposer
    from cvtune.warmstart import WarmStartProposer

    inner = FixedProposer([{"x": 0.1}, {"x": 0.2}, {"x": 0.3}])
    proposer = WarmStartProposer(inner, [], tried=[{"x": 0.1}, {"x": 0.2}])
    assert proposer.ask().params == {"x": 0.3}
    assert proposer.skipped == 2
