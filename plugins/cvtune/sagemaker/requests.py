"""SageMaker API requests as pure functions: what the backend sends, and what the dry run prints.

Nothing here talks to AWS. :func:`create_training_job` turns a :class:`~cvtune.backends.base.JobSpec`
and the :class:`~cvtune.sagemaker.config.SageMakerConfig` into ``CreateTrainingJob`` parameters, with
the code and channel locations already resolved (see :mod:`cvtune.sagemaker.staging`);
:func:`validate` checks any request against botocore's model of the SageMaker API, the same check
botocore makes before sending.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from cvtune.backends.base import JobSpec
from cvtune.errors import ConfigError
from cvtune.sagemaker.config import SageMakerConfig

CONTAINER_LOG_LEVEL = 20  # logging.INFO, what the SageMaker SDK sends by default
SPOT_WAIT_FACTOR = 2  # MaxWaitTimeInSeconds = factor x MaxRuntimeInSeconds for spot jobs
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_CHARS = 2500
# Under network isolation the container cannot download sourcedir.tar.gz itself ("the training
# container does not have network access", CreateTrainingJob EnableNetworkIsolation); like the
# SageMaker SDK, cvtune then ships it as the ``code`` input channel, which SageMaker downloads into
# /opt/ml/input/data/code/, and points sagemaker_submit_directory there.
CODE_CHANNEL = "code"
CODE_CHANNEL_SOURCEDIR = f"/opt/ml/input/data/{CODE_CHANNEL}/sourcedir.tar.gz"
DIGEST_ENV = "CVTUNE_CHANNEL_DIGEST_"  # + channel name: its content id (see create_training_job)


def encode_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    """SageMaker takes strings only; like the SDK's script mode, every value is JSON-encoded.

    The training toolkit in the container JSON-decodes them again, so the script sees ``0.1``,
    ``5`` and ``"xgboost"`` as it would locally. The API's limits (which botocore does not
    check) are checked here: at most 100 hyperparameters, keys up to 256 and values up to 2500
    characters.
    """
    encoded = {str(k): json.dumps(v) for k, v in values.items()}
    if len(encoded) > MAX_HYPERPARAMETERS:
        raise ConfigError(
            "static_hyperparameters", f"{len(encoded)} hyperparameters; SageMaker takes at most {MAX_HYPERPARAMETERS}"
        )
    for key, value in encoded.items():
        if len(key) > 256 or len(value) > MAX_HYPERPARAMETER_CHARS:
            raise ConfigError(
                f"hyperparameters.{key[:40]}",
                f"too long for SageMaker (key {len(key)}/256, JSON value {len(value)}/{MAX_HYPERPARAMETER_CHARS} characters)",
                "pass large inputs as a channel or a file next to the entry point",
            )
    return encoded


def script_mode_hyperparameters(
    values: dict[str, Any], *, entry_point: str, code_uri: str, region: str, job_name: str
) -> dict[str, str]:
    """The job's hyperparameters plus the ``sagemaker_*`` ones that tell the container what to run."""
    return encode_hyperparameters(
        {
            **values,
            "sagemaker_program": os.path.basename(entry_point),
            "sagemaker_submit_directory": code_uri,
            "sagemaker_region": region,
            "sagemaker_container_log_level": CONTAINER_LOG_LEVEL,
            "sagemaker_job_name": job_name,
        }
    )


def channel(name: str, s3_uri: str, content_type: str | None, input_mode: str = "File") -> dict[str, Any]:
    out: dict[str, Any] = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": s3_uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": input_mode,
    }
    if content_type:
        out["ContentType"] = content_type
    return out


def output_path(spec: JobSpec, config: SageMakerConfig) -> str:
    """Where the model goes: the spec's S3 URI if it gives one, else ``{s3_prefix}/jobs``."""
    return spec.output_uri.rstrip("/") if spec.output_uri.startswith("s3://") else f"{config.s3_prefix}/jobs"


