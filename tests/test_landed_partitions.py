"""Every landed partition is tuned: asset events merged into one run tune all their partitions;
a scheduled run whose partition has not landed skips with a clear message."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pandas as pd
import pytest

from tests.conftest import ROOT

DAG_FILE = os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")


@pytest.fixture(scope="module")
def resolve_data(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=DAG_FILE).get_dag("cv_tuning_pipeline")
    return dag.get_task("resolve_data").python_callable, dict(dag.params)


def land(root, day, rows):
    folder = root / f"dt={day}"
    folder.mkdir(parents=True)
    pd.DataFrame({"x": range(rows), "target": [i % 2 for i in range(rows)]}).to_csv(folder / "data.csv", index=False)
    return str(folder) + "/"


def test_two_events_landing_together_are_both_tuned(tmp_path, resolve_data, capsys):
    """Before: two ingest runs 62 ms apart gave one asset-triggered run that tuned only the last partition."""
    from cvtune.folds import split_dataset

    call, params = resolve_data
    first, second = land(tmp_path, "2026-03-01", 30), land(tmp_path, "2026-03-02", 40)
    events = {"raw data": [SimpleNamespace(extra={"uri": first}), SimpleNamespace(extra={"uri": second})]}
    got = call(params={**params, "partition_root": str(tmp_path)}, dag_run=SimpleNamespace(run_type="asset_triggered"),
               triggering_asset_events=events, ds="2026-03-02")
    assert got == [first, second]
    assert f"2 landed partition(s) tuned together: {first}, {second}" in capsys.readouterr().out
    manifest = split_dataset(got, str(tmp_path / "split"), target="target", folds=2)
    assert manifest["dataset"]["rows"] == 70  # every row of both partitions
    assert manifest["dataset"]["uri"] == [first.rstrip("/"), second.rstrip("/")]


def test_a_scheduled_run_before_its_partition_landed_skips(tmp_path, resolve_data):
    from airflow.sdk.exceptions import AirflowSkipException

    call, params = resolve_data
    with pytest.raises(AirflowSkipException, match=r"partition .*dt=2026-03-05/ has not landed yet"):
        call(params={**params, "partition_root": str(tmp_path)}, dag_run=SimpleNamespace(run_type="scheduled"),
             triggering_asset_events={}, ds="2026-03-05")
    landed = land(tmp_path, "2026-03-05", 10)
    assert call(params={**params, "partition_root": str(tmp_path)}, dag_run=SimpleNamespace(run_type="scheduled"),
                triggering_asset_events={}, ds="2026-03-05") == landed
