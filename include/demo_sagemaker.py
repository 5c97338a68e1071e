"""`make demo-sagemaker`: the reference DAG on the SageMaker emulator, from a fresh clone.

Starts the emulator (``cvtune sagemaker-emulator``, which starts moto's S3 server too) on free
local ports, creates a bucket, and runs ``airflow dags test cv_tuning_pipeline`` with:

- ``aws_default``: the emulator's endpoint (it serves SageMaker and proxies S3 to moto) and keys,
  in the Airflow connection only — no ``AWS_*`` variables reach Airflow;
- ``cvtune_default``: ``backend: sagemaker``, artifacts under ``s3://…``, a fast poll;
- deferrable tuning (``[operators] default_deferrable``) and a scaled clock (``--time-scale``).

Then prints ``make demo``'s headline plus warm-pool reuse, billable and retained seconds and API
calls by operation (the emulator's ``/_emulator/report``), and stops the emulator by its PID.
Run it with the project's venv python: ``python include/demo_sagemaker.py [home]``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "cvtune-demo"
REGION = "us-east-1"
KEYS = {"login": "emulator", "password": "emulator"}
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
TIME_SCALE = os.environ.get("CVTUNE_DEMO_TIME_SCALE", "0.01")
PARAMS = {"max_trials": 6, "max_parallel_trials": 2, "folds": 3, "refine_trials": 3}


def start_emulator(home: str) -> tuple[subprocess.Popen, dict]:
    ready = os.path.join(home, "emulator.json")
    log = open(os.path.join(home, "emulator.log"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cvtune.cli", "sagemaker-emulator", "--time-scale", TIME_SCALE,
         "--warm-pool-quota", "ml.m5.large=8", "--instance-quota", "ml.m5.large=16", "--ready-file", ready],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")},
    )
    deadline = time.monotonic() + 120
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"the emulator did not start; see {home}/emulator.log")
        time.sleep(0.2)
    with open(ready) as f:
        return proc, json.load(f)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def airflow_env(home: str, info: dict) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # credentials: the connection only
    # one endpoint for SageMaker and S3: the emulator proxies S3 to its moto server
    aws = {"conn_type": "aws", **KEYS, "extra": {"region_name": REGION, "endpoint_url": info["endpoint"]}}
    cvtune = {"conn_type": "cvtune", "extra": {
        "backend": "sagemaker", "artifact_root": f"s3://{BUCKET}/artifacts", "aws_conn_id": "aws_default",
        "region_name": REGION, "role_arn": ROLE, "s3_prefix": f"s3://{BUCKET}/sagemaker",
        "instance_type": "ml.m5.large", "keep_alive_period_s": 1800, "poll_interval_s": 0.5,
    }}
    env.update({
        "PYTHONPATH": os.path.join(ROOT, "plugins"),
        "AIRFLOW_HOME": os.path.join(home, "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(ROOT, "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(aws),
        "AIRFLOW_CONN_CVTUNE_DEFAULT": json.dumps(cvtune),
        "CVTUNE_PARAM_DEFAULTS": json.dumps(PARAMS),
    })
    return env


def s3_client(info: dict):
    import boto3

    return boto3.client("s3", endpoint_url=info["s3_endpoint"], region_name=REGION,
                        aws_access_key_id=KEYS["login"], aws_secret_access_key=KEYS["password"])


def fetch_reports(info: dict, local: str) -> None:
    """The run's reports from the artifact root on (emulated) S3, for the headline script."""
    s3 = s3_client(info)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="artifacts/reports/"):
        for item in page.get("Contents") or []:
            target = os.path.join(local, item["Key"][len("artifacts/"):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            s3.download_file(BUCKET, item["Key"], target)


def print_emulator_report(report: dict) -> None:
    jobs = report["training_jobs"]
    print("  SageMaker emulator:")
    print(f"    training jobs: {jobs['count']} {jobs['by_status']}  ·  transform jobs: {report['transform_jobs']['by_status']}")
    print(f"    warm pools: {jobs['warm_pools_reused']} reused, {jobs['warm_pools_available']} still available")
    print(f"    billable: {jobs['billable_instance_seconds']} instance-seconds training, "
          f"{jobs['warm_pool_retained_instance_seconds']} instance-seconds retained in warm pools")
    print(f"    API calls ({report['api_calls_total']}): " + ", ".join(f"{op} {n}" for op, n in report["api_calls"].items()))
    if report["api_errors"]:
        print("    API errors: " + ", ".join(f"{k} {n}" for k, n in report["api_errors"].items()))


def main(home: str) -> int:
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(os.path.join(home, "airflow"))
    started = time.monotonic()
    proc, info = start_emulator(home)
    try:
        print(f"==> SageMaker emulator {info['endpoint']} (pid {proc.pid}), S3 {info['s3_endpoint']}, time scale {TIME_SCALE}")
        s3_client(info).create_bucket(Bucket=BUCKET)
        env = airflow_env(home, info)
        airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
        print(f"==> airflow db migrate (SQLite in {env['AIRFLOW_HOME']})")
        with open(os.path.join(home, "db-migrate.log"), "wb") as log:
            if subprocess.run([airflow, "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT).returncode:
                raise SystemExit(f"airflow db migrate failed; see {home}/db-migrate.log")
        print(f"==> airflow dags test cv_tuning_pipeline on backend sagemaker (log: {home}/dags-test.log)")
        with open(os.path.join(home, "dags-test.log"), "wb") as log:
            code = subprocess.run([airflow, "dags", "test", "cv_tuning_pipeline"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
        if code:
            with open(os.path.join(home, "dags-test.log"), errors="replace") as f:
                lines = [line for line in f if "ERROR" in line or "Error" in line or "Traceback" in line]
            print("".join(lines[-40:]))
            raise SystemExit(f"the DAG failed; see {home}/dags-test.log")
        local = os.path.join(home, "artifacts")
        fetch_reports(info, local)
        subprocess.run([sys.executable, os.path.join(ROOT, "include", "demo_headline.py"), local], check=True)
        with urllib.request.urlopen(info["endpoint"] + "/_emulator/report") as response:
            report = json.load(response)
        with open(os.path.join(home, "emulator-report.json"), "w") as f:
            json.dump(report, f, indent=2)
        print_emulator_report(report)
        print(f"  wall time: {time.monotonic() - started:.0f} s")
        return 0
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".demo-sagemaker"))))
