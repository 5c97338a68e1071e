"""The reference DAG under a real Airflow stack: api-server, scheduler (LocalExecutor), dag-processor
and triggerer on PostgreSQL, driven through the REST API and the airflow CLI like an operator would.

One scenario, in order (each run warm-starts from the one before it, so order matters):

1. unpausing the DAG starts the nightly run of the latest 02:00 tick on that day's partition:
   the first run ever, it has nothing to warm-start from;
2. a manual run through the REST API, its conf built from the trigger form's params, with the
   refinement condition forced to hold (refine runs);
3. ``airflow backfill create`` over two days: each run re-tunes its day's partition, refinement off
   (refine is skipped);
4. ``ingest_new_data`` lands a partition and emits the ``raw data`` asset event, which triggers a run
   on exactly that partition.

Every run must succeed; tune warm-starts (TRANSFER_LEARNING) from the ledgers behind the previously
registered version; refine ran exactly when ``refinement_reasons`` says its condition held.

Then, on the same stack, a manual run on the SageMaker emulator (``cvtune sagemaker-emulator``, with
moto behind it for S3 and the model registry; its endpoint and keys only in Airflow connections made
through the REST API): the finished run's extra links, fetched as the UI fetches them, open its report,
summary and ledger through the cvtune view, and its console links name exactly the jobs, model
package version and transform job the emulator holds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import ROOT

DAG_ID = "cv_tuning_pipeline"
INGEST_ID = "ingest_new_data"
SAMPLE = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# Small budgets for the runs without a trigger form (nightly, asset-triggered); the DAG reads them.
DEPLOYMENT_DEFAULTS = {"folds": 2, "max_trials": 2, "max_parallel_trials": 2, "refine_trials": 2, "holdout": 0.25}
RUN_DEADLINE_S = 600  # per DAG run; generous because the CPU is shared
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def _tail(path: str, lines: int = 60) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"<{e}>"


def _session_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[3])  # fields after the name: state ppid pgrp session


def write_partition(root: str, dt: str) -> str:
    """``{root}/dt={dt}/data.csv``: a bootstrap resample of the sample, as ingest_new_data writes it."""
    import pandas as pd

    out = os.path.join(root, f"dt={dt}")
    os.makedirs(out, exist_ok=True)
    frame = pd.read_csv(SAMPLE)
    frame.sample(frac=1.0, replace=True, random_state=int(dt.replace("-", ""))).to_csv(
        os.path.join(out, "data.csv"), index=False
    )
    return out + "/"


class Stack:
    """A running Airflow deployment in a temp AIRFLOW_HOME on a database of its own."""

    def __init__(self) -> None:
        self.mark = f"cvtune-stack-{os.getpid()}-{secrets.token_hex(4)}"
        self.home = tempfile.mkdtemp(prefix="cvtune-stack-")
        self.dags = os.path.join(self.home, "dags")
        self.raw = os.path.join(self.home, "raw")
        self.artifacts = os.path.join(self.home, "artifacts")
        self.logs = os.path.join(self.home, "component-logs")
        for d in (self.dags, self.raw, self.artifacts, self.logs):
            os.makedirs(d)
        for name in ("cv_tuning_pipeline.py", "ingest_new_data.py"):
            os.symlink(os.path.join(ROOT, "dags", name), os.path.join(self.dags, name))
        self.db = self.mark.replace("-", "_")
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.token: str | None = None
        self.env = self._env()

    def _env(self) -> dict[str, str]:
        # Nothing of the test session's own Airflow setup (SQLite home, unit-test mode) leaks in, nor AWS
        # credentials or endpoints: those come from Airflow connections only.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CVTUNE", "AWS_"))}
        env.update({
            "CVTUNE_STACK_MARK": self.mark,  # inherited by every process the stack starts: see leftovers()
            "AIRFLOW_HOME": self.home,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{self.db}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "3",
            "AIRFLOW__CORE__DAGS_FOLDER": self.dags,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "CVTUNE_RAW_DATA": self.raw,
            "CVTUNE_PARAM_DEFAULTS": json.dumps(DEPLOYMENT_DEFAULTS),
            "AIRFLOW_CONN_CVTUNE_DEFAULT": json.dumps({
                "conn_type": "cvtune",
                "extra": {"backend": "local", "artifact_root": self.artifacts, "workers": 2, "keep_alive_s": 5},
            }),
        })
        return env

    # ------------------------------------------------------------------ lifecycle

    def airflow(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an airflow CLI command against this deployment; raise with its output if it fails."""
        out = subprocess.run(
            [sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home, capture_output=True, text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def start(self) -> None:
        _pg_admin(f'CREATE DATABASE "{self.db}"')
        self.airflow("db", "migrate", timeout=600)
        for component in COMPONENTS:
            args = ["api-server", "--port", str(self.port)] if component == "api-server" else [component]
            log = open(os.path.join(self.logs, f"{component}.log"), "wb")
            self.procs[component] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            log.close()
        self.wait_for(self._healthy, 240, "all components healthy (/api/v2/monitor/health)")

        def parsed() -> bool:
            errors = self.api("GET", "/importErrors")["import_errors"]
            assert not errors, errors
            return {DAG_ID, INGEST_ID} <= {d["dag_id"] for d in self.api("GET", "/dags")["dags"]}

        self.wait_for(parsed, 180, "the dag-processor to parse both DAG files")

    def _healthy(self) -> bool:
        import requests

        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}")
        try:
            health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            return False
        return all((health.get(k) or {}).get("status") == "healthy"
                   for k in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    def leftovers(self) -> list[Any]:
        """Live processes of this stack: in a component's session (each component starts its own),
        or anywhere else if they inherited the stack's mark (e.g. fold jobs, which start sessions
        of their own). The mark alone misses processes that rewrite their title over their
        environment (Airflow's supervisors and workers), the session alone misses re-parented ones."""
        import psutil

        sessions = {proc.pid for proc in self.procs.values()}
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if _session_of(proc.pid) in sessions or proc.environ().get("CVTUNE_STACK_MARK") == self.mark:
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
                continue
        return found

    def stop(self, grace_s: float = 20.0) -> list[str]:
        """SIGTERM each component's process group, SIGKILL after ``grace_s``; then sweep whatever
        :meth:`leftovers` still finds. Returns notes on what needed more than SIGTERM."""
        import psutil

        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        notes = []
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                notes.append(f"{name} still running {grace_s:.0f}s after SIGTERM: SIGKILL")
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group may hold children even if its leader is gone
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=30)
        escaped = self.leftovers()
        for proc in escaped:
            try:
                notes.append(f"swept {proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(escaped, timeout=10)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)
        return notes

    def drop_db(self) -> None:
        _pg_admin(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def diagnostics(self) -> str:
        parts = [f"== {c} ({os.path.join(self.logs, c + '.log')}):\n{_tail(os.path.join(self.logs, c + '.log'))}"
                 for c in COMPONENTS]
        task_logs = []
        for dirpath, _, files in os.walk(os.path.join(self.home, "logs")):
            task_logs += [os.path.join(dirpath, f) for f in files]
        for path in sorted(task_logs, key=os.path.getmtime)[-3:]:
            parts.append(f"== task log {path}:\n{_tail(path, 40)}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ REST API

    def auth(self) -> dict[str, str]:
        """The REST API's bearer header (the token taken on first use)."""
        import requests

        if self.token is None:
            reply = requests.get(f"{self.url}/auth/token", timeout=30)
            reply.raise_for_status()
            self.token = reply.json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        reply = requests.request(method, f"{self.url}/api/v2{path}", headers=self.auth(), timeout=60, **kwargs)
        if reply.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {reply.status_code}: {reply.text[:2000]}")
        return reply.json() if reply.content else None

    def wait_for(self, predicate, timeout_s: float, what: str, interval_s: float = 2.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
            time.sleep(interval_s)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, "order_by": "id"})["dag_runs"]

    def wait_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        def finished():
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in ("success", "failed") else None

        run = self.wait_for(finished, RUN_DEADLINE_S, f"run {run_id} of {dag_id} to finish", interval_s=3)
        assert run["state"] == "success", f"{dag_id} {run_id} {run['state']}: {self.task_states(dag_id, run_id)}"
        return run

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in tis}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")["value"]

    def links(self, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
        """A task's extra links, as the UI gets them."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")["extra_links"]

    def fetch(self, url: str) -> Any:
        """GET ``url`` (a link into this api-server) with the REST API's token; it must answer 200."""
        import requests

        reply = requests.get(url, headers=self.auth(), timeout=60)
        assert reply.status_code == 200, (url, reply.status_code, reply.text[:500])
        return reply

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        return json.dumps(self.api("GET", path, params={"full_content": "true"})["content"])


@pytest.fixture(scope="module")
def stack():
    s = Stack()
    try:
        s.start()
    except BaseException:
        print(s.diagnostics())
        _teardown(s)
        raise
    yield s
    _teardown(s)


def _teardown(s: Stack) -> None:
    try:
        notes = s.stop()
        left = s.leftovers()
    finally:
        s.drop_db()
    if notes:
        print("teardown:", *notes, sep="\n  ")
    assert not left, f"processes still alive after teardown: {[(p.pid, p.name()) for p in left]}"
    shutil.rmtree(s.home, ignore_errors=True)


def test_deployment_param_defaults_are_validated_when_the_dag_is_parsed():
    """CVTUNE_PARAM_DEFAULTS (how the stack below gets small budgets) changes the defaults the
    scheduled runs use, and a bad entry breaks the DAG's import instead of a run."""
    code = f"""
import json, os, runpy
def parse(defaults):
    os.environ["CVTUNE_PARAM_DEFAULTS"] = json.dumps(defaults)
    try:
        params = runpy.run_path({os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")!r})["dag"].params
        return {{"folds": params["folds"], "max_trials": params["max_trials"], "refine_below": params["refine_below"]}}
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
print(json.dumps([parse({{}}), parse({{"folds": 3, "refine_below": 0.9}}), parse({{"folds": 1}}), parse({{"fold": 3}})]))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    plain, small, too_few, unknown = json.loads(out.stdout.strip().splitlines()[-1])
    assert plain == {"folds": 5, "max_trials": 20, "refine_below": None}
    assert small == {"folds": 3, "max_trials": 20, "refine_below": 0.9}
    assert too_few.startswith("ValueError") and "default values are not valid" in too_few
    assert unknown.startswith("ValueError") and "unknown params ['fold']" in unknown


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_pipeline_under_a_real_scheduler(stack):
    try:
        _scenario(stack)
    except BaseException:
        print(stack.diagnostics())
        raise


def _scenario(s: Stack) -> None:
    # With catchup off, unpausing starts the run of the latest 02:00 UTC tick; it reads that day's partition.
    details = s.api("GET", f"/dags/{DAG_ID}/details")
    nightly_day = datetime.fromisoformat(details["next_dagrun_logical_date"]).date()
    assert nightly_day <= datetime.now(timezone.utc).date()
    d1, d2, d3 = (nightly_day - timedelta(days=n) for n in (3, 2, 1))
    partitions = {str(d): write_partition(s.raw, str(d)) for d in (nightly_day, d1, d2)}
    form = {name: p["value"] for name, p in details["params"].items()}
    assert {k: form[k] for k in DEPLOYMENT_DEFAULTS} == DEPLOYMENT_DEFAULTS  # the DAG took the deployment's defaults
    assert form["partition_root"] == s.raw

    # 1. nightly: the first run ever has nothing to warm-start from
    s.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    [nightly] = s.wait_for(lambda: [r for r in s.runs(DAG_ID) if r["run_type"] == "scheduled"], 180, "the nightly run")
    nightly = s.wait_run(DAG_ID, nightly["dag_run_id"])
    assert nightly["logical_date"] == details["next_dagrun_logical_date"]
    previous = check_run(s, nightly, form, data=partitions[str(nightly_day)], parents=None)
    assert "first run: no earlier successful run of breast-cancer-xgboost" in s.task_log(DAG_ID, nightly["dag_run_id"], "tune")

    # 2. manual, conf from the trigger form; a target no AUC can reach forces refinement
    conf = {**form, "refine_below": 1.01}
    manual = s.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    manual = s.wait_run(DAG_ID, manual["dag_run_id"])
    assert manual["run_type"] == "manual" and manual["logical_date"] is None
    previous = check_run(s, manual, form, data=form["data_uri"], parents=previous, refined=True)
    check_links_and_view(s, manual)

    # 3. backfill two days, one run at a time (each learns from the one before), refinement off
    off = {"refine_below": None, "refine_at_boundary": None, "refine_top_k": None}
    s.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", str(d1), "--to-date", f"{d2}T02:00",
              "--max-active-runs", "1", "--dag-run-conf", json.dumps(off))
    backfill = sorted((r for r in s.runs(DAG_ID) if r["run_type"] == "backfill"), key=lambda r: r["logical_date"])
    assert [r["logical_date"][:10] for r in backfill] == [str(d1), str(d2)]
    for run in backfill:
        run = s.wait_run(DAG_ID, run["dag_run_id"])
        assert run["conf"] == off
        previous = check_run(s, run, form, data=partitions[run["logical_date"][:10]], parents=previous, refined=False)

    # 4. new data: ingest_new_data lands dt=d3 and emits the asset event that triggers a run on it
    s.api("PATCH", f"/dags/{INGEST_ID}", json={"is_paused": False})
    ingest = s.api("POST", f"/dags/{INGEST_ID}/dagRuns", json={"logical_date": None, "conf": {"partition": str(d3)}})
    s.wait_run(INGEST_ID, ingest["dag_run_id"])
    assert os.path.isfile(os.path.join(s.raw, f"dt={d3}", "data.csv"))
    [triggered] = s.wait_for(lambda: [r for r in s.runs(DAG_ID) if r["run_type"] == "asset_triggered"], 180,
                             "the asset-triggered run")
    triggered = s.wait_run(DAG_ID, triggered["dag_run_id"])
    events = s.api("GET", "/assets/events", params={"source_dag_id": INGEST_ID})["asset_events"]
    [event] = [e for e in events if e["source_run_id"] == ingest["dag_run_id"]]
    assert event["name"] == "raw data" and event["extra"]["dt"] == str(d3)
    assert [r["run_id"] for r in event["created_dagruns"]] == [triggered["dag_run_id"]]
    check_run(s, triggered, form, data=event["extra"]["uri"], parents=previous)
    assert event["extra"]["uri"] == os.path.join(s.raw, f"dt={d3}") + "/"

    runs = s.runs(DAG_ID)
    assert sorted(r["state"] for r in runs) == ["success"] * 5
    for run in sorted(runs, key=lambda r: r["start_date"]):  # where the time goes (pytest -s shows it)
        tis = s.api("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        print(f"{run['dag_run_id']}: {run['duration']:.0f}s;",
              ", ".join(f"{ti['task_id']} {ti['duration'] or 0:.1f}s" for ti in tis))


@pytest.fixture(scope="module")
def emulator(stack):
    """The SageMaker emulator as its own process (``cvtune sagemaker-emulator``, as ``make
    demo-sagemaker`` starts it) with a bucket; stopped by its PID before the stack stops."""
    from include.demo_sagemaker import start_emulator, stop

    home = os.path.join(stack.home, "emulator")
    os.makedirs(home)
    proc, info = start_emulator(home)
    try:
        emulator_client(info, "s3").create_bucket(Bucket=EMU_BUCKET)
        yield {**info, "log": os.path.join(home, "emulator.log")}
    finally:
        stop(proc)


EMU_BUCKET = "cvtune-stack"
EMU_REGION = "us-east-1"
EMU_ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def emulator_client(info: dict[str, Any], service: str) -> Any:
    """The test's own look at what the emulator holds (Airflow gets its keys from connections only)."""
    import boto3

    from include.demo_sagemaker import KEYS

    endpoint = info["s3_endpoint"] if service == "s3" else info["endpoint"]
    return boto3.client(service, endpoint_url=endpoint, region_name=EMU_REGION,
                        aws_access_key_id=KEYS["login"], aws_secret_access_key=KEYS["password"])


@pytest.mark.stack
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_links_of_a_sagemaker_run_under_a_real_api_server(stack, emulator):
    try:
        _sagemaker_links(stack, emulator)
    except BaseException:
        print(stack.diagnostics())
        print(f"== emulator ({emulator['log']}):\n{_tail(emulator['log'])}")
        raise


def _sagemaker_links(s: Stack, emu: dict[str, Any]) -> None:
    from cvtune.ledger import fold_job_name

    # credentials and endpoints: Airflow connections, made as an operator would, through the REST API
    s.api("POST", "/connections", json={
        "connection_id": "aws_emu", "conn_type": "aws", "login": "emulator", "password": "emulator",
        "extra": json.dumps({"region_name": EMU_REGION, "endpoint_url": emu["endpoint"]}),
    })
    s.api("POST", "/connections", json={"connection_id": "cvtune_emu", "conn_type": "cvtune", "extra": json.dumps({
        "backend": "sagemaker", "artifact_root": f"s3://{EMU_BUCKET}/artifacts", "aws_conn_id": "aws_emu",
        "region_name": EMU_REGION, "role_arn": EMU_ROLE, "s3_prefix": f"s3://{EMU_BUCKET}/sagemaker",
        "instance_type": "ml.m5.large", "keep_alive_period_s": 1800, "poll_interval_s": 0.2,
    })})
    details = s.api("GET", f"/dags/{DAG_ID}/details")
    if details["is_paused"]:  # run on its own, this test is the first to need the scheduler
        s.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
    conf = {name: p["value"] for name, p in details["params"].items()}
    conf.update({"cvtune_conn_id": "cvtune_emu", "max_trials": 2, "max_parallel_trials": 2, "folds": 2,
                 "refine_below": None, "refine_at_boundary": None, "refine_top_k": None,
                 "warm_start_from_previous": False})
    run = s.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    run_id = s.wait_run(DAG_ID, run["dag_run_id"])["dag_run_id"]
    assert s.task_states(DAG_ID, run_id)["refine"] == "skipped"

    def links(task_id: str) -> dict[str, str | None]:
        return s.links(DAG_ID, run_id, task_id)

    fetch = s.fetch

    sm = emulator_client(emu, "sagemaker")
    console = f"https://console.aws.amazon.com/sagemaker/home?region={EMU_REGION}"

    def held(kind: str, name: str) -> dict[str, Any]:
        """The job as the emulator holds it: finished, in the run's region."""
        job = (sm.describe_training_job(TrainingJobName=name) if kind == "training"
               else sm.describe_transform_job(TransformJobName=name))
        assert job[f"{kind.capitalize()}JobStatus"] == "Completed", job
        assert job[f"{kind.capitalize()}JobArn"].split(":")[3] == EMU_REGION
        return job

    # tune: its report and ledger through the view (on this connection), the best trial's fold job
    tune = s.xcom(DAG_ID, run_id, "tune")
    view = f"{s.url}/cvtune/runs/{tune['run_id']}"
    ledger = fetch(f"{view}/ledger.json?conn=cvtune_emu").json()
    assert ledger["run_id"] == tune["run_id"] and ledger["airflow"] == {**ledger["airflow"], "dag_id": DAG_ID,
                                                                        "run_id": run_id}
    best = fetch(f"{view}/summary.json?conn=cvtune_emu").json()["best"]
    best_job = fold_job_name(tune["run_id"], int(best["trial"]), 0)
    held("training", best_job)
    tuned_jobs = {j["TrainingJobName"] for j in sm.list_training_jobs(NameContains=tune["run_id"],
                                                                        MaxResults=100)["TrainingJobSummaries"]}
    assert best_job in tuned_jobs and len(tuned_jobs) == 2 * 2  # 2 trials x 2 folds, each a job of its own
    got = links("tune")
    assert got == {"Tuning report": f"{view}/report?conn=cvtune_emu", "Run ledger": f"{view}/ledger.json?conn=cvtune_emu",
                   "SageMaker training jobs": f"{console}#/jobs/{best_job}"}, got
    page = fetch(got["Tuning report"])
    assert f"cvtune report — {tune['run_id']}" in page.text
    assert fetch(got["Run ledger"]).json() == ledger

    # train_final, register, batch_transform: exactly the resources the emulator (and moto) hold
    final = s.xcom(DAG_ID, run_id, "train_final")
    held("training", final["job_name"])
    assert final["job_name"] not in tuned_jobs
    assert links("train_final") == {"SageMaker final training job": f"{console}#/jobs/{final['job_name']}"}
    registered = s.xcom(DAG_ID, run_id, "register")
    package = sm.describe_model_package(ModelPackageName=registered["model_package_arn"])
    assert (package["ModelPackageGroupName"], package["ModelPackageVersion"]) == (
        registered["model_package_group"], registered["version"])
    arn_resource = package["ModelPackageArn"].split(":", 5)[5]  # model-package/{group}/{version}
    assert arn_resource == f"model-package/{registered['model_package_group']}/{registered['version']}"
    assert package["ModelPackageArn"].split(":")[3] == EMU_REGION
    assert links("register") == {"SageMaker model package": f"{console}#/model-packages/{arn_resource.split('/', 1)[1]}"}
    transform = s.xcom(DAG_ID, run_id, "batch_transform")
    held("transform", transform["transform_job"])
    assert links("batch_transform") == {
        "SageMaker transform job": f"{console}#/transform-jobs/{transform['transform_job']}"}

    # the pipeline report and its summary, read through the view from s3:// as they are in the bucket
    report_out = s.xcom(DAG_ID, run_id, "report")
    got = links("report")
    assert got["Tuning report"].startswith(f"{s.url}/cvtune/reports/{DAG_ID}/"), got
    assert got["Tuning report"].endswith("/report.html?conn=cvtune_emu"), got
    bucket, key = report_out["report"].removeprefix("s3://").split("/", 1)
    stored = emulator_client(emu, "s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert fetch(got["Tuning report"]).text == stored and final["job_name"] in stored
    summary = fetch(got["Tuning report"].replace("/report.html", "/summary.json")).json()
    assert summary["run_ids"] == [tune["run_id"]] and summary["extra"]["dag_run_id"] == run_id
    assert got["Run ledger"] == f"{view}/ledger.json?conn=cvtune_emu"
    listing = fetch(f"{s.url}/cvtune/api/runs?conn=cvtune_emu").json()
    assert listing["artifact_root"] == f"s3://{EMU_BUCKET}/artifacts"
    assert [r["dag_run_id"] for r in listing["runs"] if r["run_id"] == tune["run_id"]] == [run_id]


def check_links_and_view(s: Stack, run: dict[str, Any]) -> None:
    """The finished run's extra links, as the UI gets them, open the cvtune view on this api-server:
    the report and ledger of each tuning run, the pipeline report and its summary; a local run has
    no console links; the view is exactly as protected as the REST API."""
    import requests

    run_id = run["dag_run_id"]
    def links(task_id: str) -> dict[str, str | None]:
        return s.links(DAG_ID, run_id, task_id)

    fetch = s.fetch

    for task_id in ("tune", "refine"):
        out = s.xcom(DAG_ID, run_id, task_id)
        got = links(task_id)
        assert got == {"Tuning report": f"{s.url}/cvtune/runs/{out['run_id']}/report",
                       "Run ledger": f"{s.url}/cvtune/runs/{out['run_id']}/ledger.json",
                       "SageMaker training jobs": None}, got  # local backend: no console to link to
        page = fetch(got["Tuning report"])
        assert page.headers["content-type"].startswith("text/html")
        assert f"cvtune report — {out['run_id']}" in page.text and "Optimization history" in page.text
        assert fetch(got["Run ledger"]).json()["run_id"] == out["run_id"]
        # as protected as the REST API: this stack runs the simple auth manager with all_admins (everyone
        # is admin, no token needed); tests/test_view.py and test_browser.py check the login-required case
        anonymous = requests.get(got["Tuning report"], timeout=60).status_code
        assert anonymous == requests.get(f"{s.url}/api/v2/dags", timeout=60).status_code, anonymous

    report_out = s.xcom(DAG_ID, run_id, "report")
    got = links("report")
    assert got["Tuning report"].startswith(f"{s.url}/cvtune/reports/{DAG_ID}/"), got
    page = fetch(got["Tuning report"])
    with open(report_out["report"], encoding="utf-8") as f:
        assert page.text == f.read()
    assert "Refinement decision: refined" in page.text and "why <code>" in page.text
    summary = fetch(got["Tuning report"].replace("/report.html", "/summary.json")).json()
    assert summary["run_ids"] == [s.xcom(DAG_ID, run_id, "tune")["run_id"], s.xcom(DAG_ID, run_id, "refine")["run_id"]]
    assert summary["story"]["refinement"]["refine"] is True and len(summary["story"]["refinement"]["rules"]) == 3
    assert got["Run ledger"] == f"{s.url}/cvtune/runs/{summary['best']['run_id']}/ledger.json"
    for task_id, name in (("train_final", "SageMaker final training job"), ("register", "SageMaker model package"),
                          ("batch_transform", "SageMaker transform job")):
        assert links(task_id) == {name: None}  # declared, absent on the local backend

    listing = fetch(f"{s.url}/cvtune/api/runs").json()
    assert {r["run_id"] for r in listing["runs"]} >= set(summary["run_ids"])
    assert any(r["report"] == got["Tuning report"].removeprefix(s.url) for r in listing["reports"])
    plugins = s.api("GET", "/plugins")["plugins"]
    assert [p["fastapi_apps"][0]["url_prefix"] for p in plugins if p["name"] == "cvtune"] == ["/cvtune"]


def check_run(
    s: Stack, run: dict[str, Any], form: dict[str, Any], *, data: str, parents: list[str] | None,
    refined: bool | None = None,
) -> list[str]:
    """Assert what one successful run of the pipeline did; return the ledgers its registered version names."""
    from cvtune.ledger import RunLedger
    from cvtune.refinement import refinement_reasons

    run_id = run["dag_run_id"]
    states = s.task_states(DAG_ID, run_id)
    others = {task: state for task, state in states.items() if task != "refine"}
    assert states["refine"] in ("success", "skipped") and set(others.values()) == {"success"}, states
    refine_ran = states["refine"] == "success"

    # the data: what resolve_data chose, and what the fold manifest was actually built from
    assert s.xcom(DAG_ID, run_id, "resolve_data") == data
    with open(s.xcom(DAG_ID, run_id, "split_folds")["manifest"]) as f:
        assert json.load(f)["dataset"]["uri"].rstrip("/") == data.rstrip("/")

    # warm start: TRANSFER_LEARNING from exactly the ledgers behind the previously registered version
    tune = RunLedger.load(s.xcom(DAG_ID, run_id, "tune")["ledger"])
    assert tune.data["airflow"]["run_id"] == run_id
    params = {**form, **(run["conf"] or {})}
    assert len(tune.trials) == params["max_trials"]
    if parents is None:
        assert tune.data.get("warm_start") is None
    else:
        assert tune.data["warm_start"]["type"] == "TRANSFER_LEARNING"
        assert tune.data["warm_start"]["parents"] == parents
        assert tune.trials[0]["source"].startswith("parent:")  # the parents' best configuration runs first

    # refinement ran exactly when its condition held on this run's tune ledger
    reasons = refinement_reasons(
        tune, target=params["refine_below"], boundary=params["refine_at_boundary"], top_k=params["refine_top_k"]
    )
    plan = s.xcom(DAG_ID, run_id, "decide_refinement", key="plan")
    assert plan["reasons"] == reasons
    assert refine_ran == bool(reasons), (reasons, states)
    if refined is not None:
        assert refine_ran is refined, reasons
    ledgers = [tune.uri]
    if refine_ran:
        refine = RunLedger.load(s.xcom(DAG_ID, run_id, "refine")["ledger"])
        assert refine.data["warm_start"] == {"type": "IDENTICAL_DATA_AND_ALGORITHM", "parents": [tune.uri],
                                             "requested": [tune.uri]}
        ledgers.append(refine.uri)

    registered = s.xcom(DAG_ID, run_id, "register")
    group = registered["model_package_group"]
    with open(os.path.join(s.artifacts, "registry", group, f"v{registered['version']}.json")) as f:
        version = json.load(f)
    assert version["metadata"]["dag_run_id"] == run_id
    assert version["metadata"]["tuning_ledgers"] == ledgers
    return ledgers
