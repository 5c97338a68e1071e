"""The tuner's scheduling rules, against a scripted backend (no processes, exact assertions)."""

from __future__ import annotations

import copy

import pytest

from cvtune.config import parse_config
from cvtune.errors import ConfigError, RunFailedError
from cvtune.ledger import RunLedger
from cvtune.store import ArtifactStore
from cvtune.tuner import CVTuner, cross_validate
from tests.fakes import ScriptedBackend

K = 3


def make_config(tmp_path, **changes):
    script = tmp_path / "train.py"
    script.write_text("# scripted\n")
    data = {
        "entry_point": str(script),
        "static_hyperparameters": {"model": "toy"},
        "objective": {"metric": "validation:score", "type": "Maximize"},
        "metric_definitions": [{"Name": "validation:score", "Regex": "score=([0-9.]+)"}],
        "parameter_ranges": {
            "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}],
            "IntegerParameterRanges": [{"Name": "n", "MinValue": "1", "MaxValue": "5"}],
        },
        "max_trials": 8,
        "max_parallel_trials": 2,
        "seed": 3,
    }
    data.update(changes)
    return parse_config(data, base_dir=None)


def manifest(k: int) -> dict:
    """A manifest of ``k`` folds whose files nobody reads (the scripted backend scores from the spec)."""
    return {
        "manifest_uri": "mem://manifest.json",
        "fingerprint": "f" * 64,
        "folds": [{"fold": i, "train_uri": f"/d/{i}/train", "validation_uri": f"/d/{i}/val"} for i in range(k)],
    }


MANIFEST = manifest(K)


def score(spec):
    """Trial quality from x (best near 0.3) plus a fold effect shared by every trial."""
    x = float(spec.hyperparameters["x"])
    fold = int(spec.tags["cvtune:fold"])
    return "Completed", {"validation:score": 1 - (x - 0.3) ** 2 + 0.01 * fold}, None


def tuner(tmp_path, backend, config=None, run_id="run1", **kw):
    return CVTuner(
        config or make_config(tmp_path), MANIFEST, backend, run_id=run_id, artifact_root=str(tmp_path / "art"), poll_s=0, **kw
    )


def test_runs_budget_and_records_every_fold(tmp_path):
    backend = ScriptedBackend(score, capacity=4)
    summary = tuner(tmp_path, backend).run()
    assert summary["trials"] == {"Completed": 8}
    assert summary["fold_jobs"] == 8 * K == len(backend.submitted) == len(set(backend.submitted))
    ledger = RunLedger.load(summary["ledger"])
    assert ledger.status == "Completed"
    for t in ledger.trials:
        expected = [1 - (t["params"]["x"] - 0.3) ** 2 + 0.01 * f for f in range(K)]
        assert t["fold_scores"] == pytest.approx(expected)
        assert t["mean"] == pytest.approx(sum(expected) / K)
        assert [j["job_name"] for j in t["fold_jobs"]] == [f"run1-t{t['number']:04d}-f{f}" for f in range(K)]
        assert t["hyperparameters"]["model"] == "toy"
    best = max(ledger.trials, key=lambda t: t["mean"])
    assert summary["best"]["trial"] == best["number"]
    assert summary["best"]["hyperparameters"] == {"model": "toy", **best["params"]}


def test_parallelism_caps(tmp_path):
    backend = ScriptedBackend(score, capacity=100)
    config = make_config(tmp_path, max_parallel_trials=2, max_parallel_jobs=4)
    tuner(tmp_path, backend, config).run()
    assert backend.max_running <= 4
    backend = ScriptedBackend(score, capacity=100)
    config = make_config(tmp_path, max_parallel_trials=1)
    tuner(tmp_path, backend, config, run_id="run2").run()
    assert backend.max_running <= K  # one trial at a time: at most its K folds


