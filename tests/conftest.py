"""Test session setup: a throwaway AIRFLOW_HOME (SQLite) set before anything imports Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HOME = tempfile.mkdtemp(prefix="cvtune-airflow-home-")
os.environ["AIRFLOW_HOME"] = _HOME
# dag.test() only runs DAGs of the configured bundle: the reference DAG is linked in, and tests
# that need DAGs of their own write them here (see write_dag).
DAGS_FOLDER = os.path.join(_HOME, "dags")
os.makedirs(DAGS_FOLDER)
os.symlink(os.path.join(ROOT, "dags", "cv_tuning_pipeline.py"), os.path.join(DAGS_FOLDER, "cv_tuning_pipeline.py"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = DAGS_FOLDER
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("CVTUNE_HOME", os.path.join(_HOME, "cvtune-artifacts"))


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Migrate the session's SQLite metadata DB once; returns AIRFLOW_HOME."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _HOME


@pytest.fixture
def cvtune_conn(tmp_path, monkeypatch):
    """A ``cvtune_default`` connection (local backend, 2 workers) with its own artifact root."""
    root = tmp_path / "artifacts"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CVTUNE_DEFAULT",
        json.dumps(
            {"conn_type": "cvtune", "extra": {"backend": "local", "artifact_root": str(root), "workers": 2, "keep_alive_s": 30}}
        ),
    )
    return str(root)


def write_dag(name: str, source: str) -> str:
    """Put a test DAG file into the session's DAG folder; returns its path."""
    path = os.path.join(DAGS_FOLDER, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    return path
