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
def make_backend(tmp_path):
    """``make(**kwargs)``: a local warm pool under ``tmp_path/jobs`` (no preload, one worker unless
    told), closed after the test."""
    from cvtune.local.backend import LocalBackend

    made: list[LocalBackend] = []

    def make(**kwargs) -> LocalBackend:
        kwargs.setdefault("preload", ())
        kwargs.setdefault("max_parallel_jobs", 1)
        backend = LocalBackend(str(tmp_path / "jobs"), **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


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


class S3Server:
    """moto's S3 in server mode on 127.0.0.1 (any process can reach it), recording which access
    key signed each request, so a test can tell whose credentials a read or write used."""

    def __init__(self) -> None:
        import re
        import threading

        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, access key id)
        credential = re.compile(r"Credential=([^/,\s]+)/")

        def recording(environ, start_response):
            match = credential.search(environ.get("HTTP_AUTHORIZATION", ""))
            self.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), match and match.group(1)))
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, recording, threaded=True)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def keys_for(self, path_part: str) -> set[str | None]:
        """Access keys of the requests whose path contains ``path_part``."""
        return {key for _, path, key in self.requests if path_part in path}

    def create_bucket(self, bucket: str) -> None:
        import boto3

        boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="admin",
            aws_secret_access_key="admin",
        ).create_bucket(Bucket=bucket)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def no_ambient_aws(monkeypatch, tmp_path):
    """No AWS identity outside Airflow connections: no AWS_* variables, no ~/.aws, no instance role."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "no-aws"
    empty.mkdir()
    monkeypatch.setenv("HOME", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    # the last link of boto3's chain (an instance role): there is none here, don't wait for it
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def aws_connection(monkeypatch, conn_id: str, key: str, endpoint: str) -> None:
    """An Airflow AWS connection ``conn_id`` (env-var secrets backend) holding keys and an endpoint."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "aws", "login": key, "password": f"{key}-secret",
                    "extra": {"region_name": "us-east-1", "endpoint_url": endpoint}}),
    )
