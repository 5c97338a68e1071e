"""Cross-validated hyperparameter tuning, end to end.

split_folds → tune → best_params → train_final → register → batch_transform → report

Every fold of every candidate is its own training job on the backend named by the ``cvtune``
connection (local warm pool by default, SageMaker warm pools in production). Nothing heavy is
imported here: the operators import their libraries inside ``execute``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from cvtune.operators import (
    BatchTransformOperator,
    BestParamsOperator,
    CVTuningOperator,
    FoldSplitOperator,
    RegisterModelOperator,
    TrainModelOperator,
    TuningReportOperator,
)

INCLUDE = os.environ.get("CVTUNE_INCLUDE") or os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "include")
SAMPLE_DATA = os.path.join(INCLUDE, "data", "breast_cancer.csv")
SAMPLE_CONFIG = os.path.join(INCLUDE, "configs", "breast_cancer_xgboost.yaml")
CONN = "{{ params.cvtune_conn_id }}"

with DAG(
    dag_id="cv_tuning_pipeline",
    description="k-fold split, cross-validated tuning with one job per fold, final training, registry, batch transform",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["cvtune", "ml"],
    doc_md=__doc__,
    params={
        "data_uri": Param(SAMPLE_DATA, type="string", title="Data URI",
                          description="CSV or Parquet file or folder, local path or s3:// URI."),
        "target": Param("target", type="string", minLength=1, title="Target column"),
        "folds": Param(5, type="integer", minimum=2, maximum=20, title="Folds (K)",
                       description="Each candidate is trained K times, one training job per fold."),
        "split_strategy": Param("stratified", type="string", enum=["kfold", "stratified", "group", "timeseries"],
                                title="Split strategy"),
        "holdout": Param(0.2, type="number", minimum=0, maximum=0.9, title="Holdout fraction",
                         description="Rows kept out of tuning to evaluate the final model."),
        "tuning_config": Param(SAMPLE_CONFIG, type="string", title="Tuning config",
                               description="YAML/JSON file in SageMaker shapes (ParameterRanges, MetricDefinitions)."),
        "strategy": Param("Bayesian", type="string", enum=["Bayesian", "Random", "Grid"], title="Search strategy"),
        "max_trials": Param(20, type="integer", minimum=1, maximum=10000, title="Max trials",
                            description="Candidates to evaluate (each runs K fold jobs)."),
        "max_parallel_trials": Param(2, type="integer", minimum=1, maximum=1000, title="Max parallel trials",
                                     description="Candidates in flight at once."),
        "seed": Param(42, type="integer", minimum=0, title="Seed",
                      description="Seeds the split and the sampler: same data + seed → same folds and trials."),
        "approval_threshold": Param(0.95, type="number", title="Registry approval threshold",
                                    description="Holdout AUC needed to approve the new model version automatically."),
        "model_package_group": Param("breast-cancer-xgboost", type="string", pattern="^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                                     title="Model package group"),
        "cvtune_conn_id": Param("cvtune_default", type="string", title="cvtune connection id",
                                description="Connection of type cvtune naming the backend and artifact root."),
    },
) as dag:
    split = FoldSplitOperator(
        task_id="split_folds",
        data_uri="{{ params.data_uri }}",
        target="{{ params.target }}",
        folds="{{ params.folds }}",
        strategy="{{ params.split_strategy }}",
        holdout="{{ params.holdout }}",
        seed="{{ params.seed }}",
        cvtune_conn_id=CONN,
    )
    tune = CVTuningOperator(
        task_id="tune",
        manifest_uri=split.output["manifest"],
        tuning_config="{{ params.tuning_config }}",
        strategy="{{ params.strategy }}",
        max_trials="{{ params.max_trials }}",
        max_parallel_trials="{{ params.max_parallel_trials }}",
        seed="{{ params.seed }}",
        cvtune_conn_id=CONN,
    )
    best = BestParamsOperator(task_id="best_params", runs=[tune.output], cvtune_conn_id=CONN)
    train = TrainModelOperator(
        task_id="train_final", manifest_uri=split.output["manifest"], hyperparameters=best.output, cvtune_conn_id=CONN
    )
    register = RegisterModelOperator(
        task_id="register",
        model=train.output,
        model_package_group="{{ params.model_package_group }}",
        holdout_metric="auc",
        approval_threshold="{{ params.approval_threshold }}",
        cvtune_conn_id=CONN,
    )
    transform = BatchTransformOperator(
        task_id="batch_transform",
        model=register.output,
        input_uri=split.output["scoring_uri"],
        header=True,
        exclude_columns=["{{ params.target }}"],
        cvtune_conn_id=CONN,
    )
    report = TuningReportOperator(
        task_id="report",
        runs=[tune.output],
        best_params=best.output,
        final_model=train.output,
        registration=register.output,
        predictions=transform.output,
        stages={
            "split": split.output,
            "tune": tune.output,
            "best_params": best.output,
            "train_final": train.output,
            "register": register.output,
            "batch_transform": transform.output,
        },
        cvtune_conn_id=CONN,
    )
    split >> tune >> best >> train >> register >> transform >> report
