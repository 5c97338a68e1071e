"""Settings of the SageMaker backend: the ``sagemaker`` keys of the ``cvtune`` connection extra.

:class:`SageMakerConfig` is validated once, before any job is launched; every error names the
key (``connection cvtune_default extra.role_arn``) and the fix. It also holds the pieces of a
``CreateTrainingJob`` request that decide whether fold jobs can share a warm pool
(:meth:`SageMakerConfig.resource_config`, :meth:`SageMakerConfig.warm_pool_key`), so the fold
jobs and the final training job are built from one source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from cvtune.errors import ConfigError
from cvtune.options import parse_options

ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
S3_PREFIX_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
MAX_TAGS = 50  # per SageMaker resource
RESERVED_TAGS = 4  # the most cvtune adds to one job: run/trial/fold on fold jobs, purpose/dag/task/run on the final job
SETTINGS_KEYS = frozenset({"backend", "artifact_root"})  # read by Settings, not by this class



@dataclass(frozen=True)
class SageMakerConfig:
    """How fold jobs run on SageMaker. ``role_arn`` and ``s3_prefix`` are required."""

    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None
    role_arn: str = ""
    s3_prefix: str = ""
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    volume_size_gb: int = 30
    keep_alive_period_s: int = 1800
    image_uri: str | None = None
    framework: str = "xgboost"
    framework_version: str = "1.7-1"
    vpc_config: dict | None = None
    volume_kms_key_id: str | None = None
    output_kms_key_id: str | None = None
    enable_network_isolation: bool = False
    enable_inter_container_traffic_encryption: bool = False
    use_spot_instances: bool = False
    enable_profiler: bool = False
    max_parallel_jobs: int | None = None
    retry_attempts: int = 2  # RetryStrategy.MaximumRetryAttempts of every job; 0: none
    poll_interval_s: float = 30.0  # DescribeTrainingJob rounds, as the amazon provider's check_interval
    tags: dict[str, str] = field(default_factory=dict)
    # auto: end each warm pool once nothing will use it (see cvtune.sagemaker.pools); never: keep
    # every pool for its full keep-alive (e.g. for a run started by hand right after)
    release_pools: str = "auto"
    price_per_instance_hour: float | None = None  # turns instance-hours into money; no price table shipped
    input_mode: str = "File"  # File | FastFile (streams channels from S3 instead of copying them)

    # -- validation ------------------------------------------------------------------------
    @classmethod
    def from_options(cls, options: dict[str, Any], source: str = "settings") -> SageMakerConfig:
        """Validate connection-extra style options; raises ConfigError naming ``source.key``."""
        from cvtune.sagemaker.options import SageMakerOptions

        if isinstance(options, dict):
            options = {k: v for k, v in options.items() if k != "backend"}
        # types, ranges and unknown keys (with "did you mean")
        given = parse_options(SageMakerOptions, options, source=source, backend="sagemaker").given()
        options = {k: v for k, v in given.items() if k not in SETTINGS_KEYS}

        def name(key: str) -> str:
            return f"{source}.{key}"

        role = options.get("role_arn", "")
        if not role:
            raise ConfigError(
                name("role_arn"), "is required for the sagemaker backend",
                "set it to the SageMaker execution role, e.g. arn:aws:iam::123456789012:role/SageMakerRole",
            )
        if not ROLE_ARN_RE.match(role):
            raise ConfigError(
                name("role_arn"), f"{role!r} is not an IAM role ARN",
                "use the form arn:aws:iam::<12-digit account>:role/<name>",
            )
        prefix = options.get("s3_prefix", "")
        if not prefix:
            raise ConfigError(
                name("s3_prefix"), "is required for the sagemaker backend",
                "set it to s3://<bucket>/<prefix> (training code, channels and job outputs go under it)",
            )
        if not S3_PREFIX_RE.match(prefix):
            raise ConfigError(name("s3_prefix"), f"{prefix!r} is not an s3://bucket/prefix URI", "e.g. s3://my-bucket/cvtune")
        options["s3_prefix"] = prefix.rstrip("/")
        instance_type = options.get("instance_type", cls.instance_type)
        if not INSTANCE_TYPE_RE.match(instance_type):
            raise ConfigError(name("instance_type"), f"{instance_type!r} is not a SageMaker instance type", "e.g. ml.m5.large")
        region = options.get("region_name")
        if region is not None and not REGION_RE.match(region):
            raise ConfigError(name("region_name"), f"{region!r} is not an AWS region name", "e.g. us-east-1")
        if options.get("use_spot_instances") and options.get("keep_alive_period_s", cls.keep_alive_period_s) > 0:
            raise ConfigError(
                name("use_spot_instances"),
                "managed spot training cannot use warm pools (KeepAlivePeriodInSeconds > 0)",
                "set keep_alive_period_s to 0 to use spot instances, or turn use_spot_instances off",
            )
        if options.get("image_uri") is None:
            from cvtune.sagemaker.images import check_framework

            check_framework(
                options.get("framework", cls.framework), options.get("framework_version", cls.framework_version), source
            )
        vpc = options.get("vpc_config")
        if vpc is not None:
            options["vpc_config"] = _check_vpc(vpc, name("vpc_config"))
        options["tags"] = _check_tags(options.get("tags", {}), name("tags"))
        return cls(**options)

    # -- request pieces --------------------------------------------------------------------
    def resource_config(self) -> dict[str, Any]:
        """``ResourceConfig`` of CreateTrainingJob; identical for every job that shares the pool."""
        config: dict[str, Any] = {
            "InstanceType": self.instance_type,
            "InstanceCount": self.instance_count,
            "VolumeSizeInGB": self.volume_size_gb,
        }
        if self.volume_kms_key_id:
            config["VolumeKmsKeyId"] = self.volume_kms_key_id
        if self.keep_alive_period_s > 0:
            config["KeepAlivePeriodInSeconds"] = self.keep_alive_period_s
        return config

    def warm_pool_key(self) -> tuple:
        """Everything that decides whether a job can reuse another job's warm pool.

        SageMaker matches a new job to a pool kept alive by an earlier one when role, instance
        type and count, volume size and KMS key, VPC subnets and security groups, network
        isolation and inter-container encryption are identical; spot jobs never match. The
        image is included too, so the final training job runs on the same container as the folds.
        """
        vpc = self.vpc_config or {}
        return (
            self.region_name,
            self.role_arn,
            self.instance_type,
            self.instance_count,
            self.volume_size_gb,
            self.volume_kms_key_id,
            tuple(sorted(vpc.get("Subnets", []))),
            tuple(sorted(vpc.get("SecurityGroupIds", []))),
            self.enable_network_isolation,
            self.enable_inter_container_traffic_encryption,
            self.image_uri or f"{self.framework}:{self.framework_version}",
            self.keep_alive_period_s > 0,
            self.use_spot_instances,
        )

    def resolved_image_uri(self, region: str | None = None) -> str:
        """``image_uri`` if given, else the framework's training image for the region."""
        if self.image_uri:
            return self.image_uri
        from cvtune.sagemaker.images import framework_image_uri

        return framework_image_uri(self.framework, self.framework_version, self.region_name or region)

    def tag_list(self, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
        """``Tags`` of a request: the config's tags, then ``extra`` (which wins on a clash)."""
        merged = {**self.tags, **(extra or {})}
        return [{"Key": k, "Value": str(v)} for k, v in merged.items()]

    def client(self, service: str = "sagemaker", *, deferrable: bool = False):
        """A boto3 client through the amazon provider's hook, with adaptive retries.

        Credentials, region and endpoint come from the Airflow connection ``aws_conn_id``
        (or boto3's default chain); retry settings in the connection's ``config_kwargs`` win
        over ours. ``deferrable=True`` gives the hook's aiobotocore client instead, as a context
        to open with ``async with`` (what ``get_async_conn`` returns, plus our retry settings).
        Either way the call blocks (connection lookup, role assumption): from an event loop,
        make it in a worker thread.
        """
        import importlib

        from botocore.config import Config

        # the provider's hook of the service where it has one (its client_type), else the base hook
        module, name = _SERVICE_HOOKS.get(service, ("airflow.providers.amazon.aws.hooks.base_aws", "AwsBaseHook"))
        hook_class = getattr(importlib.import_module(module), name)
        extra = {} if service in _SERVICE_HOOKS else {"client_type": service}
        hook = hook_class(aws_conn_id=self.aws_conn_id, region_name=self.region_name, **extra)
        ours = Config(retries={"mode": "adaptive", "max_attempts": 10})
        theirs = hook.conn_config.botocore_config
        config = ours.merge(theirs) if theirs else ours
        return hook.get_client_type(region_name=hook.region_name, config=config, deferrable=deferrable)


_SERVICE_HOOKS = {
    "sagemaker": ("airflow.providers.amazon.aws.hooks.sagemaker", "SageMakerHook"),
    "s3": ("airflow.providers.amazon.aws.hooks.s3", "S3Hook"),
}


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


SAGEMAKER_KEYS: frozenset[str] = frozenset(f.name for f in fields(SageMakerConfig)) | SETTINGS_KEYS

__all__ = ["SAGEMAKER_KEYS", "SageMakerConfig"]


class LazyClients:
    """``client`` (SageMaker) and ``s3``: made from ``self.config`` on first use unless injected.

    For classes holding a :class:`SageMakerConfig` as ``config``; tests inject Stubber-wrapped
    clients as ``_client`` / ``_s3``.
    """

    config: SageMakerConfig
    _client: Any = None
    _s3: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self.config.client("sagemaker")
        return self._client

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = self.config.client("s3")
        return self._s3