class CountingBackend(ScriptedBackend):
    """Records the jobs in flight each time the tuner waits."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.in_flight: list[int] = []

    def wait(self, names, timeout):
        self.in_flight.append(sum(1 for j in self.jobs.values() if j["desc"].status == "InProgress"))
        return super().wait(names, timeout)


def test_finished_folds_free_their_slots_for_the_next_trial(tmp_path):
    # 2 trials x 3 folds = 6 slots; the scripted backend ends one job per wait, so a trial's early
    # folds end while its last one runs: the next trial's jobs take those slots at once
    backend = CountingBackend(score, capacity=100)
    config = make_config(tmp_path, max_trials=12, max_parallel_trials=2)
    summary = tuner(tmp_path, backend, config).run()
    assert summary["trials"] == {"Completed": 12} and len(backend.submitted) == 12 * K
    assert backend.max_running == 2 * K  # never more than the run's slots
    # every wait until the last trial was asked (one job ends per wait: submitted - 6 of them) found
    # all 6 slots busy
    last_asked = backend.submitted.index("run1-t0011-f0")
    busy = backend.in_flight[: last_asked - 2 * K]
    assert busy and all(n == 2 * K for n in busy), backend.in_flight
    ledger = RunLedger.load(summary["ledger"])
    t0 = ledger.trials[0]
    assert ledger.trials[2]["started"] <= t0["ended"]  # trial 2 began before trial 0's last fold ended


def test_reproducible_with_one_trial_in_flight(tmp_path):
    config = make_config(tmp_path, max_parallel_trials=1)
    a = tuner(tmp_path, ScriptedBackend(score), config, run_id="a").run()
    b = tuner(tmp_path, ScriptedBackend(score), config, run_id="b").run()
    la, lb = RunLedger.load(a["ledger"]), RunLedger.load(b["ledger"])
    assert [t["params"] for t in la.trials] == [t["params"] for t in lb.trials]
    assert a["best"]["hyperparameters"] == b["best"]["hyperparameters"]
    other = tuner(tmp_path, ScriptedBackend(score), config.with_overrides(seed=4), run_id="c").run()
    assert [t["params"] for t in RunLedger.load(other["ledger"]).trials] != [t["params"] for t in la.trials]


def test_failing_fold_fails_trial_and_cancels_siblings(tmp_path):
    def outcome(spec):
        if spec.tags["cvtune:trial"] == "1" and spec.tags["cvtune:fold"] == "0":
            return "Failed", {}, "ValueError: boom"
        return score(spec)

    backend = ScriptedBackend(outcome, capacity=2)
    summary = tuner(tmp_path, backend, make_config(tmp_path, max_parallel_trials=1)).run()
    ledger = RunLedger.load(summary["ledger"])
    t1 = ledger.trials[1]
    assert t1["state"] == "Failed" and "fold 0" in t1["failure_reason"] and "boom" in t1["failure_reason"]
    # fold 1 was running next to fold 0 and got stopped; fold 2 never launched
    assert [j["state"] for j in t1["fold_jobs"]] == ["Failed", "Stopped", "Cancelled"]
    assert "run1-t0001-f2" not in backend.submitted
    assert summary["trials"] == {"Completed": 7, "Failed": 1}


def test_missing_objective_metric_fails_the_fold_with_a_hint(tmp_path):
    backend = ScriptedBackend(lambda spec: ("Completed", {"other": 1.0}, None))
    with pytest.raises(RunFailedError, match="max_failed_trials=3"):
        tuner(tmp_path, backend).run()
    ledger = RunLedger.load(str(tmp_path / "art" / "runs" / "run1" / "ledger.json"))
    assert ledger.status == "Failed"
    assert "'validation:score' was not found" in ledger.trials[0]["failure_reason"]
    assert ledger.counts()["Failed"] >= 3
    # a retry of a failed run fails again instead of silently carrying on
    with pytest.raises(RunFailedError, match="failed earlier"):
        tuner(tmp_path, ScriptedBackend(score)).run()


def test_resume_after_crash_launches_nothing_twice(tmp_path):
    jobs: dict = {}
    first = ScriptedBackend(score, capacity=3, jobs=jobs)
    first.crash_after_waits = 7
    with pytest.raises(KeyboardInterrupt):
        tuner(tmp_path, first).run()
    before = RunLedger.load(str(tmp_path / "art" / "runs" / "run1" / "ledger.json"))
    finished = {t["number"]: t["mean"] for t in before.trials if t["state"] == "Completed"}
    assert finished and before.status == "InProgress"

    second = ScriptedBackend(score, capacity=3, jobs=jobs)
    summary = tuner(tmp_path, second).run()
    assert not set(first.submitted) & set(second.submitted)
    assert len(first.submitted) + len(second.submitted) == 8 * K
    after = RunLedger.load(summary["ledger"])
    for number, mean in finished.items():
        assert after.trials[number]["mean"] == mean
    assert summary["trials"] == {"Completed": 8}


def test_a_resumed_driver_replays_the_sampler_only_when_it_asks_or_tells(tmp_path, monkeypatch):
    # a deferred poke that finds every job still running must not rebuild the sampler's history
    from cvtune.proposers import OptunaProposer

    observed: list = []
    real_observe = OptunaProposer.observe
    monkeypatch.setattr(OptunaProposer, "observe", lambda self, *a, **k: (observed.append(a), real_observe(self, *a, **k)))
    jobs: dict = {}
    first = ScriptedBackend(score, capacity=3, jobs=jobs)
    first.crash_after_waits = 7
    with pytest.raises(KeyboardInterrupt):
        tuner(tmp_path, first).run()
    done_before = sum(t["state"] == "Completed" for t in RunLedger.load(
        str(tmp_path / "art" / "runs" / "run1" / "ledger.json")).trials)
    assert done_before

    second = ScriptedBackend(score, capacity=3, jobs=jobs)
    poke = tuner(tmp_path, second)
    inflight = poke.start()
    assert inflight and not any(d.done for d in map(second.describe, inflight))
    assert observed == []  # nothing asked, nothing told: no replay
    while inflight:  # the jobs end: the first trial told makes the sampler see the whole run first
        inflight = poke.advance(second.wait(inflight, 0))
    summary = poke.finish()
    assert summary["trials"] == {"Completed": 8}
    study = poke.proposer.study
    assert len(study.trials) == 8 and sorted(t.number for t in study.trials) == list(range(8))
    ledger = RunLedger.load(summary["ledger"])
    assert sorted(t.value for t in study.trials) == sorted(t["mean"] for t in ledger.trials)


def test_crash_between_ledger_write_and_submit(tmp_path):
    """A job recorded as Launching but never created is launched once on resume."""
    backend = ScriptedBackend(score, capacity=3)
    t = tuner(tmp_path, backend, make_config(tmp_path, max_trials=1, max_parallel_trials=1))
    real_submit = backend.submit
    calls = []

    def crash_on_second(spec):
        calls.append(spec.name)
        if len(calls) == 2:
            raise KeyboardInterrupt("died after writing Launching")
        real_submit(spec)

    backend.submit = crash_on_second
    with pytest.raises(KeyboardInterrupt):
        t.run()
    ledger = RunLedger.load(t.uri)
    # one write-ahead for the whole batch: f0 was created, f1 and f2 were not; the resume tells them apart
    assert [j["state"] for j in ledger.trials[0]["fold_jobs"]] == ["Launching"] * 3
    backend.submit = real_submit
    summary = tuner(tmp_path, backend, make_config(tmp_path, max_trials=1, max_parallel_trials=1)).run()
    assert sorted(backend.submitted) == [f"run1-t0000-f{f}" for f in range(K)]
    assert summary["trials"] == {"Completed": 1}


def test_job_submitted_but_not_recorded_is_reattached(tmp_path):
    backend = ScriptedBackend(score, capacity=3)
    config = make_config(tmp_path, max_trials=1, max_parallel_trials=1)
    t = tuner(tmp_path, backend, config)
    real_submit = backend.submit

    def submit_then_die(spec):
        real_submit(spec)
        raise KeyboardInterrupt("died after creating the job")

    backend.submit = submit_then_die
    with pytest.raises(KeyboardInterrupt):
        t.run()
    backend.submit = real_submit
    summary = tuner(tmp_path, backend, config).run()
    assert backend.submitted.count("run1-t0000-f0") == 1
    assert summary["fold_jobs"] == K


def test_name_taken_by_a_foreign_job_is_an_error(tmp_path):
    backend = ScriptedBackend(score, capacity=3)
    from cvtune.backends.base import JobSpec

    backend.submit(JobSpec("run1-t0000-f0", "x.py", {}, {}, tags={"cvtune:run": "someone-else"}))
    with pytest.raises(RunFailedError, match="not fold 0 of trial 0 of run run1"):
        tuner(tmp_path, backend).run()


def test_resume_with_a_different_config_is_refused(tmp_path):
    tuner(tmp_path, ScriptedBackend(score), make_config(tmp_path, max_trials=2)).run()
    changed = make_config(
        tmp_path,
        max_trials=2,
        parameter_ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "2"}]},
    )
    with pytest.raises(ConfigError, match="different tuning config"):
        tuner(tmp_path, ScriptedBackend(score), changed)
    other_data = copy.deepcopy(MANIFEST)
    other_data["fingerprint"] = "0" * 64
    with pytest.raises(ConfigError, match="different data"):
        CVTuner(make_config(tmp_path, max_trials=2), other_data, ScriptedBackend(score), run_id="run1",
                artifact_root=str(tmp_path / "art"))


def test_completed_run_is_not_rerun_and_budget_can_grow(tmp_path):
    backend = ScriptedBackend(score)
    tuner(tmp_path, backend, make_config(tmp_path, max_trials=2)).run()
    n = len(backend.submitted)
    again = tuner(tmp_path, backend, make_config(tmp_path, max_trials=2)).run()
    assert len(backend.submitted) == n and again["trials"] == {"Completed": 2}


def test_grid_strategy_visits_each_point_once(tmp_path):
    config = make_config(
        tmp_path,
        strategy="Grid",
        parameter_ranges={
            "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1", "GridValues": [0.1, 0.3, 0.9]}],
            "IntegerParameterRanges": [{"Name": "n", "MinValue": "1", "MaxValue": "2"}],
        },
    )
    config = config.with_overrides(max_trials=None)
    summary = tuner(tmp_path, ScriptedBackend(score), config).run()
    ledger = RunLedger.load(summary["ledger"])
    points = {(t["params"]["x"], t["params"]["n"]) for t in ledger.trials}
    assert len(points) == 6 == len(ledger.trials)
    assert summary["best"]["params"]["x"] == 0.3


def test_ties_break_on_std_then_trial(tmp_path):
    def outcome(spec):
        trial = int(spec.tags["cvtune:trial"])
        fold = int(spec.tags["cvtune:fold"])
        spread = {0: 0.2, 1: 0.1, 2: 0.1}.get(trial, 0.0)
        base = 0.5 if trial < 3 else 0.1
        return "Completed", {"validation:score": base + (spread if fold == 0 else -spread if fold == 1 else 0)}, None

    summary = tuner(tmp_path, ScriptedBackend(outcome), make_config(tmp_path, max_trials=4)).run()
    assert summary["best"]["trial"] == 1


def test_cross_validate_one_set(tmp_path):
    out = cross_validate(
        make_config(tmp_path), MANIFEST, ScriptedBackend(score), {"x": 0.3, "n": 2},
        artifact_root=str(tmp_path / "art"), run_id="cv1", poll_s=0,
    )
    assert out["fold_scores"] == pytest.approx([1.0, 1.01, 1.02])
    assert out["mean"] == pytest.approx(1.01)
    assert out["hyperparameters"] == {"model": "toy", "x": 0.3, "n": 2}
    assert ArtifactStore().exists(out["ledger"])


def test_invalid_run_id(tmp_path):
    with pytest.raises(ConfigError, match="run_id"):
        tuner(tmp_path, ScriptedBackend(score), run_id="bad_id!")


def test_resumed_sampler_does_not_replay_earlier_candidates(tmp_path):
    config = make_config(tmp_path, max_trials=4, max_parallel_trials=1)
    tuner(tmp_path, ScriptedBackend(score), config).run()
    summary = tuner(tmp_path, ScriptedBackend(score), config.with_overrides(max_trials=8)).run()
    trials = RunLedger.load(summary["ledger"]).trials
    assert len(trials) == 8
    assert len({(t["params"]["x"], t["params"]["n"]) for t in trials}) == 8
