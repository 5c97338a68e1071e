"""The inference container of a model trained on SageMaker: read back from its training job.

The final training job is an ordinary job of the SageMaker backend (``cvtune.training.
train_final``), so it gets the fold jobs' ``ResourceConfig`` and keep-alive and lands on their
warm pool, and its holdout metrics are the ``test:*`` values of ``FinalMetricDataList``. What the
registry and the batch transform need afterwards — the image, ``model.tar.gz`` and the very
``sourcedir.tar.gz`` and script the job ran — is read from ``DescribeTrainingJob`` rather than
rebuilt, so the served code can never drift from the trained code.
"""

from __future__ import annotations

import json
from typing import Any

from cvtune.errors import ConfigError
from cvtune.states import JobStatus

LOG_LEVEL = "20"  # logging.INFO, what the SageMaker SDK sets for framework models


def _hyperparameter(hyperparameters: dict[str, str], name: str) -> str | None:
    """Script-mode hyperparameters are JSON-encoded strings (``'"train.py"'``); plain ones too."""
    raw = hyperparameters.get(name)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, str) else raw


def training_job_container(client: Any, job_name: str) -> dict[str, Any]:
    """``{"Image", "ModelDataUrl", "Environment"}`` serving the model of a completed training job."""
    job = client.describe_training_job(TrainingJobName=job_name)
    if job["TrainingJobStatus"] != JobStatus.COMPLETED:
        raise ConfigError(
            "model", f"training job {job_name} is {job['TrainingJobStatus']}, not Completed", "register a completed job"
        )
    hyperparameters = job.get("HyperParameters") or {}
    program = _hyperparameter(hyperparameters, "sagemaker_program")
    submit_directory = _hyperparameter(hyperparameters, "sagemaker_submit_directory")
    if not program or not submit_directory:
        raise ConfigError(
            "model",
            f"training job {job_name} was not a script-mode job (no sagemaker_program / sagemaker_submit_directory)",
            "train the model with the cvtune sagemaker backend",
        )
    if submit_directory.startswith("/opt/ml/"):  # network isolation: the code came as the code channel
        from cvtune.sagemaker.requests import CODE_CHANNEL

        sources = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.get("InputDataConfig") or []
                   if c["ChannelName"] == CODE_CHANNEL]
        if not sources:
            raise ConfigError("model", f"training job {job_name} names {submit_directory} but has no code channel")
        submit_directory = sources[0]
    region = _hyperparameter(hyperparameters, "sagemaker_region") or client.meta.region_name
    return {
        "Image": job["AlgorithmSpecification"]["TrainingImage"],
        "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"],
        "Environment": {
            "SAGEMAKER_PROGRAM": program,
            "SAGEMAKER_SUBMIT_DIRECTORY": submit_directory,
            "SAGEMAKER_REGION": region,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": LOG_LEVEL,
        },
    }


def model_package_container(client: Any, model_package_arn: str) -> dict[str, Any]:
    """The first inference container of a registered model package version."""
    package = client.describe_model_package(ModelPackageName=model_package_arn)
    containers = (package.get("InferenceSpecification") or {}).get("Containers") or []
    if not containers:
        raise ConfigError("model", f"{model_package_arn} has no inference container", "register it with cvtune")
    container = containers[0]
    return {
        "Image": container["Image"],
        "ModelDataUrl": container["ModelDataUrl"],
        "Environment": dict(container.get("Environment") or {}),
    }


def container_for(client: Any, model: dict[str, Any]) -> dict[str, Any]:
    """The container of ``RegisterModelOperator``'s output (its package version) or of
    ``TrainModelOperator``'s output (its training job)."""
    arn = model.get("model_package_arn") or ""
    if arn.startswith("arn:"):
        return model_package_container(client, arn)
    job = model.get("job_name") or model.get("training_job")
    if job:
        return training_job_container(client, job)
    raise ConfigError(
        "model", "names neither a model package version (model_package_arn) nor a training job (job_name)",
        "pass RegisterModelOperator's or TrainModelOperator's output",
    )

