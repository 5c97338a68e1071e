"""Mistakes fail fast, once, clearly: ConfigErrors fail their task without retry, a run without a
completed trial is Failed with the reason, NaN/inf objectives are named as such."""

from __future__ import annotations

import math
import os

import pytest
from airflow.sdk.exceptions import AirflowFailException

from cvtune.errors import ConfigError, RunFailedError
from cvtune.ledger import RunLedger
from cvtune.operators.base import fail_fast_on_config_errors
from cvtune.tuner import CVTuner
from tests.conftest import ROOT
from tests.fakes import ScriptedBackend
from tests.test_tuner import MANIFEST, make_config


def test_config_errors_become_airflow_fail_exceptions_and_others_keep_their_retries():
    with pytest.raises(AirflowFailException) as caught, fail_fast_on_config_errors():
        raise ConfigError("target", "column 'label' is not in the data", "did you mean 'labels'?")
    assert isinstance(caught.value, ConfigError) and caught.value.field == "target"
    assert str(caught.value) == "target: column 'label' is not in the data — did you mean 'labels'?"
    with pytest.raises(OSError) as other, fail_fast_on_config_errors():
        raise OSError("connection reset")  # infrastructure: retried by Airflow as before
    assert not isinstance(other.value, AirflowFailException)


def test_conf_typo_is_refused_with_did_you_mean():
    from types import SimpleNamespace

    from cvtune.operators.validate import check_conf_keys

    context = {"dag_run": SimpleNamespace(conf={"max_trial": 4}), "dag": SimpleNamespace(params={"max_trials": 20, "folds": 5}),
               "params": {"max_trials": 20, "folds": 5, "max_trial": 4}}  # the run's params hold the typo too
    with pytest.raises(ConfigError, match=r"conf.max_trial: is not a param of this DAG .* did you mean 'max_trials'\?"):
        check_conf_keys(context)
    check_conf_keys({"dag_run": SimpleNamespace(conf={"max_trials": 4}), "params": {"max_trials": 20}})


def test_split_and_config_disagreements_are_caught_before_any_job():
    from cvtune.config import load_config
    from cvtune.operators.validate import check_approval_metric, check_config_against_split, check_split

    columns = ["id", "x", "price"]
    with pytest.raises(ConfigError, match="target: column 'prise' is not in the data .* did you mean 'price'"):
        check_split(columns, "prise", "kfold", None, None)
    with pytest.raises(ConfigError, match="group_column: split strategy 'group' needs a group column"):
        check_split(columns, "price", "group", None, None)
    with pytest.raises(ConfigError, match="time_column: is only used by split strategy 'timeseries'"):
        check_split(columns, "price", "kfold", None, "x")
    config = load_config(os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml"))
    with pytest.raises(ConfigError, match="static_hyperparameters.target: is 'target' but the split's target is 'price'"):
        check_config_against_split(config, columns, "price", "kfold")
    assert check_approval_metric(config, None) == "auc"
    with pytest.raises(ConfigError, match="approval_metric: nothing measures test:mape"):
        check_approval_metric(config, "mape")


def run(tmp_path, score):
    backend = ScriptedBackend(score)
    tuner = CVTuner(make_config(tmp_path, max_trials=2, max_failed_trials=5), MANIFEST, backend, run_id="r",
                    artifact_root=str(tmp_path / "art"), poll_s=0)
    with pytest.raises(RunFailedError) as caught:
        tuner.run()
    return RunLedger.load(tuner.uri), str(caught.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_no_completed_trial_ends_failed_and_nan_objectives_are_named(tmp_path, value):
    ledger, message = run(tmp_path, lambda spec: ("Completed", {"validation:score": value}, None))
    # before: the ledger said Completed, and the reason was "not found in the job log; check its Regex"
    assert ledger.status == "Failed"
    assert "no trial completed" in ledger.data["failure_reason"] and f"is {value} (not a finite number)" in message
    assert "not found in the job log" not in message


@pytest.mark.parametrize("conf", [
    {"target": "label"}, {"max_trial": 4}, {"split_strategy": "group"},
    {"tuning_config": "include/configs/missing.yaml"},
    {"target": "mean_radius", "split_strategy": "kfold"},  # the config's static target is 'target'
])
def test_a_mistake_fails_validate_inputs_once_before_any_job(airflow_db, cvtune_conn, conf):
    """Before: a wrong target failed inside split_folds and was retried after 30 s; a typo'd conf key
    was silently ignored; split_strategy group without a group column failed at split_folds; a
    missing tuning config failed tune twice, after the split; a split target the config disagrees
    with ran the whole DAG to success, tuning the config's target."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")).get_dag("cv_tuning_pipeline")
    run = dag.test(run_conf={"max_trials": 1, "folds": 2, **conf})
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert tis["validate_inputs"].state == "failed" and tis["validate_inputs"].try_number == 1  # no retry
    assert tis["split_folds"].state == "upstream_failed"
    assert not os.path.exists(os.path.join(cvtune_conn, "folds")) and not os.path.exists(os.path.join(cvtune_conn, "runs"))
