"""Shared pieces of the SageMaker tests: names, a config, moto S3, and a to_thread recorder."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

BUCKET = "cvtune-test"
PREFIX = f"s3://{BUCKET}/cv"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


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
