"""Cross-validated hyperparameter tuning, end to end.

```text
resolve_data → validate_inputs → split_folds → tune → decide_refinement ─┬─ refine ─┐
                                                                         └──────────┴─ best_params
    → train_final → register → batch_transform → report
```

Every fold of every candidate is its own training job on the backend named by the ``cvtune``
connection (local warm pool by default, SageMaker warm pools in production). ``tune`` warm-starts
(TRANSFER_LEARNING) from the runs behind the latest registered model, so nightly retuning learns
from last night; ``refine`` (IDENTICAL_DATA_AND_ALGORITHM) runs only when a refinement condition
holds. ``validate_inputs`` checks the conf, the tuning config and the data's header before
anything is split or trained; its errors fail the run at once, without retries. Runs: nightly at
02:00 UTC (skipped while the day's partition has not landed) or when the ``raw data`` asset is
updated (every partition of the events merged into the run is tuned); manual runs take their data
from the trigger form. Params and tuning-config keys: docs/configuration.md; writing your own
training script: docs/training-script.md. Nothing heavy is imported here: operators import inside
``execute``.

The tuning and report tasks link to the run's report and ledger in the cvtune view
(``/cvtune`` on the api-server); on SageMaker, the tasks link to their jobs in the console.
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
    ValidateInputsOperator,
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
# the trigger form's sections
DATA, SEARCH, REFINEMENT, REGISTRY, CONNECTION = "Data", "Search", "Refinement", "Registry", "Connection"
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
        # -- data ---------------------------------------------------------------------------
        "data_uri": Param(SAMPLE_DATA, type="string", minLength=1, title="Data URI", section=DATA,
                          description="CSV or Parquet file or folder of part files (local or s3://) for manual runs."),
        "partition_root": Param(RAW_ROOT or None, type=["null", "string"], title="Partition root", section=DATA,
                                description="Scheduled and backfill runs read {partition_root}/dt={ds}/; "
                                "empty: they use the data URI too."),
        "target": Param("target", type="string", minLength=1, title="Target column", section=DATA),
        "folds": Param(5, type="integer", minimum=2, maximum=20, title="Folds (K)", section=DATA,
                       description="Each candidate is trained K times, one training job per fold."),
        "split_strategy": Param("stratified", type="string", enum=["kfold", "stratified", "group", "timeseries"],
                                title="Split strategy", section=DATA,
                                description="stratified: classification; kfold: regression; group: rows sharing "
                                "the group column stay in one fold; timeseries: validation always later than training."),
        "group_column": Param(None, type=["null", "string"], title="Group column", section=DATA,
                              description="Split strategy group: rows with the same value stay in one fold "
                              "(patient, customer...). Empty otherwise."),
        "time_column": Param(None, type=["null", "string"], title="Time column", section=DATA,
                             description="Split strategy timeseries: folds follow this column (numbers or dates); "
                             "empty: the file's row order."),
        "holdout": Param(0.2, type="number", minimum=0, maximum=0.9, title="Holdout fraction", section=DATA,
                         description="Rows kept out of tuning to evaluate the final model."),
        "seed": Param(42, type="integer", minimum=0, title="Seed", section=DATA,
                      description="Seeds the split and the sampler: same data + seed → same folds and trials."),
        # -- search -------------------------------------------------------------------------
        "tuning_config": Param(SAMPLE_CONFIG, type="string", minLength=1, title="Tuning config", section=SEARCH,
                               description="YAML/JSON file in SageMaker shapes (ParameterRanges, MetricDefinitions); "
                               "keys in docs/configuration.md."),
        "strategy": Param("Bayesian", type="string", enum=["Bayesian", "Random", "Grid", "Hyperband"],
                          title="Search strategy", section=SEARCH),
        "max_trials": Param(20, type="integer", minimum=1, maximum=10000, title="Max trials", section=SEARCH,
                            description="Candidates to evaluate (each runs K fold jobs)."),
        "max_parallel_trials": Param(2, type="integer", minimum=1, maximum=1000, title="Max parallel trials",
                                     section=SEARCH, description="Candidates started together; the run keeps this × K fold jobs busy."),
        "target_value": Param(None, type=["null", "number"], title="Stop at this best CV score", section=SEARCH,
                              description="Run-level completion: no new trials once reached. Empty: off."),
        "max_trials_not_improving": Param(None, type=["null", "integer"], minimum=3, section=SEARCH,
                                          title="Stop after N trials without a 1 % improvement",
                                          description="SageMaker AMT's BestObjectiveNotImproving. Empty: off."),
        "convergence": Param("off", type="string", enum=["off", "noise"], title="Stop on convergence", section=SEARCH,
                             description="noise: stop once the improvement still plausible from more trials is "
                             "below the best trial's CV noise (docs/completion.md)."),
        "warm_start_from_previous": Param(True, type="boolean", title="Learn from the previous run", section=SEARCH,
                                          description="Warm-start tune (TRANSFER_LEARNING) from the runs behind "
                                          "the latest registered model."),
        # -- refinement ---------------------------------------------------------------------
        "refine_below": Param(None, type=["null", "number"], title="Refine when the best CV score misses",
                              section=REFINEMENT, description="Below this when maximizing, above it when "
                              "minimizing. Empty: no target."),
        "refine_at_boundary": Param(0.05, type=["null", "number"], minimum=0, maximum=0.5, section=REFINEMENT,
                                    title="Refine when the best is this close to a range boundary",
                                    description="Fraction of the range width; empty: off."),
        "refine_top_k": Param(3, type=["null", "integer"], minimum=2, section=REFINEMENT,
                              title="Refine when the top k are within noise",
                              description="The k best trials' mean scores differ from the best by no more than "
                              "the standard error of their paired fold differences. Empty: off."),
        "refine_trials": Param(8, type="integer", minimum=1, title="Refinement trials", section=REFINEMENT),
        "refine_narrowing": Param(0.5, type="number", exclusiveMinimum=0, maximum=1, section=REFINEMENT,
                                  title="Refinement range width",
                                  description="Narrowed ranges are this fraction of the original, around the best."),
        # -- registry -----------------------------------------------------------------------
        "approval_metric": Param(None, type=["null", "string"], title="Approval metric", section=REGISTRY,
                                 description="Holdout metric that decides approval (auc, rmse, f1...). Empty: the "
                                 "tuning objective's metric on the holdout (validation:X → test:X)."),
        "approval_direction": Param(None, type=["null", "string"], enum=[None, "Maximize", "Minimize"],
                                    title="Approval direction", section=REGISTRY,
                                    description="Is larger better? Empty: the tuning objective's type."),
        "approval_threshold": Param(None, type=["null", "number"], title="Approval threshold", section=REGISTRY,
                                    description="Holdout value needed for automatic approval: a minimum when "
                                    "maximizing, a maximum when minimizing. Empty: no threshold."),
        "champion_margin": Param(0.0, type="number", minimum=0, title="Margin over the champion", section=REGISTRY,
                                 description="How much better than the approved version the new one must be; "
                                 "0: not worse is enough."),
        "model_package_group": Param("breast-cancer-xgboost", type="string", pattern="^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$",
                                     title="Model package group", section=REGISTRY),
        # -- connection ---------------------------------------------------------------------
        "cvtune_conn_id": Param("cvtune_default", type="string", minLength=1, title="cvtune connection id",
                                section=CONNECTION,
                                description="Connection of type cvtune naming the backend and artifact root."),
    }),
) as dag:

    @task
    def resolve_data(**context) -> str | list[str]:
        """Which data this run tunes on: every asset event's partition, the day's partition, or the form's."""
        from airflow.sdk.exceptions import AirflowSkipException

        params, dag_run = context["params"], context["dag_run"]
        events = context.get("triggering_asset_events") or {}
        landed = [
            (event.extra or {}).get("uri") for asset_events in events.values() for event in asset_events
        ]
        landed = list(dict.fromkeys(uri for uri in landed if uri))  # every event once, in landing order
        if landed:
            # several events can be merged into one run: tune all of their partitions together
            print(f"asset-triggered run: {len(landed)} landed partition(s) tuned together: {', '.join(landed)}")
            return landed if len(landed) > 1 else landed[0]
        run_type = str(getattr(dag_run, "run_type", "")).lower()
        if params["partition_root"] and context.get("ds") and ("scheduled" in run_type or "backfill" in run_type):
            uri = f"{params['partition_root'].rstrip('/')}/dt={context['ds']}/"
            from cvtune.hooks.cvtune import CvtuneHook

            # through the connection's store: its credentials, not the worker's ambient ones
            if not CvtuneHook(params["cvtune_conn_id"]).store.exists(uri):
                raise AirflowSkipException(
                    f"{run_type} run for {context['ds']}: the day's partition {uri} has not landed yet; "
                    "nothing to tune (the run tunes it once ingest_new_data lands it)"
                )
            print(f"{run_type} run for {context['ds']}: data from the day's partition {uri}")
            return uri
        print(f"{run_type or 'manual'} run: data from the trigger form: {params['data_uri']}")
        return params["data_uri"]

    data_uri = resolve_data()
    validate = ValidateInputsOperator(
        task_id="validate_inputs",
        data_uri=data_uri,
        target="{{ params.target }}",
        strategy="{{ params.split_strategy }}",
        group_column="{{ params.group_column }}",
        time_column="{{ params.time_column }}",
        tuning_config="{{ params.tuning_config }}",
        approval_metric="{{ params.approval_metric }}",
        cvtune_conn_id=CONN,
    )
    split = FoldSplitOperator(
        task_id="split_folds",
        data_uri=data_uri,
        target="{{ params.target }}",
        folds="{{ params.folds }}",
        strategy="{{ params.split_strategy }}",
        group_column="{{ params.group_column }}",
        time_column="{{ params.time_column }}",
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
        target_value="{{ params.target_value }}",
        max_trials_not_improving="{{ params.max_trials_not_improving }}",
        convergence="{{ params.convergence }}",
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
        cvtune_conn_id=CONN,
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
        holdout_metric="{{ params.approval_metric }}",
        approval_direction="{{ params.approval_direction }}",
        approval_threshold="{{ params.approval_threshold }}",
        champion_margin="{{ params.champion_margin }}",
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
        refinement="{{ ti.xcom_pull(task_ids='decide_refinement', key='plan') }}",
        cvtune_conn_id=CONN,
    )
    validate >> split >> tune >> decide >> [refine, best]
    refine >> best >> train >> register >> transform >> report
