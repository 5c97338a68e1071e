"""The reference DAG end to end on the SageMaker emulator, over the wire: deferrable tuning, the
final job on the fold jobs' warm pool, the registry (moto), batch transform — and a tune task that
fails mid-run and is retried, resuming its run without creating any training job twice.

AWS credentials and endpoints live in the Airflow connection ``aws_default`` only."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from tests.aws_fakes import EMU_BUCKET, ROLE, emulated_sagemaker, emulator_clients
from tests.conftest import ROOT

DAG_FILE = os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")


@pytest.mark.slow
def test_reference_dag_on_the_emulator_with_a_mid_run_retry(airflow_db, monkeypatch, tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    from cvtune.emulator.faults import Faults
    from cvtune.emulator.quotas import Quotas
    from cvtune.emulator.server import Emulator, EmulatorConfig

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    # the tune task loses its access on the 3rd DescribeTrainingJob (in the triggerer): it fails
    # with jobs in flight and its retry must resume the run
    faults = Faults(at_call={"DescribeTrainingJob": ("AccessDeniedException", 3)})
    quotas = Quotas(warm_pool={"ml.m5.large": 4})
    with Emulator(EmulatorConfig(time_scale=0.01, faults=faults, quotas=quotas)) as emu:
        emulator_clients(emu)[1].create_bucket(Bucket=EMU_BUCKET)
        emulated_sagemaker(monkeypatch, emu, conn_id="aws_default")
        monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_EMU", json.dumps({"conn_type": "cvtune", "extra": {
            "backend": "sagemaker", "artifact_root": f"s3://{EMU_BUCKET}/artifacts", "aws_conn_id": "aws_default",
            "region_name": "us-east-1", "role_arn": ROLE, "s3_prefix": f"s3://{EMU_BUCKET}/sagemaker",
            "keep_alive_period_s": 3600, "poll_interval_s": 0.2,
        }}))
        monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")

        dag = DagBag(dag_folder=DAG_FILE).get_dag("cv_tuning_pipeline")
        dag.get_task("tune").retry_delay = timedelta(0)
        run = dag.test(run_conf={
            "cvtune_conn_id": "cvtune_emu", "max_trials": 2, "max_parallel_trials": 2, "folds": 2,
            "refine_at_boundary": None, "refine_top_k": None, "warm_start_from_previous": False,
        })
        tis = {ti.task_id: ti for ti in run.get_task_instances()}
        assert run.state == "success", {t: ti.state for t, ti in tis.items()}
        assert tis["tune"].try_number == 2  # the injected failure happened, and the retry finished the run
        report = emu.report()
        jobs = emu.service.jobs

    assert report["api_errors"].get("DescribeTrainingJob:AccessDeniedException") == 1
    # nothing created twice: one CreateTrainingJob per job, no name refused as taken
    assert report["api_calls"]["CreateTrainingJob"] == len(jobs) == 2 * 2 + 1
    assert not [k for k in report["api_errors"] if k.startswith("CreateTrainingJob")]
    assert report["training_jobs"]["by_status"] == {"Completed": 5}
    assert report["transform_jobs"]["by_status"] == {"Completed": 1}
    assert report["training_jobs"]["warm_pools_reused"] >= 1 and report["training_jobs"]["billable_seconds"] > 0
    final = [j for j in jobs.values() if not j.request["TrainingJobName"].startswith("tune")]
    assert len(final) == 1 and final[0].took_pool_from is not None  # train_final landed on a fold job's pool
    assert report["api_calls"]["CreateModelPackage"] == 1  # the registry, forwarded to moto

