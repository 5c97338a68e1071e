"""The run report: summary.json consistent with the ledgers, a self-contained and escaped HTML page."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys

import pytest

from cvtune import report
from cvtune.best import overall_best
from cvtune.ledger import RunLedger, score_stats
from cvtune.states import TrialState
from cvtune.store import ArtifactStore

RANGES = {
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "momentum", "MinValue": "0.5", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"},
    ],
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "10", "ScalingType": "Auto"}],
    "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", "dart"]}],
}
HOSTILE = "<script>alert('x')</script>"


def params(i: int, booster: str = "gbtree") -> dict:
    return {"eta": 0.01 * (i + 1), "subsample": 0.5 + 0.05 * i, "momentum": 0.9, "max_depth": 2 + i % 9, "booster": booster}


def make_ledger(tmp_path, run_id, trials, *, kind="tune", folds=3, objective_type="Maximize", ranges=RANGES):
    """trials: list of (state, params, fold scores) — scores only matter for Completed trials."""
    config = {
        "objective": {"metric": "validation:auc", "type": objective_type},
        "parameter_ranges": ranges,
        "strategy": "Bayesian",
        "entry_point": "train.py",  # a ledger without one is refused as damaged
        "metric_definitions": [],
    }
    manifest = {"manifest_uri": "m", "fingerprint": "f", "folds": [{}] * folds}
    ledger = RunLedger.create(
        str(tmp_path / run_id / "ledger.json"), run_id=run_id, config=config, config_fingerprint="c",
        manifest=manifest, kind=kind,
    )
    for state, p, scores in trials:
        trial = ledger.new_trial(p, {"objective": "binary:logistic", **p})
        trial["state"] = state
        if state == TrialState.COMPLETED:
            for job, s in zip(trial["fold_jobs"], scores, strict=True):
                job.update(state="Completed", objective=s, start_time=1.0, end_time=11.0, billable_seconds=10.0)
            trial["fold_scores"] = list(scores)
            trial["mean"], trial["std"] = score_stats(scores)
        elif state in (TrialState.FAILED, TrialState.STOPPED, TrialState.PRUNED):
            trial["fold_jobs"][0]["state"] = "Completed"
            trial["fold_jobs"][1]["state"] = "Failed" if state == TrialState.FAILED else "Stopped"
            for job in trial["fold_jobs"][2:]:
                job["state"] = "Cancelled"
            trial["failure_reason"] = f"fold 1 failed: {HOSTILE}"
        else:  # still running: one fold in flight
            trial["fold_jobs"][0]["state"] = "InProgress"
        trial["ended"] = None if state == TrialState.RUNNING else trial["started"] + 1
    ledger.data["status"] = "Completed"
    ledger.save()
    return RunLedger.load(ledger.uri)


def best_params(ledgers):
    """What BestParams hands over: the best completed trial across the ledgers."""
    best = overall_best(ledgers)
    return {k: best[k] for k in ("hyperparameters", "params", "mean", "std", "run_id", "trial", "objective", "ledger")}


FINAL = {"job_name": "final-1", "model_uri": "/art/final/model.tar.gz",
         "metrics": {"test:auc": 0.981, "test:logloss": 0.09, "train:auc": 0.995}}
REGISTRATION = {"model_package_group": "churn", "version": 3, "approval_status": "Approved",
                "approval_reason": "test:auc 0.981 >= 0.95", "model_uri": "/art/final/model.tar.gz"}
PREDICTIONS = {"output_uri": "/art/predictions/", "files": 2, "records": 1000}
STAGES = {"prepare": 1.5, "tune": 120.0, "train_final": 30.25, "predict": 4.0}


def summarize(ledgers, **overrides):
    kw = dict(ledgers=ledgers, best=best_params(ledgers) if any(lg.best_trial() for lg in ledgers) else {},
              final_model=FINAL, registration=REGISTRATION, predictions=PREDICTIONS, stage_seconds=STAGES)
    kw.update(overrides)
    return report.build_summary(**kw)


@pytest.fixture
def two_runs(tmp_path):
    tune = make_ledger(tmp_path, "run-tune", [
        (TrialState.COMPLETED, params(0), [0.95, 0.96, 0.97]),
        (TrialState.FAILED, params(1), None),
        (TrialState.COMPLETED, params(2, "dart"), [0.97, 0.98, 0.985]),
        (TrialState.PRUNED, params(3), None),
        (TrialState.COMPLETED, params(4), [0.96, 0.96, 0.965]),
        (TrialState.STOPPED, params(5), None),
    ])
    refine = make_ledger(tmp_path, "run-refine", [
        (TrialState.COMPLETED, params(6), [0.98, 0.99, 0.985]),
        (TrialState.FAILED, params(7), None),
        (TrialState.RUNNING, params(8), None),
    ], kind="refine")
    return [tune, refine]


def sections(page: str) -> list[str]:
    return re.findall(r"<section>.*?</section>", page, flags=re.S)


def test_summary_is_consistent_with_the_ledgers(tmp_path, two_runs):
    tune, refine = two_runs
    summary = summarize(two_runs, extra={"dag_run": "manual__1"})

    assert summary["trials"]["by_state"] == {TrialState.COMPLETED: 4, TrialState.FAILED: 2, TrialState.STOPPED: 1, TrialState.PRUNED: 1, TrialState.RUNNING: 1}
    assert summary["trials"]["total"] == len(tune.trials) + len(refine.trials) == 9
    per_run = {r["run_id"]: r for r in summary["runs"]}
    assert per_run["run-tune"]["trials"]["by_state"][TrialState.COMPLETED] == 3
    assert per_run["run-refine"]["trials"]["by_state"][TrialState.RUNNING] == 1
    assert per_run["run-refine"]["kind"] == "refine"
    assert summary["fold_jobs"] == tune.fold_jobs_launched() + refine.fold_jobs_launched()
    assert per_run["run-tune"]["fold_jobs"] == 3 * 3 + 3 * 2  # completed trials ran 3 folds, the others 2

    best = refine.trials[0]
    assert summary["best"]["run_id"] == "run-refine" and summary["best"]["trial"] == 0
    assert summary["best"]["mean"] == pytest.approx(best["mean"])
    assert summary["cv_objective"] == {
        "metric": "validation:auc", "type": "Maximize", "mean": best["mean"], "std": best["std"], "folds": 3,
    }
    assert summary["best"]["fold_scores"] == best["fold_scores"]
    assert summary["best"]["hyperparameters"]["objective"] == "binary:logistic"
    assert summary["holdout"] == {"test:auc": 0.981, "test:logloss": 0.09}
    assert summary["model"]["version"] == 3 and summary["model"]["approval_status"] == "Approved"
    assert summary["predictions_uri"] == "/art/predictions/"
    assert summary["stage_seconds"] == STAGES and summary["total_seconds"] == pytest.approx(155.75)
    assert summary["run_ids"] == ["run-tune", "run-refine"]
    assert summary["ledgers"] == [tune.uri, refine.uri]
    assert summary["extra"] == {"dag_run": "manual__1"}
    generated = dt.datetime.fromisoformat(summary["generated_at"].replace("Z", "+00:00"))
    assert generated.utcoffset() == dt.timedelta(0)

    out = report.write_report(str(tmp_path / "report"), summary, two_runs)
    assert out == {"summary": str(tmp_path / "report" / "summary.json"), "report": str(tmp_path / "report" / "report.html")}
    store = ArtifactStore()
    assert store.read_json(out["summary"]) == json.loads(json.dumps(summary))
    assert store.read_text(out["report"]).startswith("<!DOCTYPE html>")


def test_best_falls_back_to_the_ledgers_and_missing_stages_render_as_dashes(tmp_path, two_runs):
    summary = summarize(two_runs, best={}, final_model=None, registration=None, predictions=None, stage_seconds={})
    assert summary["best"]["run_id"] == "run-refine" and summary["best"]["trial"] == 0
    assert summary["holdout"] == {} and summary["model"] is None and summary["predictions_uri"] is None
    page = report.render_html(summary, two_runs)
    assert "not registered" in page and "—" in page


def test_html_is_self_contained_with_a_plot_per_section(two_runs):
    page = report.render_html(summarize(two_runs), two_runs)
    lowered = page.lower()
    for needle in ("http://", "https://", "src=", "url(", "@import", "<script", "<link", "<img", "<iframe"):
        assert needle not in lowered, needle
    plots = sections(page)[1:4]  # after the story section: history, per-fold scores, parameter space
    assert [("<svg" in s) for s in plots] == [True, True, True]
    assert "Optimization history" in plots[0] and "Per-fold" in plots[1] and "Parameter space" in plots[2]
    assert page.count("<svg") == 3
    # headline numbers and tables
    assert "0.9850" in page  # best CV mean of refine trial 0
    assert "0.9810" in page and "v3" in page and "Approved" in page
    assert "refine · trial 0 (0.9850 ± 0.0041)" in plots[1]  # per-fold legend
    assert "log scale" in plots[2] and "reverse-log scale" in plots[2] and "categorical" in plots[2]
    assert "train_final" in page and "2 m 00 s" in page
    # top trial table: best first, the tuned params to 4 significant digits
    table = page[page.index('<table class="trials">'):]
    table = table[: table.index("</table>")]
    assert table.count("<tr") == 1 + 4
    assert table.index(">0.9850<") < table.index(">0.9650<")
    assert ">0.07<" in table and ">0.8<" in table  # eta and subsample of refine trial 0


def test_hostile_values_are_escaped(tmp_path):
    hostile = {"eta": 0.05, "booster": HOSTILE, 'x"><b onmouseover=alert(1)>': 1.0}
    ranges = {
        "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.01", "MaxValue": "0.3"}],
        "CategoricalParameterRanges": [{"Name": "booster", "Values": ["gbtree", HOSTILE]}],
    }
    ledger = make_ledger(tmp_path, "run-<evil>", [
        (TrialState.COMPLETED, hostile, [0.9, 0.91, 0.92]),
        (TrialState.FAILED, {"eta": 0.1, "booster": "gbtree"}, None),
    ], ranges=ranges)
    page = report.render_html(summarize([ledger], extra={"note": HOSTILE}), [ledger])
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "<b onmouseover" not in page and "run-<evil>" not in page
    assert "run-&lt;evil&gt;" in page


@pytest.mark.parametrize(
    "case",
    ["one_trial", "all_failed", "constant_scores", "minimize", "no_ranges", "no_ledgers", "single_fold", "running_only"],
)
def test_edge_cases_render(tmp_path, case):
    kw: dict = {}
    if case == "one_trial":
        trials = [(TrialState.COMPLETED, params(0), [0.9, 0.9, 0.9])]
    elif case == "all_failed":
        trials = [(TrialState.FAILED, params(0), None), (TrialState.FAILED, params(1), None), (TrialState.STOPPED, params(2), None)]
    elif case == "constant_scores":
        trials = [(TrialState.COMPLETED, {**params(0), "eta": 0.1, "subsample": 0.7}, [0.5] * 3) for _ in range(4)]
    elif case == "minimize":
        trials = [(TrialState.COMPLETED, params(i), [0.3 - 0.01 * i] * 3) for i in range(4)] + [(TrialState.FAILED, params(9), None)]
        kw["objective_type"] = "Minimize"
    elif case == "no_ranges":  # axes inferred from the trials' own values
        trials = [(TrialState.COMPLETED, {"alpha": 0.1 * (i + 1), "kind": "ab"[i % 2]}, [0.8 + 0.01 * i] * 3) for i in range(3)]
        kw["ranges"] = {}
    elif case == "single_fold":
        trials = [(TrialState.COMPLETED, params(i), [0.7 + 0.01 * i]) for i in range(3)]
        kw["folds"] = 1
    elif case == "running_only":
        trials = [(TrialState.RUNNING, params(0), None)]
    else:
        trials = None
    ledgers = [] if trials is None else [make_ledger(tmp_path, "run1", trials, **kw)]
    summary = summarize(ledgers, final_model=None) if ledgers else summarize([], best={}, final_model=None)
    out = report.write_report(str(tmp_path / "out"), summary, ledgers)
    store = ArtifactStore()
    page = store.read_text(out["report"])
    json.dumps(store.read_json(out["summary"]))
    assert "nan" not in re.sub(r"[a-z]nan|nan[a-z]", "", page.lower())
    done = [t for lg in ledgers for t in lg.trials if t["state"] == TrialState.COMPLETED]
    if done:
        assert page.count("<svg") == 3
        assert summary["trials"]["by_state"][TrialState.COMPLETED] == len(done)
    else:
        assert "<svg" not in page and page.count("No completed trials") >= 1
        assert summary["cv_objective"]["mean"] is None
    if case == "minimize":
        assert summary["best"]["trial"] == 3 and "lower is better" in page and "best: trial 3" in page
    if case == "all_failed":
        assert summary["trials"]["by_state"] == {TrialState.COMPLETED: 0, TrialState.FAILED: 2, TrialState.STOPPED: 1, TrialState.PRUNED: 0, TrialState.RUNNING: 0}


def test_module_stays_light():
    code = (
        "import sys, cvtune.report; "
        "heavy = {'airflow', 'numpy', 'pandas', 'optuna', 'matplotlib', 'plotly', 'sklearn'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_billed_job_and_retained_time_make_the_instance_hours(tmp_path, two_runs):
    tune, refine = two_runs
    # the tune run's jobs left pools behind: retained time counts like job time, per instance
    tune.data["billing"] = {"instance_count": 2, "price_per_instance_hour": 1.0}
    for trial in tune.trials:
        for job in trial["fold_jobs"]:
            if job.get("billable_seconds"):
                job.update(retained_seconds=5.0, pool_status="Reused", pool_final=True)
    tune.save()
    summary = summarize([RunLedger.load(tune.uri), refine])
    per_run = {r["run_id"]: r for r in summary["runs"]}
    jobs = 9  # three completed trials x 3 folds, 10 s each
    assert per_run["run-tune"]["billable_seconds"] == jobs * 10 and per_run["run-tune"]["retained_seconds"] == jobs * 5
    assert per_run["run-tune"]["instance_seconds"] == 2 * jobs * 15
    assert per_run["run-tune"]["cost"] == round(2 * jobs * 15 / 3600, 4)
    assert summary["instance_seconds"] == per_run["run-tune"]["instance_seconds"] + per_run["run-refine"]["instance_seconds"]
    assert summary["instance_hours"] == round(summary["instance_seconds"] / 3600, 4)
    page = report.render_html(summary, two_runs)
    assert "instance-h" in page and "retained" in page
