"""The scenario matrix: the whole reference DAG (dag.test(), small budgets) for the problems users
bring, each checked the way a user would check it: approval decided by the right metric,
predictions present (one per holdout row), no leakage between train, validation and holdout,
report written.

* regression, Minimize, with a user-written script that follows only docs/training-script.md;
* multiclass with string labels (macro F1);
* Parquet input (a folder of part files);
* group split;
* time split on an unsorted file.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

DAG_FILE = os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")
TRAIN_PY = os.path.join(ROOT, "include", "training", "train.py")
SCENARIOS = os.path.join(ROOT, "tests", "scenarios")
SMALL = {"folds": 3, "max_trials": 2, "max_parallel_trials": 2, "holdout": 0.25, "warm_start_from_previous": False,
         "refine_below": None, "refine_at_boundary": None, "refine_top_k": None, "strategy": "Random"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=DAG_FILE).get_dag("cv_tuning_pipeline")
    # dag.test(run_conf=...) leaves the conf in dag.params: each scenario starts from the defaults
    dag.scenario_defaults = {name: dag.params.get_param(name).value for name in dag.params}
    return dag


def generic_config(tmp_path, **changes) -> str:
    """A tuning config for the generic script, small and fast."""
    config = {
        "entry_point": TRAIN_PY,
        "static_hyperparameters": {"model": "logistic_regression", "task": "classification", "target": "target",
                                   "train_metrics": False},
        "objective": {"metric": "validation:auc", "type": "Maximize"},
        "metric_definitions": [{"Name": f"validation:{m}", "Regex": f"validation:{m}=([-+0-9.eE]+);"}
                               for m in ("auc", "f1", "logloss", "rmse")],
        "parameter_ranges": {"ContinuousParameterRanges": [
            {"Name": "C", "MinValue": "0.01", "MaxValue": "10", "ScalingType": "Logarithmic"}]},
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "tuning.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def run_pipeline(dag, artifacts, **conf):
    """Run the DAG; return the summary, the registered version and the split's manifest."""
    from cvtune.folds import load_manifest

    run = dag.test(run_conf={**dag.scenario_defaults, **SMALL, **conf})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    [summary_path] = glob.glob(os.path.join(artifacts, "reports", "cv_tuning_pipeline", "*", "summary.json"))
    assert os.path.exists(os.path.join(os.path.dirname(summary_path), "report.html"))  # report written
    summary = json.load(open(summary_path))
    [version_path] = glob.glob(os.path.join(artifacts, "registry", conf["model_package_group"], "v*.json"))
    version = json.load(open(version_path))
    [manifest_path] = glob.glob(os.path.join(artifacts, "folds", "cv_tuning_pipeline", "*", "manifest.json"))
    return summary, version, load_manifest(manifest_path)


def read_dir(uri: str) -> pd.DataFrame:
    files = sorted(f for f in glob.glob(os.path.join(uri, "*")) if f.endswith((".csv", ".parquet")))
    return pd.concat([pd.read_parquet(f) if f.endswith(".parquet") else pd.read_csv(f) for f in files], ignore_index=True)


def assert_no_leakage(manifest, key: str, covering: bool = True) -> None:
    """No row (by ``key``) in a fold's train and validation, nor in the holdout and any tuning set;
    ``covering``: each fold's train and validation together are every tuning row (not timeseries)."""
    holdout = set(read_dir(manifest["holdout"]["uri"])[key])
    full = set(read_dir(manifest["full_train"]["uri"])[key])
    assert holdout and not holdout & full
    for fold in manifest["folds"]:
        train, valid = set(read_dir(fold["train_uri"])[key]), set(read_dir(fold["validation_uri"])[key])
        assert not train & valid and train | valid <= full
        assert train | valid == full or not covering


def predictions(summary) -> list[list[float]]:
    rows = []
    for entry in summary["predictions"]["files"]:
        lines = open(entry["output"]).read().splitlines()
        assert len(lines) == entry["records"]
        rows += [[float(v) for v in line.split(",")] for line in lines]
    return rows


def test_regression_minimize_with_a_users_own_script(dag, cvtune_conn, tmp_path):
    rs = np.random.RandomState(0)
    n = 160
    frame = pd.DataFrame({"house_id": np.arange(n), "area": rs.uniform(30, 200, n), "rooms": rs.randint(1, 6, n)})
    frame["price"] = 1000 + 30 * frame["area"] + 200 * frame["rooms"] + rs.normal(0, 50, n)
    frame.to_csv(tmp_path / "houses.csv", index=False)
    summary, version, manifest = run_pipeline(
        dag, cvtune_conn, data_uri=str(tmp_path / "houses.csv"), target="price", split_strategy="kfold",
        tuning_config=os.path.join(SCENARIOS, "user_regression.yaml"), approval_threshold=100.0,
        model_package_group="houses",
    )
    # approval by the objective's metric on the holdout, smaller is better, threshold as a maximum
    rmse = version["holdout_metrics"]["rmse"]
    assert 20 < rmse < 100
    assert version["approval_status"] == "Approved"
    assert version["approval_reason"].startswith(f"holdout rmse {rmse:.6g} meets the threshold (at most 100)")
    assert_no_leakage(manifest, "house_id")
    preds = predictions(summary)
    assert len(preds) == manifest["holdout"]["rows"]
    holdout = read_dir(manifest["holdout"]["uri"])
    assert np.sqrt(np.mean((np.array(preds)[:, 0] - holdout["price"]) ** 2)) == pytest.approx(rmse, rel=1e-6)


