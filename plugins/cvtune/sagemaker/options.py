"""The sagemaker backend's keys of the ``cvtune`` connection extra (and of ``--backend-config``).

Every check lives here, so the connection extra, ``--backend-config`` and the docs share one set:
types and ranges per key, and in :meth:`SageMakerOptions._check_together` what needs a pattern
or more than one key (the role ARN's and S3 prefix's form, spot vs. warm pools, VPC and tags).
Only the framework's image, a lookup in the region's registry, is left to
:meth:`~cvtune.sagemaker.config.SageMakerConfig.from_options`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import model_validator

from cvtune.errors import ConfigError
from cvtune.options import Options, option

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
S3_PREFIX_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
MAX_TAGS = 50  # per SageMaker resource
RESERVED_TAGS = 4  # the most cvtune adds to one job: run/trial/fold on fold jobs, purpose/dag/task/run on the final job

KEEP_ALIVE_MAX_S = 3600  # the CreateTrainingJob limit of ResourceConfig.KeepAlivePeriodInSeconds


class SageMakerOptions(Options):
    """Fold jobs as SageMaker training jobs on warm pools."""

    backend_doc: ClassVar[str] = '`"sagemaker"`'

    artifact_root: str | None = option(what="folds, ledgers, predictions, reports", shown="`{s3_prefix}/artifacts`",
                                       min_length=1)
    role_arn: str = option("", what="the training role, `arn:aws:iam::<account>:role/<name>`", shown="— (required)")
    s3_prefix: str = option(
        "", shown="— (required)",
        what="`s3://bucket/prefix`: code (`code/`), staged channels (`data/`), job outputs (`jobs/`), registry "
        "statistics (`registry/`), staged transform input (`transform-input/`) and its state (`transform-state/`)",
    )
    instance_type: str = option("ml.m5.large", what="training instances; also the default batch transform instance type")
    instance_count: int = option(1, what="instances per training job", ge=1, le=100)
    volume_size_gb: int = option(30, what="EBS volume per training instance", ge=1, le=16384)
    keep_alive_period_s: int = option(
        1800, what="`KeepAlivePeriodInSeconds`, 0–3600; 0 turns warm pools off", ge=0, le=KEEP_ALIVE_MAX_S,
        fix="SageMaker keeps a warm pool for at most 3600 s; 0 disables warm pools",
    )
    image_uri: str | None = option(what="an explicit training/serving image; wins over the framework lookup", min_length=1)
    framework: str = option("xgboost", what="framework image family")
    framework_version: str = option("1.7-1", what="`sagemaker-xgboost:<version>` from the region's registry")
    vpc_config: dict[str, Any] | None = option(
        what='`{"Subnets": [...], "SecurityGroupIds": [...]}` for training jobs and the transform model',
        fix='give {"Subnets": ["subnet-..."], "SecurityGroupIds": ["sg-..."]}',
    )
    volume_kms_key_id: str | None = option(what="KMS key for training (and transform) volumes", min_length=1)
    output_kms_key_id: str | None = option(
        what="KMS key for job outputs, transform output and the objects cvtune writes to S3", min_length=1
    )
    enable_network_isolation: bool = option(
        False, what="no network in the training container: the code then travels as the `code` input channel, as "
        "the SageMaker SDK ships it (batch transform refuses it, see 3)",
    )
    retry_attempts: int = option(
        2, what="`RetryStrategy.MaximumRetryAttempts` of fold and final jobs (SageMaker restarts a job that failed "
        "with `InternalServerError`); transform jobs, which have no `RetryStrategy`, are retried by cvtune as "
        "`{job}-r{n}`; `0` turns both off", ge=0, le=30,
    )
    poll_interval_s: float = option(
        30.0, shown="`30`", what="seconds between polls of running jobs (the amazon provider's `check_interval`); "
        "lower it only against the emulator", gt=0, le=3600,
        fix="SageMaker jobs take minutes: 10-30 s is plenty (lower only against an emulator)",
    )
    enable_inter_container_traffic_encryption: bool = option(False, what="for multi-instance jobs")
    use_spot_instances: bool = option(False, what="managed spot; rejected together with `keep_alive_period_s > 0`")
    enable_profiler: bool = option(False, what="SageMaker Debugger profiling (off: `ProfilerConfig.DisableProfiler`)")
    max_parallel_jobs: int | None = option(what="most fold jobs in flight at once (the backend's capacity)", ge=1, le=10_000)
    tags: dict[str, Any] = option(
        {}, what="added to every job, model, package group and package (`aws:` and `cvtune:` prefixes are reserved)",
        fix='e.g. {"team": "ml"}',
    )
    release_pools: Literal["auto", "never"] = option(
        "auto", what='`"auto"`: end each warm pool once nothing will use it (below); `"never"`: every pool idles for '
        "its full keep-alive",
    )
    price_per_instance_hour: float | None = option(
        what="the price of one instance-hour of `instance_type` in your region; summaries and the plan then show "
        "money (cvtune ships no price table)", ge=0,
        fix="give the on-demand price of one instance-hour of instance_type in your region, e.g. 0.115",
    )
    input_mode: Literal["File", "FastFile"] = option(
        "File", what='`"File"` copies each channel onto the instance before the script starts; `"FastFile"` streams '
        "it from S3 as the script reads (section 2)",
    )

    @model_validator(mode="after")
    def _check_together(self) -> SageMakerOptions:
        """Patterns and checks across keys; a :class:`ConfigError` naming the key (``parse_options``
        prefixes it with where the settings came from)."""
        if not self.role_arn:
            raise ConfigError(
                "role_arn", "is required for the sagemaker backend",
                "set it to the SageMaker execution role, e.g. arn:aws:iam::123456789012:role/SageMakerRole",
            )
        if not ROLE_ARN_RE.match(self.role_arn):
            raise ConfigError(
                "role_arn", f"{self.role_arn!r} is not an IAM role ARN", "use the form arn:aws:iam::<12-digit account>:role/<name>"
            )
        if not self.s3_prefix:
            raise ConfigError(
                "s3_prefix", "is required for the sagemaker backend",
                "set it to s3://<bucket>/<prefix> (training code, channels and job outputs go under it)",
            )
        if not S3_PREFIX_RE.match(self.s3_prefix):
            raise ConfigError("s3_prefix", f"{self.s3_prefix!r} is not an s3://bucket/prefix URI", "e.g. s3://my-bucket/cvtune")
        if not INSTANCE_TYPE_RE.match(self.instance_type):
            raise ConfigError("instance_type", f"{self.instance_type!r} is not a SageMaker instance type", "e.g. ml.m5.large")
        if self.region_name is not None and not REGION_RE.match(self.region_name):
            raise ConfigError("region_name", f"{self.region_name!r} is not an AWS region name", "e.g. us-east-1")
        # warm-pools guide, Considerations: warm pools are not supported with managed spot training
        if self.use_spot_instances and self.keep_alive_period_s > 0:
            raise ConfigError(
                "use_spot_instances",
                "managed spot training cannot use warm pools (KeepAlivePeriodInSeconds > 0)",
                "set keep_alive_period_s to 0 to use spot instances, or turn use_spot_instances off",
            )
        if self.vpc_config is not None:
            _check_vpc(self.vpc_config, "vpc_config")
        _check_tags(self.tags, "tags")
        return self


def _check_vpc(vpc: Any, name: str) -> dict[str, list[str]]:
    fix = 'give {"Subnets": ["subnet-..."], "SecurityGroupIds": ["sg-..."]}'
    if not isinstance(vpc, dict):
        raise ConfigError(name, f"expected a mapping, got {vpc!r}", fix)
    unknown = sorted(set(vpc) - {"Subnets", "SecurityGroupIds"})
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", "unknown VpcConfig key", fix)
    out: dict[str, list[str]] = {}
    for key, most in (("Subnets", 16), ("SecurityGroupIds", 5)):
        value = vpc.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{name}.{key}", f"expected a non-empty list of ids, got {value!r}", fix)
        if len(value) > most:
            raise ConfigError(f"{name}.{key}", f"at most {most} allowed, got {len(value)}")
        out[key] = list(value)
    return out


def _check_tags(tags: Any, name: str) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise ConfigError(name, f"expected a mapping of key: value, got {tags!r}", 'e.g. {"team": "ml"}')
    if len(tags) > MAX_TAGS - RESERVED_TAGS:
        raise ConfigError(name, f"at most {MAX_TAGS - RESERVED_TAGS} tags (cvtune adds {RESERVED_TAGS}), got {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128:
            raise ConfigError(f"{name}.{key}", "tag keys are strings of 1-128 characters")
        if key.startswith(("aws:", "cvtune:")):
            raise ConfigError(f"{name}.{key}", "the aws: and cvtune: tag prefixes are reserved", "rename the tag")
        if not isinstance(value, str) or len(value) > 256:
            raise ConfigError(f"{name}.{key}", f"tag values are strings of at most 256 characters, got {value!r}")
    return dict(tags)
