"""Run-level completion criteria: target value, AMT's best-not-improving, noise-aware convergence."""

from __future__ import annotations

import random

import pytest

from cvtune.completion import CompletionCriteria, cv_standard_error, trials_not_improving
from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from cvtune.tuner import CVTuner
from tests.fakes import ScriptedBackend
from tests.test_tuner import make_config, manifest


def noisy_score(spec):
    """A smooth optimum near x = 0.3 plus fold noise (sd 0.02) that no candidate can beat."""
    x = float(spec.hyperparameters["x"])
    fold = int(spec.tags["cvtune:fold"])
    trial = int(spec.tags["cvtune:trial"])
    noise = random.Random(trial * 31 + fold).gauss(0, 0.02)
    return "Completed", {"validation:score": 0.9 - 0.05 * (x - 0.3) ** 2 + noise}, None


def run(tmp_path, outcome=noisy_score, run_id="cc", **changes):
    backend = ScriptedBackend(outcome, capacity=10)
    config = make_config(tmp_path, **changes)
    tuner = CVTuner(config, manifest(5), backend, run_id=run_id, artifact_root=str(tmp_path / "art"), poll_s=0)
    summary = tuner.run()
    return summary, RunLedger.load(summary["ledger"]), tuner


def test_without_criteria_the_budget_is_spent_and_named(tmp_path):
    summary, ledger, _ = run(tmp_path, max_trials=6)
    assert summary["trials"] == {"Completed": 6}
    assert summary["stop_reason"]["criterion"] == "max_trials"
    assert ledger.data["stop_reason"] == summary["stop_reason"]


def test_target_value_stops_asking_and_lets_in_flight_trials_finish(tmp_path):
    summary, ledger, _ = run(tmp_path, max_trials=40, target_value=0.85, max_parallel_trials=2)
    assert summary["stop_reason"]["criterion"] == "target_value"
    assert "reached the target 0.85" in summary["stop_reason"]["detail"]
    assert len(ledger.trials) < 40
    reached = min(t["number"] for t in ledger.trials if t["mean"] is not None and t["mean"] >= 0.85)
    # no trial starts once the target is reached; those already in flight finish
    assert all(t["started"] <= ledger.trials[reached]["ended"] for t in ledger.trials)
    assert len(ledger.trials) > reached + 1  # a later trial was in flight and finished
    assert all(t["state"] == "Completed" for t in ledger.trials)


def test_max_trials_not_improving_follows_amt_one_percent_rule():
    maximize = True
    ended = [{"state": "Completed", "mean": m} for m in (0.5, 0.6, 0.605, 0.59, 0.607)]
    # 0.605 and 0.607 beat the best but by < 1 % of it: they do not reset the count
    assert trials_not_improving(ended, maximize, 0.01) == 3
    assert trials_not_improving(ended + [{"state": "Completed", "mean": 0.62}], maximize, 0.01) == 0
    # pruned trials count as not improving; minimizing flips the direction
    assert trials_not_improving([{"state": "Completed", "mean": 1.0}, {"state": "Pruned", "mean": None}], True, 0.01) == 1
    assert trials_not_improving([{"state": "Completed", "mean": m} for m in (1.0, 0.95, 0.949)], False, 0.01) == 1


def test_max_trials_not_improving_in_a_run(tmp_path):
    summary, ledger, _ = run(tmp_path, max_trials=60, max_trials_not_improving=4, max_parallel_trials=1)
    assert summary["stop_reason"]["criterion"] == "max_trials_not_improving"
    assert len(ledger.trials) < 60
    ended = sorted(ledger.trials, key=lambda t: t["ended"])
    assert trials_not_improving(ended, True, 0.01) >= 4


def test_noise_aware_convergence_stops_a_flat_run_and_records_its_statistic(tmp_path):
    summary, ledger, _ = run(
        tmp_path, max_trials=80, max_parallel_trials=1, convergence={"rule": "noise", "min_trials": 8},
    )
    assert summary["stop_reason"]["criterion"] == "convergence"
    assert "regret bound" in summary["stop_reason"]["detail"]
    stat = ledger.data["convergence"]
    assert stat["regret_bound"] < stat["threshold"] and stat["trials"] >= 8
    assert 8 <= len(ledger.trials) < 80


def test_convergence_keeps_going_while_improvement_is_plausible(tmp_path):
    def steep(spec):  # no fold noise, a steep objective: the CV noise threshold is ~0
        x = float(spec.hyperparameters["x"])
        return "Completed", {"validation:score": 1 - 4 * (x - 0.3) ** 2}, None

    summary, ledger, _ = run(tmp_path, outcome=steep, max_trials=12, convergence={"rule": "noise", "min_trials": 5})
    assert summary["stop_reason"]["criterion"] == "max_trials" and len(ledger.trials) == 12


def test_resume_recomputes_criteria_with_the_new_config(tmp_path):
    summary, ledger, _ = run(tmp_path, max_trials=40, target_value=0.85)
    n = len(ledger.trials)
    assert summary["stop_reason"]["criterion"] == "target_value"
    # same run, same criteria: nothing to do
    summary2, ledger2, _ = run(tmp_path, max_trials=40, target_value=0.85)
    assert len(ledger2.trials) == n
    # the target dropped: the run continues to its budget
    summary3, ledger3, _ = run(tmp_path, max_trials=n + 3)
    assert len(ledger3.trials) == n + 3 and summary3["stop_reason"]["criterion"] == "max_trials"


def test_cv_standard_error_uses_nadeau_bengio_correction():
    scores = [0.8, 0.82, 0.78, 0.81, 0.79]
    import statistics

    s2 = statistics.variance(scores)
    assert cv_standard_error(scores) == pytest.approx(((1 / 5 + 1 / 4) * s2) ** 0.5)
    assert cv_standard_error(scores, train_rows=900, validation_rows=100) == pytest.approx(((1 / 5 + 1 / 9) * s2) ** 0.5)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"max_trials_not_improving": 2}, "max_trials_not_improving"),
        ({"target_value": "high"}, "target_value"),
        ({"convergence": "gp"}, "convergence.rule"),
        ({"convergence": {"rule": "noise", "min_trials": 1}}, "convergence.min_trials"),
        ({"convergence": {"rule": "noise", "window": 3}}, "convergence.window"),
        ({"min_improvement": 2}, "min_improvement"),
    ],
)
def test_bad_criteria_name_the_field(tmp_path, changes, field):
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, **changes)
    assert err.value.field == field


def test_criteria_round_trip_and_do_not_change_the_fingerprint(tmp_path):
    plain = make_config(tmp_path)
    config = make_config(tmp_path, target_value="0.9", max_trials_not_improving=5, convergence="noise")
    assert config.completion == CompletionCriteria.parse(config.to_dict())
    assert config.completion.target_value == 0.9 and config.completion.convergence.rule == "noise"
    assert config.fingerprint() == plain.fingerprint()
