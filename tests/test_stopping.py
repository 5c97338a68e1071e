"""Fold-level early stopping and Hyperband over folds, on the scripted backend."""

from __future__ import annotations

import pytest

from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from cvtune.stopping import EarlyStopping, HyperbandStopper
from cvtune.tuner import CVTuner
from tests.fakes import ScriptedBackend
from tests.test_tuner import make_config, manifest, score


def run(tmp_path, k=5, capacity=10, run_id="es", **changes):
    backend = ScriptedBackend(score, capacity=capacity)
    config = make_config(tmp_path, **changes)
    tuner = CVTuner(config, manifest(k), backend, run_id=run_id, artifact_root=str(tmp_path / "art"), poll_s=0)
    summary = tuner.run()
    return summary, RunLedger.load(summary["ledger"]), backend, tuner


def test_off_runs_every_fold(tmp_path):
    summary, ledger, backend, _ = run(tmp_path, max_trials=10)
    assert summary["trials"] == {"Completed": 10} and len(backend.submitted) == 50


def test_wilcoxon_prunes_after_first_wave_and_never_launches_the_rest(tmp_path):
    summary, ledger, backend, _ = run(
        tmp_path, max_trials=12, max_parallel_trials=1,
        early_stopping={"rule": "wilcoxon", "first_wave": 2, "p_threshold": 0.3},
    )
    pruned = [t for t in ledger.trials if t["state"] == "Pruned"]
    assert pruned, ledger.counts()
    for t in pruned:
        # two folds scored, the rest never launched
        assert [j["state"] for j in t["fold_jobs"]][:2] == ["Completed", "Completed"]
        assert all(j["state"] == "Cancelled" for j in t["fold_jobs"][2:])
        assert not any(j["job_name"] in backend.submitted for j in t["fold_jobs"][2:])
        assert t["fold_scores"][2:] == [None, None, None] and t["mean"] is None
        assert "wilcoxon" in t["failure_reason"] and t["partial_mean"] < summary["best"]["mean"]
    best = ledger.trials[summary["best"]["trial"]]
    assert best["state"] == "Completed" and None not in best["fold_scores"]
    assert len(backend.submitted) < 12 * 5
    # pruned trials reach the sampler with their running means
    import optuna

    study = _.proposer.study
    pruned_in_study = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned_in_study) == len(pruned) and all(t.intermediate_values for t in pruned_in_study)


def test_wilcoxon_strict_threshold_needs_more_folds(tmp_path):
    # with p < 0.1 (Optuna's default), two folds can never be significant (the smallest one-sided
    # p is 0.25): stopping happens later, stopping running jobs instead of skipping launches
    summary, ledger, backend, _ = run(
        tmp_path, k=6, max_trials=10, max_parallel_trials=1,
        early_stopping={"rule": "wilcoxon", "first_wave": 2, "p_threshold": 0.1},
    )
    pruned = [t for t in ledger.trials if t["state"] == "Pruned"]
    assert pruned
    assert all(sum(s is not None for s in t["fold_scores"]) >= 4 for t in pruned)


def test_median_prunes_against_completed_trials(tmp_path):
    summary, ledger, backend, _ = run(
        tmp_path, max_trials=12, max_parallel_trials=1, early_stopping={"rule": "median", "first_wave": 1, "min_trials": 3}
    )
    assert ledger.counts().get("Pruned", 0) > 0
    assert ledger.counts()["Completed"] >= 3
    for t in ledger.trials[:3]:
        assert t["state"] == "Completed"  # no peers yet: never pruned
    for t in ledger.trials:
        if t["state"] == "Pruned":
            assert "median" in t["failure_reason"]


def test_hyperband_rungs_over_folds(tmp_path):
    stopper = HyperbandStopper(9, EarlyStopping(reduction_factor=3))
    assert stopper.brackets == 3
    assert [stopper.rungs({"number": n}) for n in range(3)] == [[1, 3], [3], []]
    summary, ledger, backend, _ = run(tmp_path, k=9, max_trials=15, max_parallel_trials=1, strategy="Hyperband")
    counts = ledger.counts()
    assert counts.get("Pruned", 0) > 0 and counts["Completed"] > 0
    for t in ledger.trials:
        if t["state"] == "Pruned":
            scored = sum(s is not None for s in t["fold_scores"])
            assert scored in stopper.rungs(t)
            launched = sum(j["job_name"] in backend.submitted for j in t["fold_jobs"])
            assert launched == scored  # waves stop at the rung: nothing beyond it was launched
    assert len(backend.submitted) < 15 * 9


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"early_stopping": {"rule": "patience"}}, "early_stopping.rule"),
        ({"early_stopping": {"rule": "wilcoxon", "p_threshold": 2}}, "early_stopping.p_threshold"),
        ({"early_stopping": {"rule": "median", "first_wave": 0}}, "early_stopping.first_wave"),
        ({"early_stopping": {"rule": "median", "wave": 2}}, "early_stopping.wave"),
        ({"strategy": "Hyperband", "early_stopping": {"rule": "median"}}, "early_stopping.rule"),
    ],
)
def test_bad_early_stopping_settings(tmp_path, changes, field):
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, **changes)
    assert str(err.value).startswith(field)


def test_first_wave_must_leave_folds_to_stop(tmp_path):
    with pytest.raises(ConfigError, match="early_stopping.first_wave"):
        run(tmp_path, k=3, early_stopping={"rule": "median", "first_wave": 3})


def test_wilcoxon_default_threshold_can_stop_after_the_first_wave():
    assert EarlyStopping.parse("wilcoxon").p_threshold == EarlyStopping().p_threshold == 0.3
    assert EarlyStopping.parse({"rule": "wilcoxon", "p_threshold": 0.1}).p_threshold == 0.1
    assert 1 / 2**2 < EarlyStopping().p_threshold  # two folds can already be significant


def test_waves_leave_no_slot_idle_more_trials_fill_them(tmp_path):
    # 4 trials x first wave of 2 = 8 jobs; the other 12 slots go to further trials' first waves
    summary, ledger, backend, tuner = run(
        tmp_path, k=5, capacity=20, max_trials=40, max_parallel_trials=4,
        early_stopping={"rule": "wilcoxon", "first_wave": 2},
    )
    assert backend.max_running == 20
    assert sum(summary["trials"].values()) == 40 and len(backend.submitted) < 40 * 5
    # a job cap below trials x folds still holds
    _, _, capped, _ = run(tmp_path, k=5, capacity=20, max_trials=20, max_parallel_trials=4, max_parallel_jobs=6,
                          run_id="capped", early_stopping={"rule": "wilcoxon", "first_wave": 2})
    assert capped.max_running == 6
    # without waves, max_parallel_trials bounds the trials in flight as before
    _, _, off, _ = run(tmp_path, k=5, capacity=20, max_trials=8, max_parallel_trials=2, run_id="off")
    assert off.max_running == 10
