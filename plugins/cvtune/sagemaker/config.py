"""Settings of the SageMaker backend: the ``sagemaker`` keys of the ``cvtune`` connection extra.

:class:`SageMakerConfig` is validated once, before any job is launched; every error names the
key (``connection cvtune_default extra.role_arn``) and the fix. It also holds the pieces of a
``CreateTrainingJob`` request that decide whether fold jobs can share a warm pool
(:meth:`SageMakerConfig.resource_config`, :meth:`SageMakerConfig.warm_pool_key`), so the fold
jobs and the final training job are built from one source.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from cvtune.options import parse_options

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
        # every check of the schema: types, ranges, unknown keys ("did you mean"), patterns, across keys
        given = parse_options(SageMakerOptions, options, source=source, backend="sagemaker").given()
        options = {k: v for k, v in given.items() if k not in SETTINGS_KEYS}
        options["s3_prefix"] = options["s3_prefix"].rstrip("/")
        if options.get("image_uri") is None:  # the one check that needs a lookup (the region's image registry)
            from cvtune.sagemaker.images import check_framework

            check_framework(
                options.get("framework", cls.framework), options.get("framework_version", cls.framework_version), source
            )
        if options.get("vpc_config") is not None:
            options["vpc_config"] = {k: list(v) for k, v in options["vpc_config"].items()}
        options["tags"] = dict(options.get("tags", {}))
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
