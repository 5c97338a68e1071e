"""OpenLineage and extra links of one real pipeline run (dag.test(), local backend).

Each task's lineage is extracted the way the OpenLineage listener does it — the provider's
``ExtractorManager`` on the executed task, right after it succeeded (an ``on_success_callback``)
— and the extra links are read where Airflow keeps them (XCom ``_link_<class>``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT, write_dag

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")
ROWS = 569  # the sample's rows
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(airflow_db, tmp_path_factory):
    """Run split → tune → refine → best → train → register → transform → report once."""
    from airflow.dag_processing.dagbag import DagBag

    base = tmp_path_factory.mktemp("lineage")
    root, out = str(base / "artifacts"), str(base / "lineage")
    os.makedirs(out)
    path = write_dag("lineage_dag.py", textwrap.dedent(f'''
        import json
        from datetime import datetime
        from airflow.sdk import DAG
        from cvtune.operators import (BatchTransformOperator, BestParamsOperator, CVTuningOperator, FoldSplitOperator,
                                      RegisterModelOperator, TrainModelOperator, TuningReportOperator,
                                      WarmStartTuningOperator)

        def dump_lineage(context):
            from airflow.providers.openlineage.extractors.manager import ExtractorManager
            from airflow.utils.state import TaskInstanceState
            from openlineage.client.serde import Serde

            lineage = ExtractorManager().extract_metadata(
                context["dag_run"], context["task"], TaskInstanceState.SUCCESS, context["ti"])
            doc = {{"inputs": [Serde.to_dict(d) for d in lineage.inputs],
                   "outputs": [Serde.to_dict(d) for d in lineage.outputs],
                   "run_facets": {{k: Serde.to_dict(v) for k, v in lineage.run_facets.items()}}}}
            with open({out!r} + "/" + context["ti"].task_id + ".json", "w") as f:
                json.dump(doc, f)

        with DAG("lineage_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
                 default_args={{"on_success_callback": dump_lineage}}) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds=2, holdout=0.2, seed=1)
            tune = CVTuningOperator(task_id="tune", manifest_uri=split.output["manifest"], tuning_config={CONFIG!r},
                                    max_trials=2, max_parallel_trials=2, poll_interval=0.2)
            refine = WarmStartTuningOperator(task_id="refine", manifest_uri=split.output["manifest"],
                                             tuning_config={CONFIG!r}, parents=[tune.output], max_trials=1,
                                             max_parallel_trials=1, poll_interval=0.2)
            best = BestParamsOperator(task_id="best", runs=[tune.output, refine.output])
            train = TrainModelOperator(task_id="train", manifest_uri=split.output["manifest"],
                                       hyperparameters=best.output, poll_interval=0.2)
            register = RegisterModelOperator(task_id="register", model=train.output, model_package_group="lineage-grp",
                                             runs=[tune.output, refine.output], approval_threshold=0.5)
            transform = BatchTransformOperator(task_id="transform", model=register.output,
                                               input_uri=split.output["scoring_uri"], header=True,
                                               exclude_columns=["target"])
            report = TuningReportOperator(task_id="report", runs=[tune.output, refine.output], best_params=best.output)
            split >> tune >> refine >> best >> train >> register >> transform >> report
    '''))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_CVTUNE_DEFAULT", json.dumps(
            {"conn_type": "cvtune", "extra": {"backend": "local", "artifact_root": root, "workers": 2, "keep_alive_s": 30}}))
        bag = DagBag(dag_folder=path)
        assert bag.import_errors == {}
        run = bag.get_dag("lineage_dag").test()
    assert run.state == "success"

    def lineage(task_id: str) -> dict:
        with open(os.path.join(out, f"{task_id}.json")) as f:
            return json.load(f)

    return {"run": run, "root": root, "lineage": lineage}


def xcoms(run, task_id: str) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, task_ids=task_id)
            .with_only_columns(XComModel.key, XComModel.value)
        ).all()
    return {key: XComModel.deserialize_value(type("Row", (), {"value": value})()) for key, value in rows}


def names(datasets: list[dict]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def test_split_reads_the_data_and_writes_manifest_folds_holdout(pipeline):
    split = pipeline["lineage"]("split")
    [data] = split["inputs"]
    assert (data["namespace"], data["name"]) == ("file", DATA)
    columns = [f["name"] for f in data["facets"]["schema"]["fields"]]
    assert columns[-1] == "target" and len(columns) == 31
    assert data["inputFacets"]["inputStatistics"]["rowCount"] == ROWS
    manifest, folds, holdout = split["outputs"]
    assert manifest["name"].endswith("/manifest.json") and manifest["name"].startswith(pipeline["root"])
    holdout_rows = holdout["outputFacets"]["outputStatistics"]["rowCount"]
    assert holdout_rows == 114  # ceil(0.2 * 569)
    assert folds["outputFacets"]["outputStatistics"]["rowCount"] == ROWS - holdout_rows
    assert os.path.isdir(folds["name"]) and os.path.isdir(holdout["name"])


def test_tuning_reads_manifest_and_parents_writes_the_ledger_with_the_best_trial(pipeline):
    tune, refine = pipeline["lineage"]("tune"), pipeline["lineage"]("refine")
    split = pipeline["lineage"]("split")
    assert names(tune["inputs"]) == names(split["outputs"][:2])  # the manifest and the folds
    [ledger] = tune["outputs"]
    assert ledger["name"].endswith("/ledger.json") and os.path.isfile(ledger["name"])
    facet = tune["run_facets"]["cvtune_tuning"]
    with open(ledger["name"]) as f:
        data = json.load(f)
    best = max((t for t in data["trials"] if t["state"] == "Completed"), key=lambda t: (t["mean"], -t["std"]))
    assert facet["runId"] == data["run_id"] and facet["trials"] == {"Completed": 2} and facet["foldJobs"] == 4
    assert facet["best"]["trial"] == best["number"] and facet["best"]["mean"] == best["mean"]
    assert facet["best"]["foldScores"] == best["fold_scores"] and len(best["fold_scores"]) == 2
    assert facet["_schemaURL"].endswith("CvtuneTuningRunFacet")
    # refine warm-starts from tune: tune's ledger is one of its inputs
    assert ("file", ledger["name"]) in names(refine["inputs"])
    assert refine["outputs"][0]["name"] != ledger["name"]


def test_training_registry_and_transform_chain_model_package_predictions(pipeline):
    split, train = pipeline["lineage"]("split"), pipeline["lineage"]("train")
    register, transform = pipeline["lineage"]("register"), pipeline["lineage"]("transform")
    assert [n for _, n in names(train["inputs"])][0] == split["outputs"][0]["name"]  # the manifest
    holdout = train["inputs"][-1]
    assert holdout["name"] == split["outputs"][2]["name"] and holdout["inputFacets"]["inputStatistics"]["rowCount"] == 114
    [model] = train["outputs"]
    assert 0.5 < train["run_facets"]["cvtune_model"]["metrics"]["test:auc"] <= 1.0
    assert names(register["inputs"]) == [(model["namespace"], model["name"])]
    package = register["outputs"][0]
    assert (package["namespace"], package["name"]) == ("cvtune-registry", "model-package/lineage-grp/1")
    assert register["run_facets"]["cvtune_model"]["approvalStatus"] == "Approved"
    assert ("cvtune-registry", "model-package/lineage-grp/1") in names(transform["inputs"])
    scored = transform["inputs"][0]
    assert scored["name"] == split["outputs"][2]["name"]  # the holdout rows are what gets scored
    [predictions] = transform["outputs"]
    assert predictions["outputFacets"]["outputStatistics"]["rowCount"] == 114
    assert any(f.endswith(".out") for f in os.listdir(predictions["name"]))


def test_links_of_the_finished_run(pipeline):
    run = pipeline["run"]
    tune = xcoms(run, "tune")
    run_id = tune["return_value"]["run_id"]
    assert tune["_link_TuningReportLink"] == f"/cvtune/runs/{run_id}/report"
    assert tune["_link_RunLedgerLink"] == f"/cvtune/runs/{run_id}/ledger.json"
    assert tune["_link_SageMakerTrainingJobsLink"] == ""  # local backend: no console, so no link
    for task_id, link in (("train", "SageMakerFinalTrainingJobLink"), ("register", "SageMakerModelPackageLink"),
                          ("transform", "SageMakerTransformJobLink")):
        assert xcoms(run, task_id)[f"_link_{link}"] == ""
    report = xcoms(run, "report")
    report_link = report["_link_TuningReportLink"]
    assert report_link.startswith(f"/cvtune/reports/{run.dag_id}/") and report_link.endswith("/report.html")
    assert os.path.isfile(os.path.join(pipeline["root"], "reports", report_link[len("/cvtune/reports/"):]))
    best_run = report["return_value"]["run_id"]
    assert report["_link_RunLedgerLink"] == f"/cvtune/runs/{best_run}/ledger.json"
    assert not [k for k in xcoms(run, "split") if k.startswith("_link_")]  # no links declared, none stored


def test_nothing_from_openlineage_is_imported_at_parse_time():
    """Airflow's provider discovery may read the OpenLineage provider's info; cvtune imports none of it."""
    code = (
        "import sys, cvtune.operators, cvtune.sensors.tuning, runpy;"
        f"runpy.run_path({os.path.join(ROOT, 'dags', 'cv_tuning_pipeline.py')!r});"
        "bad = sorted(m for m in sys.modules if m.startswith(('openlineage', 'cvtune.lineage',"
        " 'airflow.providers.openlineage.extractors', 'airflow.providers.common.compat.openlineage')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")})
    assert out.returncode == 0, out.stdout + out.stderr
