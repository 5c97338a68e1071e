"""The SageMaker backend: every fold job is a ``CreateTrainingJob`` on a warm pool.

Where a fold job is launched: :meth:`SageMakerBackend.submit` → :func:`training_job_request`
(code and local channels staged to S3 by :mod:`cvtune.aws.staging`, parameters built by the pure
:func:`cvtune.aws.requests.create_training_job`) → ``CreateTrainingJob``.

Warm-pool rule. SageMaker hands the instances a finished job kept alive
(``ResourceConfig.KeepAlivePeriodInSeconds``) to the next job only if both have the same role,
instance type and count, volume size and volume KMS key, VPC subnets and security groups,
network isolation and inter-container traffic encryption, and neither uses spot instances. So
every request takes these from one place, :class:`~cvtune.aws.config.SageMakerConfig`
(:meth:`~cvtune.aws.config.SageMakerConfig.resource_config` and
:meth:`~cvtune.aws.config.SageMakerConfig.warm_pool_key`, which also includes the image); the
final training job must be built from the same config (same ``warm_pool_key()``) to land on the
pool the fold jobs leave behind. Spot together with a keep-alive period is rejected up front.

Counting reuse. SageMaker's ``WarmPoolStatus.Status == "Reused"`` sits on the job whose pool
*was taken* (the provider), with ``ReusedByJob`` naming the job that took it — and only from the
moment the next job starts, long after the provider's own end was recorded. cvtune reports
reuse on the *consumer* instead: when a job is first seen ended, the backend lists the run's jobs
whose pool status is ``Reused`` (``ListTrainingJobs`` by name and warm-pool status) and reports
``warm_pool_status="Reused"`` if one of them names this job in ``ReusedByJob``. A provider's own
``Reused`` is reported as ``"PassedOn"``, so the ledger's ``warm_pool_reused`` counts each fold
job that started on a warm pool exactly once. Pools passed on by jobs of other runs (whose names
do not contain this run's id) are not counted.

Clients come from the amazon provider's hooks (``SageMakerHook`` / ``S3Hook``) with adaptive
retries; ``CreateTrainingJob`` refusals for rate or quota are retried with jittered backoff
(:mod:`cvtune.aws.throttle`). ``adescribe_many`` (deferrable runs) uses the base class's
thread-based default: aiobotocore, which the provider's async hooks need, cannot be installed
next to the pinned botocore.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from cvtune import store
from cvtune.aws import requests as sm_requests
from cvtune.aws.config import SageMakerConfig
from cvtune.aws.staging import Staging
from cvtune.aws.throttle import Backoff
from cvtune.backends.base import IN_PROGRESS, STOPPING, Backend, JobDescription, JobSpec
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError

log = logging.getLogger("cvtune.backends.sagemaker")

TAG_RUN = "cvtune:run"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def region_of(config: SageMakerConfig, client: Any = None) -> str:
    """The region jobs run in: the config's, the client's, or the environment's."""
    region = config.region_name or (client.meta.region_name if client is not None else None)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(
            "settings.region_name", "no AWS region known for the SageMaker backend",
            "set region_name in the connection extra or on the AWS connection",
        )
    return region


def training_job_request(spec: JobSpec, config: SageMakerConfig, staging: Staging, region: str) -> dict[str, Any]:
    """``CreateTrainingJob`` parameters of ``spec``; stages code and local channels on the way."""
    code_uri = staging.code(spec.entry_point)
    channels = {name: staging.channel(uri) for name, uri in spec.channels.items()}
    return sm_requests.create_training_job(spec, config, region=region, code_uri=code_uri, channels=channels)


def log_uri(region: str, name: str) -> str:
    """The CloudWatch console page of the job's log streams."""
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logStream:group={LOG_GROUP};prefix={name};streamFilter=typeLogStreamPrefix"
    )


def _code(exc: Exception) -> tuple[str, str]:
    error = getattr(exc, "response", {}).get("Error", {})
    return error.get("Code", ""), error.get("Message", "")


def _not_found(exc: Exception) -> bool:
    code, message = _code(exc)
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and "not found" in message.lower()
    )


