"""Land a new daily partition of raw data and announce it: the `raw data` asset event.

Writes `{CVTUNE_RAW_DATA}/dt={ds}/data.csv` (here: a bootstrap resample of the bundled sample,
standing in for an upstream extract) and emits an event on the `raw data` asset whose extra
carries the partition's URI, which triggers `cv_tuning_pipeline` on exactly that partition.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Asset, Param, task

INCLUDE = os.environ.get("CVTUNE_INCLUDE") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "include"
)
RAW_ROOT = os.environ.get("CVTUNE_RAW_DATA", "")
RAW_DATA = Asset(name="raw data", uri=f"file://{RAW_ROOT or '/cvtune/raw'}")

with DAG(
    dag_id="ingest_new_data",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cvtune", "ingest"],
    doc_md=__doc__,
    params={
        "partition_root": Param(RAW_ROOT, type="string", minLength=1, title="Partition root"),
        "partition": Param(None, type=["null", "string"], title="Partition date (YYYY-MM-DD)",
                           description="Empty: the run's date."),
        "source": Param(os.path.join(INCLUDE, "data", "breast_cancer.csv"), type="string", title="Source file"),
    },
) as dag:

    @task(outlets=[RAW_DATA])
    def land_partition(**context) -> str:
        import pandas as pd

        params = context["params"]
        dt = params["partition"] or (context.get("ds") or datetime.utcnow().strftime("%Y-%m-%d"))
        out_dir = os.path.join(params["partition_root"], f"dt={dt}")
        os.makedirs(out_dir, exist_ok=True)
        frame = pd.read_csv(params["source"])
        seed = int(dt.replace("-", "")) % (2**31)
        frame.sample(frac=1.0, replace=True, random_state=seed).to_csv(os.path.join(out_dir, "data.csv"), index=False)
        uri = out_dir + "/"
        context["outlet_events"][RAW_DATA].extra = {"uri": uri, "dt": dt}
        print(f"landed partition {uri} ({len(frame)} rows) and emitted a 'raw data' event")
        return uri

    land_partition()
