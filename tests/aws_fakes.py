"""Shared pieces of the SageMaker tests: names, a trained job and its container, a config, moto S3,
and a to_thread recorder."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

BUCKET = "cvtune-test"
PREFIX = f"s3://{BUCKET}/cv"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
CODE = f"{PREFIX}/code/abc123/sourcedir.tar.gz"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def model_data(job: str) -> str:
    return f"{PREFIX}/jobs/{job}/output/model.tar.gz"


def training_job(job: str) -> dict:
    """DescribeTrainingJob of a completed script-mode job (the xgboost image, code at ``CODE``)."""
    return {
        "TrainingJobName": job,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}",
        "ModelArtifacts": {"S3ModelArtifacts": model_data(job)},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": NOW,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "eta": "0.1",
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(CODE),
            "sagemaker_region": json.dumps("us-east-1"),
        },
    }


def container(job: str) -> dict:
    """The container that serves ``job``'s model: its image, model.tar.gz and script."""
    return {
        "Image": IMAGE,
        "ModelDataUrl": model_data(job),
        "Environment": {
            "SAGEMAKER_PROGRAM": "train.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": CODE,
            "SAGEMAKER_REGION": "us-east-1",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        },
    }


def moto_aws(monkeypatch: Any) -> Iterator[tuple[Any, Any]]:
    """Dummy credentials, moto S3 with one bucket, and a real sagemaker client to stub (a fixture body)."""
    import boto3
    from moto import mock_aws

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3, boto3.client("sagemaker", region_name="us-east-1")


def make_config(**options: Any):
    from cvtune.sagemaker.config import SageMakerConfig

    return SageMakerConfig.from_options(
        {"role_arn": ROLE, "s3_prefix": PREFIX, "region_name": "us-east-1", **options}, source="test"
    )


def record_to_thread(monkeypatch: Any) -> list[str]:
    """Names of the functions sent to ``asyncio.to_thread`` from now on (the list fills up)."""
    in_threads: list[str] = []
    to_thread = asyncio.to_thread

    async def recording_to_thread(fn, *args, **kwargs):
        in_threads.append(getattr(fn, "__name__", repr(fn)))
        return await to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", recording_to_thread)
    return in_threads


# -- the SageMaker emulator ------------------------------------------------------------------------
EMU_BUCKET = "cvtune-emu"
EMU_KEYS = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator", "region_name": "us-east-1"}


def emulator_clients(emulator: Any) -> tuple[Any, Any]:
    """(sagemaker, s3) boto3 clients on the emulator; no retries, so a test sees every answer."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    sm = boto3.client("sagemaker", endpoint_url=emulator.endpoint, config=config, **EMU_KEYS)
    s3 = boto3.client("s3", endpoint_url=emulator.s3_endpoint, config=config, **EMU_KEYS)
    return sm, s3


def upload_script(s3: Any, source: str, key: str = "code/sourcedir.tar.gz", name: str = "train.py") -> str:
    """A ``sourcedir.tar.gz`` holding ``source`` as ``name``; its S3 URI."""
    import io
    import tarfile

    raw = io.BytesIO()
    data = source.encode()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=EMU_BUCKET, Key=key, Body=raw.getvalue())
    return f"s3://{EMU_BUCKET}/{key}"


def script_job(name: str, code_uri: str, **overrides: Any) -> dict[str, Any]:
    """A script-mode CreateTrainingJob request as cvtune sends it (a ``train`` channel under data/train/)."""
    import json

    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE, "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:auc", "Regex": "validation:auc=([0-9.]+);"}],
        },
        "HyperParameters": {
            "sagemaker_program": json.dumps("train.py"), "sagemaker_submit_directory": json.dumps(code_uri),
            "eta": json.dumps(0.1), "model": json.dumps("xgboost"),
        },
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{EMU_BUCKET}/data/train/", "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{EMU_BUCKET}/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    for key, value in overrides.items():
        if key == "ResourceConfig":
            request[key] = {**request[key], **value}
        elif value is None:
            request.pop(key, None)
        else:
            request[key] = value
    return request


def wait_job(sm: Any, name: str, timeout: float = 60.0, until: tuple[str, ...] = ("Completed", "Failed", "Stopped")) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in until or job["SecondaryStatus"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {job['TrainingJobStatus']}/{job['SecondaryStatus']} after {timeout} s")
        time.sleep(0.02)


def emulated_sagemaker(monkeypatch: Any, emulator: Any, conn_id: str = "aws_emu", **config_kwargs: Any) -> None:
    """An Airflow AWS connection ``conn_id`` on the emulator: endpoint and keys in the connection only."""
    import json

    extra: dict[str, Any] = {"region_name": "us-east-1", "endpoint_url": emulator.endpoint}  # S3 proxied to moto
    if config_kwargs:
        extra["config_kwargs"] = config_kwargs
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "aws", "login": "emulator", "password": "emulator", "extra": extra}))
