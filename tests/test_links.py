"""Extra links: what a finished task links to, and that nothing is linked before it ran."""

from __future__ import annotations

import os
import textwrap

import pytest

from tests.conftest import ROOT, write_dag

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")


def test_console_links_from_the_names_in_xcom():
    from cvtune.links import (
        RunLedgerLink,
        SageMakerFinalTrainingJobLink,
        SageMakerModelPackageLink,
        SageMakerTrainingJobsLink,
        SageMakerTransformJobLink,
        TuningReportLink,
        tuning_info,
    )

    summary = {"run_id": "tune-abc", "best": {"trial": 7, "run_id": "tune-abc"}}
    info = {"view": "https://af.example.com/cvtune", "conn_id": "cvtune_default",
            **tuning_info(summary, "eu-west-1")}
    console = "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1"
    assert TuningReportLink().url(info) == "https://af.example.com/cvtune/runs/tune-abc/report"
    assert RunLedgerLink().url(info) == "https://af.example.com/cvtune/runs/tune-abc/ledger.json"
    assert SageMakerTrainingJobsLink().url(info) == f"{console}#/jobs/tune-abc-t0007-f0"
    assert SageMakerFinalTrainingJobLink().url({"region": "eu-west-1", "training_job": "train-final-x"}) == (
        f"{console}#/jobs/train-final-x"
    )
    assert SageMakerModelPackageLink().url(
        {"region": "cn-north-1", "model_package_group": "grp", "model_package_version": 3}
    ) == "https://console.amazonaws.cn/sagemaker/home?region=cn-north-1#/model-packages/grp/3"
    assert SageMakerTransformJobLink().url({"region": "us-gov-west-1", "transform_job": "bt-1"}) == (
        "https://console.amazonaws-us-gov.com/sagemaker/home?region=us-gov-west-1#/transform-jobs/bt-1"
    )
    # another connection travels with the view link; local runs have no console
    other = {"view": "/cvtune", "conn_id": "cvtune_prod", **tuning_info(summary, None)}
    assert TuningReportLink().url(other) == "/cvtune/runs/tune-abc/report?conn=cvtune_prod"
    assert SageMakerTrainingJobsLink().url(other) is None
    assert SageMakerTransformJobLink().url({"region": "eu-west-1"}) is None
    # the pipeline report is addressed by its folder under the artifact root
    assert TuningReportLink().url({"view": "/cvtune", "report": "reports/d/r1", "run_id": "x"}) == (
        "/cvtune/reports/reports/d/r1/report.html"
    )


def test_region_of_a_sagemaker_connection():
    from cvtune.links import sagemaker_region
    from cvtune.settings import Settings

    sm = Settings.from_extra({"backend": "sagemaker", "role_arn": "arn:aws:iam::123456789012:role/x",
                              "s3_prefix": "s3://bucket/cv", "region_name": "ap-south-1"})
    assert sagemaker_region(sm) == "ap-south-1"
    assert sagemaker_region(Settings.from_extra({"backend": "local"})) is None


@pytest.mark.slow
def test_links_of_a_finished_run(airflow_db, cvtune_conn):
    """Airflow computes the links when the task ends and keeps them as XCom ``_link_<class>``."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    path = write_dag("links_dag.py", textwrap.dedent(f'''
        from datetime import datetime
        from airflow.sdk import DAG
        from cvtune.operators import CVTuningOperator, FoldSplitOperator, TuningReportOperator

        with DAG("links_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds=2, seed=1)
            tune = CVTuningOperator(task_id="tune", manifest_uri=split.output["manifest"], tuning_config={CONFIG!r},
                                    max_trials=2, max_parallel_trials=2, poll_interval=0.2)
            report = TuningReportOperator(task_id="report", runs=[tune.output], best_params={{}})
            split >> tune >> report
    '''))
    bag = DagBag(dag_folder=path)
    assert bag.import_errors == {}
    dag = bag.get_dag("links_dag")
    tune_task = dag.get_task("tune")
    assert [link.name for link in tune_task.operator_extra_links] == [
        "Tuning report", "Run ledger", "SageMaker training jobs"
    ]
    run = dag.test()
    assert run.state == "success"

    def links(task_id: str) -> dict[str, str]:
        with create_session() as session:
            rows = session.execute(
                XComModel.get_many(run_id=run.run_id, dag_ids="links_dag", task_ids=task_id)
                .with_only_columns(XComModel.key, XComModel.value)
            ).all()
        return {key: XComModel.deserialize_value(type("R", (), {"value": value})()) for key, value in rows}

    run_id = links("tune")["return_value"]["run_id"]
    tune_links = links("tune")
    assert tune_links["_link_TuningReportLink"] == f"/cvtune/runs/{run_id}/report"
    assert tune_links["_link_RunLedgerLink"] == f"/cvtune/runs/{run_id}/ledger.json"
    assert tune_links["_link_SageMakerTrainingJobsLink"] == ""  # local backend: no console, no link
    report_links = links("report")
    assert report_links["_link_TuningReportLink"].startswith("/cvtune/reports/reports/links_dag/")
    assert report_links["_link_TuningReportLink"].endswith("/report.html")
    assert report_links["_link_RunLedgerLink"] == f"/cvtune/runs/{run_id}/ledger.json"
    assert not [k for k in links("split") if k.startswith("_link_")]  # an operator without links stores none
