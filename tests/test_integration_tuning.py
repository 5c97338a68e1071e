"""End to end on the real local backend: the breast-cancer data, 5 folds, real xgboost training.

Checks the three promises of the core: tuning finds a sensible model, a CV score equals the one
computed directly with scikit-learn/xgboost on the same fold rows, and a run killed with SIGKILL
resumes without launching any job twice and without losing a finished trial.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")


def cvtune(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvtune.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("folds")
    result = cvtune("split", DATA, "--target", "target", "--folds", "5", "--holdout", "0.2", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["manifest"]


def test_tuning_finds_a_sensible_model(manifest, tmp_path):
    result = cvtune(
        "tune", "--manifest", manifest, "--config", CONFIG, "--run-id", "it-1", "--out", str(tmp_path),
        "--max-trials", "12", "--workers", "2", "--poll", "0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["trials"] == {"Completed": 12}
    assert summary["fold_jobs"] == 60
    assert 0.98 < summary["best"]["mean"] <= 1.0
    assert len(summary["best"]["fold_scores"]) == 5
    # the pool was warm for nearly every job (the two workers' first jobs are cold)
    assert summary["warm_pool_reused"] >= 55
    assert len([line for line in result.stderr.splitlines() if " complete: validation:auc " in line]) == 12

    table = cvtune("results", summary["ledger"], "--format", "csv")
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 13 and lines[0].startswith("trial,state,param:eta")


def test_cv_score_equals_direct_computation(manifest, tmp_path):
    import pandas as pd
    import xgboost
    from sklearn.metrics import roc_auc_score

    hps = {"eta": 0.1, "max_depth": 3, "subsample": 0.8, "colsample_bytree": 0.7, "min_child_weight": 1.0, "lambda": 1.0}
    result = cvtune(
        "cv", "--manifest", manifest, "--config", CONFIG, "--hyperparameters", json.dumps(hps),
        "--run-id", "cv-direct", "--out", str(tmp_path), "--workers", "2", "--poll", "0.5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)

    with open(manifest) as f:
        folds = json.load(f)["folds"]
    direct = []
    for fold in folds:
        train = pd.read_csv(os.path.join(fold["train_uri"], "data.csv"))
        valid = pd.read_csv(os.path.join(fold["validation_uri"], "data.csv"))
        model = xgboost.XGBClassifier(
            tree_method="hist", n_jobs=1, random_state=0, n_estimators=100, learning_rate=0.1, max_depth=3,
            subsample=0.8, colsample_bytree=0.7, min_child_weight=1.0, reg_lambda=1.0,
        )
        model.fit(train.drop(columns="target"), train["target"])
        direct.append(roc_auc_score(valid["target"], model.predict_proba(valid.drop(columns="target"))[:, 1]))
    assert out["fold_scores"] == pytest.approx(direct, abs=1e-12)
    assert out["mean"] == pytest.approx(sum(direct) / len(direct), abs=1e-12)


def test_sigkill_midway_then_resume(manifest, tmp_path):
    from cvtune.ledger import RunLedger

    ledger_path = tmp_path / "runs" / "kill-1" / "ledger.json"
    args = [
        "tune", "--manifest", manifest, "--config", CONFIG, "--run-id", "kill-1", "--out", str(tmp_path),
        "--max-trials", "12", "--max-parallel-trials", "2", "--workers", "2", "--poll", "0.2",
    ]
    proc = subprocess.Popen([sys.executable, "-m", "cvtune.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    completed = 0
    while time.monotonic() < deadline and completed < 4:
        time.sleep(0.1)
        if ledger_path.exists():
            try:
                completed = sum(1 for t in json.loads(ledger_path.read_text())["trials"] if t["state"] == "Completed")
            except json.JSONDecodeError:
                continue
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    before = RunLedger.load(str(ledger_path))
    assert before.status == "InProgress"
    finished = {t["number"]: (t["mean"], t["fold_scores"]) for t in before.trials if t["state"] == "Completed"}
    in_flight = [j["job_name"] for t in before.trials for j in t["fold_jobs"] if j["state"] in ("InProgress", "Launching")]
    assert len(finished) >= 4
    jobs_dir = tmp_path / "jobs"
    specs_before = {p.name: (p / "spec.json").stat().st_mtime_ns for p in jobs_dir.iterdir() if (p / "spec.json").exists()}

    result = cvtune(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming run kill-1" in result.stderr
    after = RunLedger.load(str(ledger_path))
    assert after.counts() == {"Completed": 12}
    for number, (mean, scores) in finished.items():
        assert after.trials[number]["mean"] == mean and after.trials[number]["fold_scores"] == scores
    names = [j["job_name"] for t in after.trials for j in t["fold_jobs"]]
    assert len(names) == len(set(names)) == 60
    job_dirs = sorted(p.name for p in jobs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert job_dirs == sorted(names)  # one directory per job name: nothing launched twice
    # jobs created before the kill were not created again (their spec is untouched)
    for name, mtime in specs_before.items():
        assert (jobs_dir / name / "spec.json").stat().st_mtime_ns == mtime
    # jobs that were in flight at the kill finished on their own and were re-attached
    for name in in_flight:
        trial = int(name.split("-t")[1][:4])
        assert after.trials[trial]["state"] == "Completed"