def test_multiclass_with_string_labels(dag, cvtune_conn, tmp_path):
    rs = np.random.RandomState(1)
    n = 180
    x1, x2 = rs.normal(size=n), rs.normal(size=n)
    label = np.where(x1 + 0.3 * rs.normal(size=n) > 0.5, "high", np.where(x2 > 0, "mid", "low"))
    pd.DataFrame({"row": np.arange(n), "x1": x1, "x2": x2, "target": label}).to_csv(tmp_path / "d.csv", index=False)
    config = generic_config(tmp_path, objective={"metric": "validation:f1", "type": "Maximize"},
                            static_hyperparameters={"exclude_columns": "row"})
    summary, version, manifest = run_pipeline(
        dag, cvtune_conn, data_uri=str(tmp_path / "d.csv"), split_strategy="stratified", tuning_config=config,
        model_package_group="multiclass",
    )
    assert version["approval_status"] == "Approved"
    assert version["approval_reason"].startswith(f"holdout f1 {version['holdout_metrics']['f1']:.6g}")
    assert set(version["holdout_metrics"]) >= {"auc", "f1", "logloss", "accuracy"}  # macro AUC/F1, log loss
    assert_no_leakage(manifest, "row")
    preds = predictions(summary)
    assert len(preds) == manifest["holdout"]["rows"]
    assert all(len(p) == 3 and abs(sum(p) - 1) < 1e-6 for p in preds)  # a probability per class


def test_parquet_folder_input(dag, cvtune_conn, tmp_path):
    rs = np.random.RandomState(2)
    n = 150
    x = rs.normal(size=(n, 3))
    frame = pd.DataFrame({"id": np.arange(n), "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                          "target": (x[:, 0] - x[:, 1] + 0.5 * rs.normal(size=n) > 0).astype(int)})
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:70].to_parquet(folder / "part-0000.parquet", index=False)
    frame.iloc[70:].to_parquet(folder / "part-0001.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    summary, version, manifest = run_pipeline(
        dag, cvtune_conn, data_uri=str(folder), tuning_config=generic_config(
            tmp_path, static_hyperparameters={"exclude_columns": "id"}), approval_threshold=0.7,
        model_package_group="parquet",
    )
    assert manifest["output_format"] == "parquet"
    assert version["approval_status"] == "Approved" and "holdout auc" in version["approval_reason"]
    assert_no_leakage(manifest, "id")
    [entry] = summary["predictions"]["files"]
    assert entry["output"].endswith(".parquet.out")
    preds = predictions(summary)
    assert len(preds) == manifest["holdout"]["rows"] and all(0 <= p[0] <= 1 for p in preds)


def test_group_split(dag, cvtune_conn, tmp_path):
    rs = np.random.RandomState(3)
    patients = np.repeat(np.arange(30), 6)
    effect = rs.normal(size=30)[patients]  # rows of one patient are alike: leakage would flatter
    x = rs.normal(size=len(patients))
    frame = pd.DataFrame({"visit": np.arange(len(patients)), "patient": patients, "x": x + effect,
                          "target": (x + effect + 0.5 * rs.normal(size=len(patients)) > 0).astype(int)})
    frame.to_csv(tmp_path / "visits.csv", index=False)
    summary, version, manifest = run_pipeline(
        dag, cvtune_conn, data_uri=str(tmp_path / "visits.csv"), split_strategy="group", group_column="patient",
        tuning_config=generic_config(tmp_path, static_hyperparameters={"exclude_columns": "visit,patient"}),
        model_package_group="grouped",
    )
    assert manifest["split"]["group_column"] == "patient"
    assert_no_leakage(manifest, "visit")
    holdout_groups = set(read_dir(manifest["holdout"]["uri"])["patient"])
    assert not holdout_groups & set(read_dir(manifest["full_train"]["uri"])["patient"])
    for fold in manifest["folds"]:
        assert not set(read_dir(fold["train_uri"])["patient"]) & set(read_dir(fold["validation_uri"])["patient"])
    assert version["approval_reason"].startswith("holdout auc")
    assert len(predictions(summary)) == manifest["holdout"]["rows"]


def test_time_split_on_an_unsorted_file(dag, cvtune_conn, tmp_path):
    rs = np.random.RandomState(4)
    n = 150
    days = pd.date_range("2026-01-01", periods=75, freq="D").repeat(2)
    x = rs.normal(size=n)
    frame = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "x": x, "trend": np.arange(n) / n,
                          "target": 3 * x + np.arange(n) / 10 + rs.normal(0, 0.3, n)})
    frame.insert(0, "row", np.arange(n))
    frame.sample(frac=1.0, random_state=4).to_csv(tmp_path / "series.csv", index=False)  # not in time order
    config = generic_config(
        tmp_path, static_hyperparameters={"model": "ridge", "task": "regression", "exclude_columns": "row,day"},
        objective={"metric": "validation:rmse", "type": "Minimize"},
        parameter_ranges={"ContinuousParameterRanges": [
            {"Name": "alpha", "MinValue": "0.001", "MaxValue": "10", "ScalingType": "Logarithmic"}]},
    )
    summary, version, manifest = run_pipeline(
        dag, cvtune_conn, data_uri=str(tmp_path / "series.csv"), split_strategy="timeseries", time_column="day",
        tuning_config=config, model_package_group="series",
    )
    for fold in manifest["folds"]:  # every validation row later than every training row of its fold
        assert read_dir(fold["validation_uri"])["day"].min() > read_dir(fold["train_uri"])["day"].max()
    assert read_dir(manifest["holdout"]["uri"])["day"].min() > read_dir(manifest["full_train"]["uri"])["day"].max()
    assert_no_leakage(manifest, "row", covering=False)
    assert version["approval_reason"].startswith(f"holdout rmse {version['holdout_metrics']['rmse']:.6g}")
    assert len(predictions(summary)) == manifest["holdout"]["rows"]
