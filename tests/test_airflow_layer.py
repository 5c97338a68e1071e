"""The Airflow layer: provider discovery, DAG import, and the reference DAG end to end with dag.test()."""

from __future__ import annotations

import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DAG_FILE = os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")
HEAVY = ("optuna", "sklearn", "xgboost", "pandas", "boto3", "botocore", "numpy")


def test_provider_info_passes_airflow_schema():
    import airflow
    import jsonschema

    from cvtune.provider_info import get_provider_info

    with open(os.path.join(os.path.dirname(airflow.__file__), "provider_info.schema.json")) as f:
        schema = json.load(f)
    jsonschema.validate(get_provider_info(), schema)


def test_provider_discovery_finds_operators_hook_and_connection_type(airflow_db):
    code = (
        "from airflow.providers_manager import ProvidersManager as P; p = P(); "
        "import json; info = p.providers['airflow-provider-cvtune']; "
        "hook = p.hooks['cvtune']; "
        "print(json.dumps({'version': info.version, 'hook': hook.hook_class_name, 'name': hook.hook_name, "
        "'ops': info.data.get('operators')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=os.environ.copy())
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["hook"] == "cvtune.hooks.cvtune.CvtuneHook"
    assert found["ops"][0]["python-modules"] == ["cvtune.operators"]
    assert found["version"] == "0.1.0"


def test_dag_imports_without_errors_and_without_heavy_modules(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.path.join(ROOT, "dags"))
    assert bag.import_errors == {}
    dag = bag.get_dag("cv_tuning_pipeline")
    assert [t.task_id for t in dag.topological_sort()] == [
        "resolve_data", "validate_inputs", "split_folds", "tune", "decide_refinement", "refine", "best_params", "train_final",
        "register", "batch_transform", "report",
    ]
    assert bag.get_dag("ingest_new_data") is not None
    assert dag.catchup is False
    params = dag.params
    for name in params:  # every param has a title and a section of the trigger form
        assert params.get_param(name).schema.get("title"), name
        assert params.get_param(name).schema.get("section") in {"Data", "Search", "Refinement", "Registry", "Connection"}, name
    # optional params really are optional: empty (null) validates, so the Trigger button stays enabled
    for name in ("partition_root", "group_column", "time_column", "refine_below", "approval_metric",
                 "approval_direction", "approval_threshold"):
        assert "null" in params.get_param(name).schema["type"], name
        params.get_param(name).resolve(None)
    # the trigger form's defaults validate, and a bad value is rejected
    params.validate()
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        params["folds"] = 1

    code = f"import runpy, sys; runpy.run_path({DAG_FILE!r}); print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_reference_dag_end_to_end(airflow_db, cvtune_conn):
    """Two runs: the first refines (conditions forced), the second skips refinement and
    warm-starts from the first one's runs through the registry."""
    from airflow.dag_processing.dagbag import DagBag

    from cvtune.best import overall_best
    from cvtune.ledger import RunLedger
    from cvtune.refinement import refinement_reasons

    dag = DagBag(dag_folder=DAG_FILE).get_dag("cv_tuning_pipeline")
    small = {"max_trials": 4, "folds": 3, "max_parallel_trials": 2, "refine_trials": 2}
    run = dag.test(run_conf={**small, "refine_below": 1.0})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}

    [summary_path] = glob.glob(os.path.join(cvtune_conn, "reports", "cv_tuning_pipeline", "*", "summary.json"))
    summary = json.load(open(summary_path))
    tune_uri, refine_uri = summary["ledgers"]
    tune, refine = RunLedger.load(tune_uri), RunLedger.load(refine_uri)
    assert refinement_reasons(tune, target=1.0, boundary=0.05, top_k=3)  # the branch's condition held
    assert refine.data["warm_start"]["type"] == "IDENTICAL_DATA_AND_ALGORITHM"
    assert refine.data["warm_start"]["parents"] == [tune_uri]
    assert tune.data.get("warm_start") is None  # the first run ever has no parent

    # summary.json agrees with the ledgers
    assert summary["trials"]["by_state"]["Completed"] == 6
    assert summary["fold_jobs"] == 18 == tune.fold_jobs_launched() + refine.fold_jobs_launched()
    best = overall_best([tune, refine])
    assert summary["best"]["hyperparameters"] == best["hyperparameters"]
    assert summary["cv_objective"]["mean"] == pytest.approx(best["mean"])
    assert {"split", "tune", "refine", "best_params", "train_final", "register", "batch_transform"} <= set(
        summary["stage_seconds"]
    )
    assert summary["holdout"]["test:auc"] > 0.9
    assert os.path.exists(os.path.join(os.path.dirname(summary_path), "report.html"))

    # the registered version carries exactly the best hyperparameters
    [version] = [json.load(open(v)) for v in glob.glob(os.path.join(cvtune_conn, "registry", "breast-cancer-xgboost", "v*.json"))]
    assert version["hyperparameters"] == best["hyperparameters"]
    assert version["approval_status"] == summary["model"]["approval_status"] == "Approved"
    assert version["metadata"]["tuning_ledgers"] == [tune_uri, refine_uri]
    assert os.path.exists(os.path.join(version["model_uri"], "model.joblib"))

    # one prediction per input row
    [out] = summary["predictions"]["files"]
    with open(out["input"] if os.path.isfile(out["input"]) else glob.glob(out["input"] + "/*")[0]) as f:
        rows = list(csv.reader(f))[1:]
    predictions = open(out["output"]).read().splitlines()
    assert len(predictions) == len(rows) == out["records"] > 0
    assert all(0.0 <= float(p) <= 1.0 for p in predictions)

    # second run: refinement conditions off → skipped; tune learns from the first run
    off = {"refine_below": None, "refine_at_boundary": None, "refine_top_k": None}
    run2 = dag.test(run_conf={**small, **off})
    states2 = {ti.task_id: ti.state for ti in run2.get_task_instances()}
    assert run2.state == "success", states2
    assert states2["refine"] == "skipped" and states2["best_params"] == "success"
    summaries = sorted(glob.glob(os.path.join(cvtune_conn, "reports", "cv_tuning_pipeline", "*", "summary.json")),
                       key=os.path.getmtime)
    second = json.load(open(summaries[-1]))
    [tune2_uri] = second["ledgers"]
    tune2 = RunLedger.load(tune2_uri)
    assert tune2.data["warm_start"]["type"] == "TRANSFER_LEARNING"
    assert tune2.data["warm_start"]["parents"] == [tune_uri, refine_uri]
    assert tune2.trials[0]["source"].startswith("parent:")
