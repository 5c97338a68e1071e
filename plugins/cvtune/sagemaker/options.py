"""The sagemaker backend's keys of the ``cvtune`` connection extra (and of ``--backend-config``).

Types and ranges are checked here; what needs more than one key or a lookup (the role ARN's form,
spot vs. warm pools, the framework's image, VPC and tags) in :meth:`SageMakerConfig.from_options`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from cvtune.options import Options, option

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
