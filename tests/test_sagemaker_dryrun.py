"""The SageMaker dry run: the CLI and the operator print validated requests and send nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import botocore.session
import pytest
from botocore.validate import ParamValidator

from cvtune.sagemaker.staging import pack_sourcedir
from tests.conftest import ROOT, write_dag

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")
PREFIX = "s3://my-bucket/cvtune"
SETTINGS = {
    "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole",
    "s3_prefix": PREFIX,
    "region_name": "eu-west-1",
    "instance_count": 2,
    "max_parallel_jobs": 4,
    "tags": {"team": "ml"},
}


def no_aws_env(tmp_path) -> dict[str, str]:
    """An environment in which any AWS call would fail: no credentials anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def cvtune(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvtune.cli", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "folds"
    done = cvtune("split", DATA, "--target", "target", "--folds", "3", "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["manifest"]


def check_request(params: dict) -> None:
    shape = botocore.session.get_session().get_service_model("sagemaker").operation_model("CreateTrainingJob").input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def test_cli_dry_run_prints_valid_requests_and_the_plan(folds, tmp_path):
    settings = tmp_path / "sagemaker.json"
    settings.write_text(json.dumps(SETTINGS))
    out = tmp_path / "out"
    done = cvtune("tune", "--config", CONFIG, "--manifest", folds, "--backend", "sagemaker", "--backend-config",
                  str(settings), "--dry-run", "--run-id", "dry1", "--out", str(out), "--assume-job-s", "100",
                  "--assume-poll-s", "20", env=no_aws_env(tmp_path))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    requests = result["requests"]
    assert [r["operation"] for r in requests] == ["CreateTrainingJob"] * 3
    params = [r["params"] for r in requests]
    for p in params:
        check_request(p)
    assert [p["TrainingJobName"] for p in params] == ["dry1-t0000-f0", "dry1-t0000-f1", "dry1-t0000-f2"]
    # one trial: the same hyperparameters on every fold, JSON-encoded strings
    hps = [{k: v for k, v in p["HyperParameters"].items() if k != "sagemaker_job_name"} for p in params]
    assert hps[0] == hps[1] == hps[2]
    assert hps[0]["sagemaker_program"] == '"train.py"' and hps[0]["num_round"] == "100"
    assert hps[0]["model"] == '"xgboost"' and float(hps[0]["eta"]) > 0
    code_sha = pack_sourcedir(os.path.join(ROOT, "include", "training"))[1]
    assert json.loads(hps[0]["sagemaker_submit_directory"]) == f"{PREFIX}/code/{code_sha}/sourcedir.tar.gz"
    assert params[0]["AlgorithmSpecification"]["TrainingImage"] == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    )
    assert all(p["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800 for p in params)
    assert {"Key": "team", "Value": "ml"} in params[0]["Tags"]

    plan = result["plan"]
    assert plan["fold_jobs_total"] == 20 * 3  # max_trials x folds
    assert plan["max_concurrent_jobs"] == 4  # max_parallel_jobs caps 2 trials x 3 folds
    assert plan["max_concurrent_instances"] == 4 * 2
    assert plan["warm_pool"]["reusable"] is True and "1800 s" in plan["warm_pool"]["reason"]
    # the cost plan: 60 jobs, 4 at a time -> 15 waves; cold 180 + 100, then 14 x (10 lag + 5 warm + 100), + 10
    cost = plan["cost"]
    assert cost["assumed"] == {"start_s": 180.0, "job_s": 100.0, "warm_start_s": 5.0, "poll_s": 20.0}
    assert (cost["waves"], cost["concurrent_jobs"], cost["wall_s"]) == (15, 4, 180 + 100 + 14 * 115 + 10)
    assert cost["job_instance_hours"] == round(60 * 100 * 2 / 3600, 3)  # x instance_count 2
    assert cost["retained_instance_hours"] == round((60 - 4) * 10 * 2 / 3600, 3)
    assert cost["idle_tail_instance_hours"] == round((3 * 10 + 1800) * 2 / 3600, 3)  # one pool kept for train_final
    assert cost["peak_instances"] == 8 and "cost" not in cost
    assert cost["quotas"] == {"ml.m5.large for training job usage": 8, "ml.m5.large for training warm pool usage": 8}
    assert "plan: 60 fold jobs, 4 at a time" in done.stderr and "training warm pool usage >= 8" in done.stderr
    manifest = json.load(open(folds))
    local_dirs = {f[k] for f in manifest["folds"] for k in ("train_uri", "validation_uri")}
    uploads = {u["local"]: u["uri"] for u in plan["uploads"] if u["kind"] == "channel"}
    assert set(uploads) == local_dirs
    channel_uris = {c["DataSource"]["S3DataSource"]["S3Uri"] for p in params for c in p["InputDataConfig"]}
    assert channel_uris == set(uploads.values()) and all(u.startswith(f"{PREFIX}/data/") for u in channel_uris)
    # nothing written either: no ledger, no job directory
    assert not out.exists()


def test_cost_plan_without_releasing_and_with_a_price():
    from cvtune.sagemaker.plan import Assumptions, cost_plan

    common = dict(trials=10, folds=5, concurrency=20, instance_type="ml.c5.xlarge", instance_count=1, keep_alive_s=600,
                  job_s=120.0, assumptions=Assumptions(start_s=180, poll_s=10, warm_start_s=5))
    never = cost_plan(release_pools="never", price_per_instance_hour=0.2, **common)
    auto = cost_plan(release_pools="auto", **common)
    assert never["waves"] == 3 and never["wall_s"] == 180 + 120 + 2 * (5 + 5 + 120) + 5
    assert never["idle_tail_instance_hours"] == round(20 * 600 / 3600, 3)  # P pools x count x keep-alive
    assert auto["idle_tail_instance_hours"] == round((19 * 5 + 600) / 3600, 3)
    assert abs(never["cost"] - never["instance_hours"] * 0.2) < 0.01 and "cost" not in auto
    cold = cost_plan(release_pools="auto", **{**common, "keep_alive_s": 0})
    assert cold["quotas"]["ml.c5.xlarge for training warm pool usage"] == 0 and cold["idle_tail_instance_hours"] == 0
    assert cold["wall_s"] == 180 + 120 + 2 * (5 + 180 + 120) + 5  # every wave starts cold


def test_dry_run_errors_exit_2_naming_the_setting(folds, tmp_path):
    settings = tmp_path / "bad.json"
    settings.write_text(json.dumps({**SETTINGS, "rol_arn": "x"}))
    (tmp_path / "ok.json").write_text(json.dumps(SETTINGS))
    bad = cvtune("tune", "--config", CONFIG, "--manifest", folds, "--backend", "sagemaker", "--backend-config",
                 str(settings), "--dry-run", env=no_aws_env(tmp_path))
    assert bad.returncode == 2 and "--backend-config.rol_arn" in bad.stderr and "did you mean 'role_arn'" in bad.stderr
    neg = cvtune("tune", "--config", CONFIG, "--manifest", folds, "--backend", "sagemaker", "--backend-config",
                 str(tmp_path / "ok.json"), "--dry-run", "--assume-job-s", "-5", env=no_aws_env(tmp_path))
    assert neg.returncode == 2 and "--assume-job-s" in neg.stderr
    local = cvtune("tune", "--config", CONFIG, "--manifest", folds, "--dry-run", "--out", str(tmp_path / "o"))
    assert local.returncode == 2 and "--backend sagemaker" in local.stderr
    assert not (tmp_path / "o").exists()


def test_warm_pool_plan_says_why_not(folds):
    from cvtune.config import load_config
    from cvtune.folds import load_manifest
    from cvtune.sagemaker.config import SageMakerConfig
    from cvtune.sagemaker.dryrun import dry_run

    config, manifest = load_config(CONFIG, max_trials=2), load_manifest(folds)
    cold = SageMakerConfig.from_options({**SETTINGS, "keep_alive_period_s": 0})
    result = dry_run(config, manifest, cold, run_id="cold")
    assert result["plan"]["warm_pool"] == {
        "reusable": False, "reason": "keep_alive_period_s is 0: every fold job provisions new instances",
    }
    assert "KeepAlivePeriodInSeconds" not in result["requests"][0]["params"]["ResourceConfig"]
    assert result["plan"]["fold_jobs_total"] == 6


def test_operator_dry_run_returns_the_plan(airflow_db, tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_SM", json.dumps(
        {"conn_type": "cvtune", "extra": {"backend": "sagemaker", "artifact_root": str(root), **SETTINGS}}
    ))
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    dump = tmp_path / "plan.json"
    dag_file = write_dag("sm_dry_run_dag.py", textwrap.dedent(f'''
        import json
        from datetime import datetime
        from airflow.sdk import DAG, task
        from cvtune.operators import CVTuningOperator, FoldSplitOperator

        with DAG("sm_dry_run_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds=3, seed=1,
                                      cvtune_conn_id="cvtune_sm")
            tune = CVTuningOperator(task_id="tune", manifest_uri=split.output["manifest"], tuning_config={CONFIG!r},
                                    max_trials=5, plan_only=True, cvtune_conn_id="cvtune_sm",
                                    plan_assumptions={{"job_s": "{{{{ params.job_s }}}}", "start_s": 240}},
                                    params={{"job_s": 300}})

            @task
            def keep(plan):
                open({str(dump)!r}, "w").write(json.dumps(plan))

            keep(tune.output)
    '''))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_file)
    assert bag.import_errors == {}, bag.import_errors
    run = bag.get_dag("sm_dry_run_dag").test()
    assert run.state == "success"
    result = json.loads(dump.read_text())
    assert len(result["requests"]) == 3 and result["plan"]["fold_jobs_total"] == 15
    for request in result["requests"]:
        check_request(request["params"])
    assert result["requests"][0]["params"]["TrainingJobName"].endswith("-t0000-f0")
    assumed = result["plan"]["cost"]["assumed"]
    assert (assumed["job_s"], assumed["start_s"], assumed["warm_start_s"]) == (300, 240, 5)  # rendered, then defaults
    assert not (root / "runs").exists()  # no ledger: nothing was run


@pytest.mark.parametrize("assumptions,plan_only,field,message", [
    ({"job_secs": 300}, True, "plan_assumptions.job_secs", "use one of start_s, job_s, warm_start_s, poll_s"),
    ({"job_s": -1}, True, "plan_assumptions.job_s", "must be a non-negative number of seconds, got -1"),
    ({"start_s": "three minutes"}, True, "plan_assumptions.start_s", "got 'three minutes'"),
    ([300], True, "plan_assumptions", "expected a mapping"),
    ({"job_s": 300}, False, "plan_assumptions", "set plan_only=True"),
])
def test_operator_plan_assumptions_are_checked_before_anything_is_read(tmp_path, assumptions, plan_only, field, message):
    from cvtune.errors import ConfigError
    from cvtune.operators import CVTuningOperator

    op = CVTuningOperator(task_id="tune", manifest_uri=str(tmp_path / "missing.json"), tuning_config={},
                          plan_only=plan_only, plan_assumptions=assumptions)
    with pytest.raises(ConfigError) as err:
        op._run({})
    assert err.value.field == field and message in str(err.value)
