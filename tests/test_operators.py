"""Operators against the real core and local backend, run by Airflow (dag.test())."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.conftest import ROOT, write_dag

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")


def load_dag(path: str, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=path)
    assert bag.import_errors == {}, bag.import_errors
    return bag.get_dag(dag_id)


@pytest.mark.slow
def test_retried_tuning_task_resumes_its_run(airflow_db, cvtune_conn, tmp_path):
    """Attempt 1 dies after 3 trials; Airflow retries; attempt 2 resumes the same run."""
    snapshot = tmp_path / "at-failure.json"
    dag_file = write_dag("retry_dag.py", textwrap.dedent(f'''
        import json
        from datetime import datetime, timedelta
        from airflow.sdk import DAG
        from cvtune.operators import CVTuningOperator, FoldSplitOperator

        class FlakyTuning(CVTuningOperator):
            def make_tuner(self, context, backend, config, manifest):
                tuner = super().make_tuner(context, backend, config, manifest)
                if context["ti"].try_number == 1:
                    original, ended = tuner._end_trial, []
                    def end_trial(trial, state, reason=None):
                        original(trial, state, reason)
                        ended.append(trial["number"])
                        if len(ended) == 3:
                            tuner._save()
                            open({str(snapshot)!r}, "w").write(json.dumps(tuner.ledger.data))
                            raise RuntimeError("the worker died midway")
                    tuner._end_trial = end_trial
                return tuner

        with DAG("retry_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds=3, seed=1)
            tune = FlakyTuning(task_id="tune", manifest_uri=split.output["manifest"], tuning_config={CONFIG!r},
                               max_trials=6, max_parallel_trials=1, poll_interval=0.2,
                               retries=1, retry_delay=timedelta(seconds=0))
    '''))
    run = load_dag(dag_file, "retry_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success"
    assert tis["tune"].try_number == 2

    from cvtune.ledger import RunLedger

    before = json.loads(snapshot.read_text())
    after = RunLedger.load(os.path.join(cvtune_conn, "runs", before["run_id"], "ledger.json"))
    assert after.counts() == {"Completed": 6}
    for trial in before["trials"]:
        if trial["state"] == "Completed":
            again = after.trials[trial["number"]]
            assert again["mean"] == trial["mean"]
            assert [j["start_time"] for j in again["fold_jobs"]] == [j["start_time"] for j in trial["fold_jobs"]]
    assert sum(t["state"] == "Completed" for t in before["trials"]) == 3
    names = [j["job_name"] for t in after.trials for j in t["fold_jobs"]]
    job_dirs = [n for n in os.listdir(os.path.join(cvtune_conn, "jobs")) if not n.startswith(".")]
    assert sorted(job_dirs) == sorted(names) and len(names) == 18


def test_best_params_across_runs_and_ties(tmp_path):
    from cvtune.best import ledger_uris, overall_best
    from cvtune.errors import ConfigError
    from cvtune.ledger import RunLedger

    def ledger(run_id, results, metric="validation:auc", kind="Maximize"):
        manifest = {"manifest_uri": "m", "fingerprint": "f", "folds": [{}, {}]}
        config = {"objective": {"metric": metric, "type": kind}, "entry_point": "train.py", "metric_definitions": []}
        led = RunLedger.create(str(tmp_path / run_id / "ledger.json"), run_id=run_id, config=config,
                               config_fingerprint="c", manifest=manifest)
        for mean, std in results:
            t = led.new_trial({"x": mean}, {"static": 1, "x": mean})
            t.update(state="Completed", mean=mean, std=std)
        led.save()
        return led

    a = ledger("a", [(0.90, 0.01), (0.95, 0.02)])
    b = ledger("b", [(0.95, 0.01), (0.95, 0.01)])
    best = overall_best([a, b])
    assert (best["run_id"], best["trial"]) == ("b", 0)  # same mean: lower std, then the earlier trial
    assert best["hyperparameters"] == {"static": 1, "x": 0.95}
    assert ledger_uris([{"ledger": a.uri}, None, b.uri]) == [a.uri, b.uri]
    with pytest.raises(ConfigError, match="same objective"):
        overall_best([a, ledger("c", [(0.1, 0.0)], metric="validation:logloss", kind="Minimize")])
    with pytest.raises(ConfigError, match="runs"):
        overall_best([])


def test_registry_gate_champion_challenger(tmp_path):
    from cvtune.local.registry import LocalModelRegistry
    from cvtune.registry import APPROVED, PENDING, decide_approval

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.joblib").write_text("x")
    reg = LocalModelRegistry(str(tmp_path))

    def add(auc, threshold=0.9, key=None):
        status, reason = decide_approval("auc", auc, threshold, reg.approved("grp"), maximize=True)
        return reg.register("grp", model_uri=str(model), hyperparameters={"eta": auc}, cv_metrics={},
                            holdout_metrics={"auc": auc}, data_fingerprint="f", approval_status=status,
                            approval_reason=reason, idempotency_key=key)

    v1 = add(0.85)
    assert v1["approval_status"] == PENDING and "threshold" in v1["approval_reason"]
    v2 = add(0.95)
    assert v2["approval_status"] == APPROVED and v2["version"] == 2
    v3 = add(0.93)
    assert v3["approval_status"] == PENDING and "worse than approved version 2" in v3["approval_reason"]
    v4 = add(0.96, key="dag/run/task")
    assert v4["approval_status"] == APPROVED
    assert add(0.96, key="dag/run/task")["version"] == v4["version"]  # a retry registers nothing new
    assert [v["version"] for v in reg.versions("grp")] == [1, 2, 3, 4]
    assert reg.approved("grp")["version"] == 4
    assert os.path.exists(os.path.join(v4["model_uri"], "model.joblib"))
    # minimized metrics compare the other way round
    assert decide_approval("rmse", 2.0, 3.0, {"version": 1, "holdout_metrics": {"rmse": 1.5}}, maximize=False)[0] == PENDING


def test_batch_transform_checks_inputs_and_counts(tmp_path):
    from cvtune.errors import ConfigError, RunFailedError
    from cvtune.local.transform import batch_transform

    script = tmp_path / "serve.py"
    script.write_text(textwrap.dedent('''
        def model_fn(model_dir): return None
        def input_fn(body, content_type): return [line.split(",") for line in body.splitlines()]
        def predict_fn(rows, model): return [sum(float(v) for v in r) for r in rows][: max(1, len(rows) - DROP)]
        def output_fn(pred, accept): return "\\n".join(repr(p) for p in pred)
        DROP = 0
    '''))
    data = tmp_path / "in"
    data.mkdir()
    (data / "a.csv").write_text("x,y,target\n1,2,0\n3,4,1\n5,6,1\n")
    out = batch_transform(entry_point=str(script), model_uri=str(tmp_path), input_uri=str(data),
                          output_uri=str(tmp_path / "out"), header=True, exclude_columns=["target"], max_records=2)
    assert out["records"] == 3
    assert open(out["files"][0]["output"]).read().splitlines() == ["3.0", "7.0", "11.0"]
    assert out["files"][0]["output"].endswith("a.csv.out")
    with pytest.raises(ConfigError, match="exclude_columns"):
        batch_transform(entry_point=str(script), model_uri=str(tmp_path), input_uri=str(data),
                        output_uri=str(tmp_path / "o2"), header=True, exclude_columns=["nope"])
    script.write_text(script.read_text().replace("DROP = 0", "DROP = 1"))
    with pytest.raises(RunFailedError, match="3 input records but 2 output records"):
        batch_transform(entry_point=str(script), model_uri=str(tmp_path), input_uri=str(data),
                        output_uri=str(tmp_path / "o3"), header=True, exclude_columns=["target"], max_records=10)


def test_connection_extra_is_validated(monkeypatch):
    from cvtune.errors import ConfigError
    from cvtune.hooks.cvtune import CvtuneHook

    monkeypatch.setenv("AIRFLOW_CONN_BAD", json.dumps({"conn_type": "cvtune", "extra": {"backend": "local", "wokers": 2}}))
    with pytest.raises(ConfigError, match="connection bad extra.wokers"):
        _ = CvtuneHook("bad").settings
    monkeypatch.setenv("AIRFLOW_CONN_BAD2", json.dumps({"conn_type": "cvtune", "extra": {"backend": "k8s"}}))
    with pytest.raises(ConfigError, match="unknown backend 'k8s'"):
        _ = CvtuneHook("bad2").settings
    ok, message = CvtuneHook("bad2").test_connection()
    assert not ok and "k8s" in message
