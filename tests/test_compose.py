"""docker-compose.yaml and Dockerfile: no Docker engine runs here, so the files are checked as data.

What is checked is what breaks a `docker compose up` silently: a service missing or running the
stock image instead of ours, a folder not mounted, an image tag drifting from the pinned Airflow,
a connection string Airflow (or our settings) would reject, paths the DAG reads that no container
has.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re

import pytest
import yaml

from tests.conftest import ROOT

AIRFLOW_SERVICES = (
    "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-init",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    with open(os.path.join(ROOT, "docker-compose.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)  # resolves the x-airflow-common anchors and `<<` merges


def _pin(name: str) -> str:
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            if line.lower().startswith(f"{name}=="):
                return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def _mounts(service: dict) -> dict[str, str]:
    """container path -> host path, with ${AIRFLOW_PROJ_DIR:-.} expanded to its default."""
    out = {}
    for volume in service.get("volumes", []):
        host, container = volume.replace("${AIRFLOW_PROJ_DIR:-.}", ".").split(":")[:2]
        out[container] = host
    return out


def test_the_official_services_all_run_our_image(compose):
    services = compose["services"]
    for name in (*AIRFLOW_SERVICES, "postgres"):
        assert name in services, f"service {name} missing"
    for name in ("redis", "airflow-worker", "flower"):  # Celery's: LocalExecutor needs none of them
        assert name not in services, f"service {name} left over from the Celery setup"
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    images = {services[name]["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1 and "apache/airflow" not in images.pop()
    for name in AIRFLOW_SERVICES:
        assert services[name]["build"] == ".", f"{name} must build ./Dockerfile"
    init_deps = services["airflow-scheduler"]["depends_on"]
    assert init_deps["airflow-init"]["condition"] == "service_completed_successfully"
    assert init_deps["postgres"]["condition"] == "service_healthy"


def test_environment_executor_database_and_examples(compose):
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith(".SimpleAuthManager")
    assert "@postgres/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert not [k for k in env if k.startswith("AIRFLOW__CELERY__")]
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    init_env = compose["services"]["airflow-init"]["environment"]
    assert "_AIRFLOW_WWW_USER_CREATE" not in init_env  # FAB's `airflow users create`: not installed
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in "\n".join(
        compose["services"]["airflow-init"]["command"]
    )


def _deploy_env() -> dict[str, str]:
    with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
        block = re.search(r"```dotenv\n(.*?)```", f.read(), re.S).group(1)
    return dict(line.split("=", 1) for line in block.splitlines() if line and not line.startswith("#"))


def test_both_routes_need_only_what_requirements_txt_installs(compose, monkeypatch):
    """docs/deploy.md's venv route and the compose file choose the same executor and auth manager,
    and everything they name imports from the pinned requirements (this venv is built from them)."""
    from importlib import import_module

    from cvtune.settings import Settings

    compose_env = compose["services"]["airflow-scheduler"]["environment"]
    venv_env = _deploy_env()
    for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER"):
        assert venv_env[key] == compose_env[key], key
    module, _, cls = venv_env["AIRFLOW__CORE__AUTH_MANAGER"].rpartition(".")
    getattr(import_module(module), cls)
    from airflow.executors import executor_constants

    assert venv_env["AIRFLOW__CORE__EXECUTOR"] in executor_constants.CORE_EXECUTOR_NAMES  # ships with Airflow
    for env in (venv_env, compose_env):
        driver = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].split("://", 1)[0]
        assert driver == "postgresql+psycopg2"
        _pin("psycopg2-binary")  # the driver is a runtime pin, not a test-only one
        extra = json.loads(env["AIRFLOW_CONN_CVTUNE_DEFAULT"])["extra"]
        Settings.from_extra(extra, source="deploy")  # every key accepted
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        with open(os.path.join(ROOT, "docs", "deploy.md"), encoding="utf-8") as f:
            assert f"airflow {component}" in f.read(), component


def test_dags_plugins_include_and_artifacts_are_mounted_where_the_code_looks(compose):
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        mounts = _mounts(service)
        for folder in ("dags", "plugins", "include"):
            assert mounts.get(f"/opt/airflow/{folder}") == f"./{folder}", f"{name}: ./{folder} not mounted"
            assert os.path.isdir(os.path.join(ROOT, folder))
        env = service["environment"]
        include = env["CVTUNE_INCLUDE"]
        assert include in mounts and mounts[include] == "./include"
        extra = json.loads(env["AIRFLOW_CONN_CVTUNE_DEFAULT"])["extra"]
        # every container must see the same artifact root: tasks of one run land on any worker
        root = extra["artifact_root"]
        assert root in mounts, f"{name}: artifact_root {root} is not a mounted volume"
        assert env["CVTUNE_RAW_DATA"].startswith(root + "/")
    # the DAG's defaults resolve inside the mounted include folder
    assert os.path.isfile(os.path.join(ROOT, "include", "data", "breast_cancer.csv"))
    assert os.path.isfile(os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml"))


def test_cvtune_connection_is_accepted_by_airflow_and_the_hook(compose, monkeypatch):
    from airflow.models.connection import Connection

    from cvtune.hooks.cvtune import CvtuneHook

    value = compose["services"]["airflow-scheduler"]["environment"]["AIRFLOW_CONN_CVTUNE_DEFAULT"]
    conn = Connection.from_json(value, conn_id="cvtune_default")
    assert conn.conn_type == "cvtune"
    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_DEFAULT", value)
    settings = CvtuneHook().settings  # validates every key as a task would
    assert settings.backend == "local"
    assert settings.artifact_root == "/opt/airflow/cvtune-artifacts"
    assert settings.options["max_parallel_jobs"] >= 1


def test_dockerfile_builds_from_the_pinned_airflow_and_installs_the_provider():
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        dockerfile = f.read()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert base == f"apache/airflow:{_pin('apache-airflow')}-python3.11"
    assert re.search(r"^USER airflow", dockerfile, re.M), "pip must run as the airflow user"
    assert re.search(r"pip install .*-r /tmp/cvtune-src/requirements.txt", dockerfile)
    assert re.search(r"pip install .*--no-deps /tmp/cvtune-src", dockerfile)
    for needed in ("requirements.txt", "pyproject.toml", "plugins/", "include/"):
        assert needed in dockerfile

    # nothing the build COPYs may be excluded from the build context
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        patterns = [p.strip() for p in f if p.strip() and not p.startswith("#")]
    copied = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", dockerfile, re.M)
    sources = [src.rstrip("/") for line in copied for src in line.split()]
    assert sources, "no COPY found"
    for src in sources:
        assert os.path.exists(os.path.join(ROOT, src)), f"COPY {src}: no such path"
        for pattern in patterns:
            assert not fnmatch.fnmatch(src, pattern.rstrip("/")), f".dockerignore {pattern!r} excludes {src}"


def test_the_dag_imports_with_the_compose_environment(compose, monkeypatch, airflow_db):
    """The containers' CVTUNE_* variables, pointed at this checkout, give a DAG that parses."""
    from airflow.dag_processing.dagbag import DagBag

    env = compose["services"]["airflow-scheduler"]["environment"]
    monkeypatch.setenv("CVTUNE_INCLUDE", os.path.join(ROOT, "include"))
    monkeypatch.setenv("CVTUNE_RAW_DATA", env["CVTUNE_RAW_DATA"])
    bag = DagBag(dag_folder=os.path.join(ROOT, "dags"))
    assert not bag.import_errors, bag.import_errors
    assert {"cv_tuning_pipeline", "ingest_new_data"} <= set(bag.dag_ids)
    dag = bag.get_dag("cv_tuning_pipeline")
    assert dag.params["data_uri"].startswith(os.path.join(ROOT, "include"))
