"""Cross-validated hyperparameter tuning, end to end.

resolve_data → split_folds → tune → decide_refinement ─┬─ refine ─┐
                                                       └──────────┴─ best_params → train_final → register
                                                                      → batch_transform → report

Every fold of every candidate is its own training job on the backend named by the ``cvtune``
connection (local warm pool by default, SageMaker warm pools in production). ``tune`` warm-starts
(TRANSFER_LEARNING) from the runs behind the latest registered model, so nightly retuning learns
from last night; ``refine`` (IDENTICAL_DATA_AND_ALGORITHM) runs only when a refinement condition
holds. Runs: nightly at 02:00 UTC or when the ``raw data`` asset is updated; manual runs take
their data from the trigger form. Nothing heavy is imported here: operators import inside
``execute``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, Param, task
from airflow.timetables.trigger import CronTriggerTimetable

from cvtune.operators import (
    BatchTransformOperator,
    BestParamsOperator,
    FoldSplitOperator,
    RefinementDecisionOperator,
    RegisterModelOperator,
    TrainModelOperator,
    TuningReportOperator,
    WarmStartTuningOperator,
)

INCLUDE = os.environ.get("CVTUNE_INCLUDE") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "include"
)
SAMPLE_DATA = os.path.join(INCLUDE, "data", "breast_cancer.csv")
SAMPLE_CONFIG = os.path.join(INCLUDE, "configs", "breast_cancer_xgboost.yaml")
# Daily partitions `{root}/dt=YYYY-MM-DD/` (written by dags/ingest_new_data.py); empty: no partitions.
RAW_ROOT = os.environ.get("CVTUNE_RAW_DATA", "")
RAW_DATA = Asset(name="raw data", uri=f"file://{RAW_ROOT or '/cvtune/raw'}")
# Deployment-wide param defaults for the runs that have no trigger form (nightly, backfill,
# asset-triggered), e.g. a small budget on a dev box: CVTUNE_PARAM_DEFAULTS='{"max_trials": 4}'.
PARAM_DEFAULTS = json.loads(os.environ.get("CVTUNE_PARAM_DEFAULTS") or "{}")
CONN = "{{ params.cvtune_conn_id }}"
BOTH_RUNS = "{{ ti.xcom_pull(task_ids=['tune', 'refine']) }}"  # refine's is None when skipped


def with_deployment_defaults(params: dict[str, Param]) -> dict[str, Param]:
    """``params`` with the defaults named in CVTUNE_PARAM_DEFAULTS (validated against each schema)."""
    unknown = sorted(set(PARAM_DEFAULTS) - set(params))
    if unknown:
        raise ValueError(f"CVTUNE_PARAM_DEFAULTS names unknown params {unknown}; known: {sorted(params)}")
    return {
        name: Param(PARAM_DEFAULTS[name], param.description, schema=param.schema) if name in PARAM_DEFAULTS else param
        for name, param in params.items()
    }


with DAG(
    dag_id="cv_tuning_pipeline",
    description="k-fold split, cross-validated tuning with one job per fold, warm-start refinement, "
    "final training, registry, batch transform",
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=[RAW_DATA]),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    tags=["cvtune", "ml"],
    doc_md=__doc__,
    params=with_deployment_defaults({
        "data_uri": Param(SAMPLE_DATA, type="string", title="Data URI",
                          description="CSV or Parquet file or folder (local or s3://) for manual runs."),
        "partition_root": Param(RAW_ROOT, type="string", title="Partition root",
                                description="Scheduled and backfill runs read {partition_root}/dt={ds}/; "
                                "empty: they use the data URI too."),
        "target": Param("target", type="string", minLength=1, title="Target column"),
        "folds": Param(5, type="integer", minimum=2, maximum=20, title="Folds (K)",
                       description="Each candidate is trained K times, one training job per fold."),
        "split_strategy": Param("stratified", type="string", enum=["kfold", "stratified", "group", "timeseries"],
                                title="Split strategy"),
        "holdout": Param(0.2, type="number", minimum=0, maximum=0.9, title="Holdout fraction",
                         description="Rows kept out of tuning to evaluate the final model."),
        "tuning_config": Param(SAMPLE_CONFIG, type="string", title="Tuning config",
                               description="YAML/JSON file in SageMaker shapes (ParameterRanges, MetricDefinitions)."),
        "strategy": Param("Bayesian", type="string", enum=["Bayesian", "Random", "Grid", "Hyperband"],
                          title="Search strategy"),
        "max_trials": Param(20, type="integer", minimum=1, maximum=10000, title="Max trials",
                            description="Candidates to evaluate (each runs K fold jobs)."),
        "max_parallel_trials": Param(2, type="integer", minimum=1, maximum=1000, title="Max parallel trials",
                                     description="Candidates in flight at once."),
        "seed": Param(42, type="integer", minimum=0, title="Seed",
                      description="Seeds the split and the sampler: same data + seed → same folds and trials."),
        "warm_start_from_previous": Param(True, type="boolean", title="Learn from the previous run",
                                          description="Warm-start tune (TRANSFER_LEARNING) from the runs behind "
                                          "the latest registered model."),
        "refine_below": Param(None, type=["null", "number"], title="Refine when the best CV score is below",
                              description="Empty: no target."),
        "refine_at_boundary": Param(0.05, type=["null", "number"], minimum=0, maximum=0.5,
                                    title="Refine when the best is this close to a range boundary",
                                    description="Fraction of the range width; empty: off."),
        "refine_top_k": Param(3, type=["null", "integer"], minimum=2, title="Refine when the top k are within one std",
                              description="Empty: off."),
        "refine_trials": Param(8, type="integer", minimum=1, title="Refinement trials"),
        "refine_narrowing": Param(0.5, type="number", exclusiveMinimum=0, maximum=1, title="Refinement range width",
                                  description="Narrowed ranges are this fraction of the original, around the best."),
        "approval_threshold": Param(0.95, type="number", title="Registry approval threshold",
                                    description="Holdout AUC needed to approve the new model version automatically."),
        "model_package_group": Param("breast-cancer-xgboost", type="string", pattern="^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                                     title="Model package group"),
        "cvtune_conn_id": Param("cvtune_default", type="string", title="cvtune connection id",
                                description="Connection of type cvtune naming the backend and artifact root."),
    }),
) as dag:

    @task
    def resolve_data(**context) -> str:
        """Which data this run tunes on: the asset event's, the day's partition, or the form's."""
        params, dag_run = context["params"], context["dag_run"]
        events = context.get("triggering_asset_events") or {}
        for asset_events in events.values():
            for event in reversed(list(asset_events)):
                uri = (event.extra or {}).get("uri")
                if uri:
                    print(f"asset-triggered run: data from the asset event: {uri}")
                    return uri
        run_type = str(getattr(dag_run, "run_type", "")).lower()
        if params["partition_root"] and context.get("ds") and ("scheduled" in run_type or "backfill" in run_type):
            uri = f"{params['partition_root'].rstrip('/')}/dt={context['ds']}/"
            print(f"{run_type} run for {context['ds']}: data from the day's partition {uri}")
            return uri
        print(f"{run_type or 'manual'} run: data from the trigger form: {params['data_uri']}")
        return params["data_uri"]

    data_uri = resolve_data()
    split = FoldSplitOperator(
        task_id="split_folds",
        data_uri=data_uri,
        target="{{ params.target }}",
        folds="{{ params.folds }}",
        strategy="{{ params.split_strategy }}",
        holdout="{{ params.holdout }}",
        seed="{{ params.seed }}",
        cvtune_conn_id=CONN,
    )
    tune = WarmStartTuningOperator(
        task_id="tune",
        manifest_uri=split.output["manifest"],
        tuning_config="{{ params.tuning_config }}",
        strategy="{{ params.strategy }}",
        max_trials="{{ params.max_trials }}",
        max_parallel_trials="{{ params.max_parallel_trials }}",
        seed="{{ params.seed }}",
        warm_start_type="TRANSFER_LEARNING",
        previous_from_group="{{ params.model_package_group if params.warm_start_from_previous else '' }}",
        cvtune_conn_id=CONN,
    )
    decide = RefinementDecisionOperator(
        task_id="decide_refinement",
        run=tune.output,
        target="{{ params.refine_below }}",
        boundary="{{ params.refine_at_boundary }}",
        top_k="{{ params.refine_top_k }}",
        narrowing="{{ params.refine_narrowing }}",
        refine_task_id="refine",
        skip_task_id="best_params",
    )
    refine = WarmStartTuningOperator(
        task_id="refine",
        manifest_uri=split.output["manifest"],
        tuning_config="{{ params.tuning_config }}",
        parents=[tune.output],
        warm_start_type="IDENTICAL_DATA_AND_ALGORITHM",
        parameter_ranges="{{ ti.xcom_pull(task_ids='decide_refinement', key='plan')['parameter_ranges'] }}",
        strategy="Bayesian",
        max_trials="{{ params.refine_trials }}",
        max_parallel_trials="{{ params.max_parallel_trials }}",
        seed="{{ params.seed }}",
        cvtune_conn_id=CONN,
    )
    best = BestParamsOperator(
        task_id="best_params", runs=BOTH_RUNS, trigger_rule="none_failed_min_one_success", cvtune_conn_id=CONN
    )
    train = TrainModelOperator(
        task_id="train_final", manifest_uri=split.output["manifest"], hyperparameters=best.output, cvtune_conn_id=CONN
    )
    register = RegisterModelOperator(
        task_id="register",
        model=train.output,
        runs=BOTH_RUNS,
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
        runs=BOTH_RUNS,
        best_params=best.output,
        final_model=train.output,
        registration=register.output,
        predictions=transform.output,
        stages="{{ dict(split=ti.xcom_pull(task_ids='split_folds'), tune=ti.xcom_pull(task_ids='tune'), "
        "refine=ti.xcom_pull(task_ids='refine'), best_params=ti.xcom_pull(task_ids='best_params'), "
        "train_final=ti.xcom_pull(task_ids='train_final'), register=ti.xcom_pull(task_ids='register'), "
        "batch_transform=ti.xcom_pull(task_ids='batch_transform')) }}",
        cvtune_conn_id=CONN,
    )
    split >> tune >> decide >> [refine, best]
    refine >> best >> train >> register >> transform >> report
