"""Done when: with AWS keys only in an Airflow connection, the reference DAG runs on an s3:// root.

No AWS_* variables, no ~/.aws, no instance role: the only AWS identity is the ``aws_pipeline``
connection (keys + ``endpoint_url`` of a moto S3 server on 127.0.0.1) named by the cvtune
connection's ``aws_conn_id``. Every task reads and writes the artifacts through its platform's store,
and the local backend's workers stage fold data from S3 with the same credentials.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

from tests.conftest import ROOT, aws_connection

DAG_FILE = os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")
BUCKET = "pipeline-artifacts"


@pytest.mark.slow
def test_reference_dag_on_s3_with_keys_only_in_an_airflow_connection(
    airflow_db, s3_server, no_ambient_aws, monkeypatch, tmp_path
):
    from airflow.dag_processing.dagbag import DagBag

    from cvtune.platform import platform_for
    from cvtune.store import ArtifactStore

    s3_server.create_bucket(BUCKET)
    admin = ArtifactStore({"key": "admin", "secret": "admin", "endpoint_url": s3_server.endpoint, "region_name": "us-east-1"})
    with open(os.path.join(ROOT, "include", "data", "breast_cancer.csv"), "rb") as f:
        admin.write_bytes(f"s3://{BUCKET}/data/breast_cancer.csv", f.read())
    aws_connection(monkeypatch, "aws_pipeline", "AKIDPIPELINE", s3_server.endpoint)
    root = f"s3://{BUCKET}/cvtune"
    extra = {"backend": "local", "artifact_root": root, "aws_conn_id": "aws_pipeline", "workers": 2, "keep_alive_s": 30}
    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_DEFAULT", json.dumps({"conn_type": "cvtune", "extra": extra}))
    monkeypatch.setenv("CVTUNE_HOME", str(tmp_path / "local"))  # the local backend's job directories
    first_request = len(s3_server.requests)

    dag = DagBag(dag_folder=DAG_FILE).get_dag("cv_tuning_pipeline")
    run = dag.test(run_conf={
        "data_uri": f"s3://{BUCKET}/data/breast_cancer.csv", "max_trials": 2, "folds": 2, "max_parallel_trials": 2,
        "refine_trials": 1, "refine_below": 1.0, "warm_start_from_previous": False,
    })
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert set(states.values()) == {"success"}, states  # split, tune, refine, ..., report: all of them

    # every artifact is on S3, read back with the connection's credentials
    store = platform_for(extra).store
    [report_dir] = store.listdir(f"{root}/reports/cv_tuning_pipeline")
    summary = store.read_json(f"{root}/reports/cv_tuning_pipeline/{report_dir}/summary.json")
    assert summary["trials"]["by_state"]["Completed"] == 3
    assert all(uri.startswith(f"{root}/runs/") for uri in summary["ledgers"])
    assert store.read_text(f"{root}/reports/cv_tuning_pipeline/{report_dir}/report.html").startswith("<!DOCTYPE html>")
    [folds] = store.listdir(f"{root}/folds/cv_tuning_pipeline")
    assert store.exists(f"{root}/folds/cv_tuning_pipeline/{folds}/manifest.json")
    [version] = [n for n in store.listdir(f"{root}/registry/breast-cancer-xgboost") if n.endswith(".json") and n != "group.json"]
    assert store.read_json(f"{root}/registry/breast-cancer-xgboost/{version}")["model_uri"].startswith(f"{root}/registry/")
    [out] = summary["predictions"]["files"]
    assert out["output"].startswith(f"{root}/predictions/") and len(store.read_text(out["output"]).splitlines()) == out["records"] > 0

    # the fold jobs' channels were downloaded from S3 into the job directories (not linked)
    staged = glob.glob(str(tmp_path / "local" / "jobs" / "*" / "input" / "data" / "train" / "*.csv"))
    assert staged and not any(os.path.islink(p) for p in staged)

    # and every request to the bucket was signed with the connection's key
    keys = {key for _, path, key in s3_server.requests[first_request:] if path.startswith(f"/{BUCKET}/cvtune")}
    assert keys == {"AKIDPIPELINE"}
