"""A clean job environment: local jobs see an allowlist plus the run's ``environment:``, like SageMaker."""

from __future__ import annotations

import json

import pytest

from cvtune.backends.base import JobSpec
from cvtune.config import parse_config
from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from cvtune.local.backend import LocalBackend
from cvtune.tuner import CVTuner

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLESECRET01",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-0123456789",
    "AIRFLOW_CONN_AWS_DEFAULT": "aws://AKIAEXAMPLESECRET01:conn-secret@",
    "AIRFLOW__CORE__FERNET_KEY": "fernet-key-value-ZmVybmV0LWtleQ==",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:db-password@db/airflow",
    "SOME_OTHER_SETTING": "not-for-jobs",
}
PRINT_ENV = """\
import os
for key in sorted(os.environ):
    print(f"ENV {key}={os.environ[key]}")
print("score=0.5")
"""


def config_data(script: str, **extra) -> dict:
    return {
        "entry_point": script,
        "objective": {"metric": "score", "type": "Maximize"},
        "metric_definitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "max_trials": 1, **extra,
    }


def test_a_job_sees_the_allowlist_and_its_configured_environment_only(tmp_path, monkeypatch):
    for key, value in {**SECRETS, "LC_ALL": "C.UTF-8", "TZ": "UTC", "OMP_NUM_THREADS": "7",
                       "PYTHONHASHSEED": "0"}.items():
        monkeypatch.setenv(key, value)
    script = tmp_path / "train.py"
    script.write_text(PRINT_ENV)
    for part in ("train", "val"):
        (tmp_path / "d" / part).mkdir(parents=True)
    manifest = {"manifest_uri": str(tmp_path / "m.json"), "fingerprint": "e" * 64,
                "folds": [{"fold": 0, "train_uri": str(tmp_path / "d" / "train"), "validation_uri": str(tmp_path / "d" / "val")}]}
    config = parse_config(config_data(str(script), environment={"MY_FLAG": "on", "TZ": "Europe/Paris"}), base_dir=None)
    # "keep": the default compaction deletes a completed job's log once the ledger has its result,
    # racing with the read below.
    with LocalBackend(str(tmp_path / "jobs"), max_parallel_jobs=1, preload=(), cpus_per_job=1, job_cleanup="keep") as backend:
        summary = CVTuner(config, manifest, backend, run_id="env", artifact_root=str(tmp_path / "art"), poll_s=0.05).run()
        log = backend.read_log("env-t0000-f0")
    assert summary["trials"] == {"Completed": 1}
    seen = dict(line[4:].split("=", 1) for line in log.splitlines() if line.startswith("ENV "))
    assert not [k for k in seen if k.startswith(("AWS_", "AIRFLOW"))], sorted(seen)
    assert "SOME_OTHER_SETTING" not in seen
    assert seen["MY_FLAG"] == "on" and seen["TZ"] == "Europe/Paris"  # the run's environment wins
    assert seen["LC_ALL"] == "C.UTF-8" and seen["PYTHONHASHSEED"] == "0" and seen["OMP_NUM_THREADS"] == "1"
    assert seen["PATH"] and seen["SM_CHANNEL_TRAIN"].endswith("input/data/train") and seen["TRAINING_JOB_NAME"] == "env-t0000-f0"
    ledger_text = (tmp_path / "art" / "runs" / "env" / "ledger.json").read_text()
    job_files = "".join(p.read_text(errors="replace") for p in (tmp_path / "jobs").rglob("*") if p.is_file())
    for value in SECRETS.values():
        assert value not in log and value not in ledger_text and value not in job_files
    assert RunLedger.load(summary["ledger"]).data["config"]["environment"] == {"MY_FLAG": "on", "TZ": "Europe/Paris"}


def test_the_environment_goes_to_create_training_job():
    from cvtune.sagemaker.requests import create_training_job, validate
    from tests.aws_fakes import make_config

    spec = JobSpec("env-t0000-f0", "train.py", {"x": 1}, {}, environment={"MY_FLAG": "on"})
    request = create_training_job(spec, make_config(image_uri="123.dkr.ecr.us-east-1.amazonaws.com/x:1"),
                                  region="us-east-1", code_uri="s3://b/code.tar.gz",
                                  channels={"train": ("s3://b/train/", None)})
    assert request["Environment"] == {"MY_FLAG": "on"}
    validate("CreateTrainingJob", request)
    bare = create_training_job(JobSpec("e-t0000-f0", "train.py", {}, {}), make_config(image_uri="123.dkr.ecr.us-east-1.amazonaws.com/x:1"),
                               region="us-east-1", code_uri="s3://b/code.tar.gz", channels={})
    assert "Environment" not in bare


@pytest.mark.parametrize("environment,message", [
    (["A=1"], "environment: expected a mapping of NAME: value, got list"),
    ({"1BAD": "x"}, "environment.1BAD: not a valid variable name"),
    ({"FLAG": 1}, 'environment.FLAG: expected a string, got int 1 — quote it: FLAG: "1"'),
    ({"LONG": "x" * 513}, "environment.LONG: 513 characters; SageMaker allows at most 512"),
    ({f"K{i}": "v" for i in range(101)}, "environment: 101 variables; SageMaker allows at most 100"),
])
def test_environment_is_validated(tmp_path, environment, message):
    script = tmp_path / "train.py"
    script.write_text("")
    with pytest.raises(ConfigError) as err:
        parse_config(config_data(str(script), environment=environment), base_dir=None)
    assert str(err.value).startswith(message), str(err.value)


def test_an_empty_environment_keeps_earlier_runs_fingerprints(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("")
    plain = parse_config(config_data(str(script)), base_dir=None)
    assert plain.fingerprint() == parse_config(config_data(str(script), environment={}), base_dir=None).fingerprint()
    assert plain.fingerprint() != parse_config(config_data(str(script), environment={"A": "1"}), base_dir=None).fingerprint()
    assert json.loads(json.dumps(plain.to_dict()))["environment"] == {}