def _timestamp(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else (float(value) if value is not None else None)


class SageMakerBackend(Backend):
    """Fold jobs as SageMaker training jobs. ``sagemaker_client``/``s3_client``/``sleep`` are test seams."""

    name = "sagemaker"
    poll_interval_s = 10.0

    def __init__(
        self,
        config: SageMakerConfig,
        *,
        sagemaker_client: Any = None,
        s3_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._sm = sagemaker_client
        self._s3 = s3_client
        self.backoff = Backoff(sleep=sleep)
        self._sleep = sleep
        self._staging: Staging | None = None
        self._tags: dict[str, dict[str, str]] = {}  # job name -> tags (from submit, or ListTags once)
        self._consumers: dict[str, str] = {}  # job that reused a pool -> job that passed it on
        self._ended: set[str] = set()
        self._store_client = lambda: self.s3
        store.use_s3_client(self._store_client)  # ledgers on s3:// go through the same connection

    # -- clients ---------------------------------------------------------------------------
    @property
    def sagemaker(self) -> Any:
        if self._sm is None:
            self._sm = self.config.client("sagemaker")
        return self._sm

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = self.config.client("s3")
        return self._s3

    @property
    def staging(self) -> Staging:
        if self._staging is None:
            self._staging = Staging(self.config.s3_prefix, self.s3)
        return self._staging

    @property
    def region(self) -> str:
        return region_of(self.config, self.sagemaker)

    @property
    def capacity(self) -> int | None:
        return self.config.max_parallel_jobs

    # -- Backend ---------------------------------------------------------------------------
    def build_request(self, spec: JobSpec) -> dict[str, Any]:
        return training_job_request(spec, self.config, self.staging, self.region)

    def submit(self, spec: JobSpec) -> None:
        from botocore.exceptions import ClientError

        request = self.build_request(spec)
        try:
            self.backoff.call(f"CreateTrainingJob {spec.name}", self.sagemaker.create_training_job, **request)
        except ClientError as exc:
            code, message = _code(exc)
            if code == "ResourceInUse" or "already exists" in message.lower():
                raise JobExistsError(spec.name) from exc
            raise
        self._tags[spec.name] = {t["Key"]: t["Value"] for t in request["Tags"]}
        log.info("created training job %s", spec.name)

    def describe(self, name: str) -> JobDescription:
        from botocore.exceptions import ClientError

        try:
            raw = self.backoff.call(f"DescribeTrainingJob {name}", self.sagemaker.describe_training_job, TrainingJobName=name)
        except ClientError as exc:
            if _not_found(exc):
                raise JobNotFoundError(name) from exc
            raise
        status = raw["TrainingJobStatus"]
        tags = self._job_tags(name, raw["TrainingJobArn"])
        pool = raw.get("WarmPoolStatus") or {}
        done = status not in (IN_PROGRESS, STOPPING)
        if done and name not in self._ended:
            self._ended.add(name)
            self._learn_reuse(name, tags)
        if name in self._consumers:
            pool_status = "Reused"
        elif pool.get("Status") == "Reused":
            pool_status = "PassedOn"
        else:
            pool_status = pool.get("Status")
        return JobDescription(
            name=name,
            status=IN_PROGRESS if status == STOPPING else status,
            failure_reason=raw.get("FailureReason"),
            final_metrics={m["MetricName"]: float(m["Value"]) for m in raw.get("FinalMetricDataList", [])},
            model_artifacts=(raw.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            start_time=_timestamp(raw.get("TrainingStartTime")),
            end_time=_timestamp(raw.get("TrainingEndTime")),
            billable_seconds=raw.get("BillableTimeInSeconds"),
            warm_pool_status=pool_status,
            log_uri=log_uri(self.region, name),
            tags=tags,
        )

    def stop(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.backoff.call(f"StopTrainingJob {name}", self.sagemaker.stop_training_job, TrainingJobName=name)
        except ClientError as exc:
            if _not_found(exc):
                raise JobNotFoundError(name) from exc
            if _code(exc)[0] != "ValidationException":  # e.g. "status Completed": it already ended
                raise
            log.info("not stopping %s: %s", name, _code(exc)[1])

    def wait(self, names: list[str], timeout: float) -> list[JobDescription]:
        """Like the default, but one round of DescribeTrainingJob per ``timeout`` at most.

        The tuner calls ``wait`` again right after it returns, so describing again at the
        deadline (as the default does) would describe every job twice per poll.
        """
        deadline = time.monotonic() + timeout
        while True:
            ended = [d for d in (self.describe(n) for n in names) if d.done]
            remaining = deadline - time.monotonic()
            if ended or remaining <= 0:
                return ended
            self._sleep(min(self.poll_interval_s, remaining))
            if time.monotonic() >= deadline:
                return []

    def close(self) -> None:
        self._staging = None
        store.forget_s3_client(self._store_client)

    # -- internals -------------------------------------------------------------------------
    def _job_tags(self, name: str, arn: str) -> dict[str, str]:
        if name not in self._tags:
            tags: dict[str, str] = {}
            kwargs: dict[str, Any] = {"ResourceArn": arn}
            while True:
                page = self.backoff.call(f"ListTags {name}", self.sagemaker.list_tags, **kwargs)
                tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
            self._tags[name] = tags
        return self._tags[name]

    def _learn_reuse(self, name: str, tags: dict[str, str]) -> None:
        """Find out whether the job that just ended started on a pool another job passed on."""
        run = tags.get(TAG_RUN)
        if not run or self.config.keep_alive_period_s == 0 or name in self._consumers:
            return
        kwargs: dict[str, Any] = {"NameContains": run, "WarmPoolStatusEquals": "Reused", "MaxResults": 100}
        while True:
            page = self.backoff.call(f"ListTrainingJobs {run}", self.sagemaker.list_training_jobs, **kwargs)
            for job in page.get("TrainingJobSummaries", []):
                consumer = (job.get("WarmPoolStatus") or {}).get("ReusedByJob")
                if consumer:
                    self._consumers[consumer] = job["TrainingJobName"]
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]


__all__ = ["SageMakerBackend", "log_uri", "region_of", "training_job_request"]