def create_training_job(
    spec: JobSpec,
    config: SageMakerConfig,
    *,
    region: str,
    code_uri: str,
    channels: dict[str, tuple[str, str | None]],
    digests: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``CreateTrainingJob`` parameters of one fold job; ``channels``: name → (S3 URI, ContentType).

    ``digests``: name → an id of the channel's content. On warm pools each goes to the job as
    ``CVTUNE_CHANNEL_DIGEST_<NAME>``, so the script can keep a copy of the channel in the pool's
    persistent cache under that id and skip the fetch on the pool's next job (docs/training-script.md).
    """
    algorithm: dict[str, Any] = {
        "TrainingImage": config.resolved_image_uri(region),
        "TrainingInputMode": config.input_mode,
        "EnableSageMakerMetricsTimeSeries": False,
    }
    if spec.metric_definitions:
        algorithm["MetricDefinitions"] = [{"Name": d["Name"], "Regex": d["Regex"]} for d in spec.metric_definitions]
    output: dict[str, Any] = {"S3OutputPath": output_path(spec, config)}
    if config.output_kms_key_id:
        output["KmsKeyId"] = config.output_kms_key_id
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": spec.max_runtime_s}
    inputs = [channel(name, uri, ctype, config.input_mode) for name, (uri, ctype) in channels.items()]
    submit_directory = code_uri
    if config.enable_network_isolation:
        if CODE_CHANNEL in channels:
            raise ConfigError(
                f"channels.{CODE_CHANNEL}", "is reserved for the training code under enable_network_isolation",
                "rename the channel",
            )
        inputs.append(channel(CODE_CHANNEL, code_uri, None))
        submit_directory = CODE_CHANNEL_SOURCEDIR
    request: dict[str, Any] = {
        "TrainingJobName": spec.name,
        "HyperParameters": script_mode_hyperparameters(
            spec.hyperparameters, entry_point=spec.entry_point, code_uri=submit_directory, region=region,
            job_name=spec.name,
        ),
        "AlgorithmSpecification": algorithm,
        "RoleArn": config.role_arn,
        "InputDataConfig": inputs,
        "OutputDataConfig": output,
        "ResourceConfig": config.resource_config(),
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": config.enable_network_isolation,
        "EnableInterContainerTrafficEncryption": config.enable_inter_container_traffic_encryption,
        "Tags": config.tag_list(spec.tags),
    }
    if config.retry_attempts:
        # RetryStrategy: "The retry strategy to use when a training job fails due to an
        # InternalServerError" — SageMaker restarts the same job, so names and ledgers stay valid
        request["RetryStrategy"] = {"MaximumRetryAttempts": config.retry_attempts}
    environment = dict(spec.environment)
    if digests and config.keep_alive_period_s > 0:  # the persistent cache only exists on warm pools
        environment = {**{f"{DIGEST_ENV}{name.upper()}": d for name, d in sorted(digests.items())}, **environment}
    if environment:
        # "Environment: The environment variables to set in the Docker container." (CreateTrainingJob,
        # up to 100 entries; keys [a-zA-Z_][a-zA-Z0-9_]*, keys and values at most 512 characters)
        request["Environment"] = environment
    if config.use_spot_instances:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = spec.max_runtime_s * SPOT_WAIT_FACTOR
    if config.vpc_config:
        request["VpcConfig"] = {k: list(v) for k, v in config.vpc_config.items()}
    if not config.enable_profiler:
        request["ProfilerConfig"] = {"DisableProfiler": True}
    return request


@lru_cache(maxsize=1)
def _service_model():
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


def validate(operation: str, params: dict[str, Any]) -> None:
    """Raise botocore's ``ParamValidationError`` if ``params`` do not fit the API's model — including
    the patterns and maximums botocore leaves to the server (job-name regex, tag charset,
    hyperparameter limits, keep-alive range), checked as the emulator checks them."""
    from botocore.exceptions import ParamValidationError
    from botocore.validate import ParamValidator

    from cvtune.emulator.validation import constraint_errors

    shape = _service_model().operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())
    errors = constraint_errors(operation, params)
    if errors:
        raise ParamValidationError(report="\n".join(errors))
