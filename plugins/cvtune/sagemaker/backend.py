"""The SageMaker backend: every fold job is a ``CreateTrainingJob`` on a warm pool.

Where a fold job is launched: :meth:`SageMakerBackend.submit` → :func:`training_job_request`
(code and local channels staged to S3 by :mod:`cvtune.sagemaker.staging`, parameters built by the pure
:func:`cvtune.sagemaker.requests.create_training_job`) → ``CreateTrainingJob``.

Warm-pool rule. SageMaker hands the instances a finished job kept alive
(``ResourceConfig.KeepAlivePeriodInSeconds``) to the next job only if both have the same role,
instance type and count, volume size and volume KMS key, VPC subnets and security groups,
network isolation and inter-container traffic encryption, and neither uses spot instances. So
every request takes these from one place, :class:`~cvtune.sagemaker.config.SageMakerConfig`
(:meth:`~cvtune.sagemaker.config.SageMakerConfig.resource_config` and
:meth:`~cvtune.sagemaker.config.SageMakerConfig.warm_pool_key`, which also includes the image); the
final training job must be built from the same config (same ``warm_pool_key()``) to land on the
pool the fold jobs leave behind. Spot together with a keep-alive period is rejected up front.

Counting reuse without listing the run. SageMaker's ``WarmPoolStatus.Status == "Reused"`` sits
on the job whose pool *was taken* (the provider), with ``ReusedByJob`` naming the job that took
it — and only from the moment the next job starts. cvtune reports reuse on the *consumer*: the
tuner keeps following, in its ledger, each ended fold job whose pool is not final yet (one
``DescribeTrainingJob`` per such pool each time jobs end, after launching on the pools they left), and
marks the job named in ``ReusedByJob`` as having started on a warm pool. A provider's own
``Reused`` is reported as ``"PassedOn"``. Nothing lists the run's jobs, so the calls per fold
job stay flat however long the run is, and a deferred run keeps that state in its ledger across
triggers and resumes. Only a single job outside a run (the final model) asks
``ListTrainingJobs`` once, in a ``CreationTime`` window that can hold its provider
(:meth:`SageMakerBackend.pool_provider`).

Billing. ``BillableTimeInSeconds`` is the job's time and ``WarmPoolStatus.
ResourceRetainedBillableTimeInSeconds`` the time its pool was kept afterwards; AWS: "Multiply
ResourceRetainedBillableTimeInSeconds by the number of instances (InstanceCount) in your
training cluster to get the total compute time SageMaker bills you" (API reference,
WarmPoolStatus). Both are reported per job; the ledger sums them.

Releasing pools. :meth:`SageMakerBackend.release_pool` ends a job's warm pool now with
``UpdateTrainingJob`` and ``ResourceConfig.KeepAlivePeriodInSeconds = 0`` (a pool is
"Terminated ... if they are terminated by a user", API reference WarmPoolStatus; "Create, update,
or terminate warm pools", developer guide, *Use SageMaker AI managed warm pools*). The tuner calls
it once nothing will use the pool (``release_pools: auto``).

Clients come from the amazon provider's hooks (``SageMakerHook`` / ``S3Hook``) with adaptive
retries; ``CreateTrainingJob`` refusals for rate or quota are retried with jittered backoff
(:mod:`cvtune.sagemaker.throttle`).

Sync and async. :meth:`SageMakerBackend.describe` (the task's polls) and
:meth:`SageMakerBackend.adescribe_many` (a deferred run's polls in the triggerer) run the same
steps, :meth:`SageMakerBackend._describing`: a generator that yields each SageMaker call it
needs (``DescribeTrainingJob``) and receives its response, so the describe logic, the response mapping
(:func:`job_description`) and the error mapping exist once. The sync driver makes the calls on
the boto3 client; the async one awaits them on the hook's aiobotocore client, opened once per
event loop and closed by :meth:`SageMakerBackend.aclose` — no call of a trigger's poll goes
through a thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError
from cvtune.sagemaker import requests as sm_requests
from cvtune.sagemaker.config import SageMakerConfig
from cvtune.sagemaker.errors import error_code, error_message, is_already_exists, is_not_found
from cvtune.sagemaker.staging import Staging
from cvtune.sagemaker.throttle import Backoff
from cvtune.states import JobStatus, WarmPoolStatus

log = logging.getLogger("cvtune.sagemaker.backend")
T = TypeVar("T")

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
    digests = {name: d for name, uri in spec.channels.items() if (d := staging.digest(uri))}
    return sm_requests.create_training_job(spec, config, region=region, code_uri=code_uri, channels=channels,
                                           digests=digests)


def log_uri(region: str, name: str) -> str:
    """The CloudWatch console page of the job's log streams."""
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logStream:group={LOG_GROUP};prefix={name};streamFilter=typeLogStreamPrefix"
    )




def _timestamp(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else (float(value) if value is not None else None)


def job_description(
    name: str, raw: dict[str, Any], *, tags: dict[str, str], took_pool: bool = False, region: str
) -> JobDescription:
    """The ``DescribeTrainingJob`` response ``raw`` of job ``name`` as the tuner sees it.

    ``Stopping`` is still in flight; ``took_pool``: this job started on a pool another job passed
    on (see the module docstring: reuse is reported on the consumer, the provider's own
    ``Reused`` becomes ``PassedOn``).
    """
    status = raw["TrainingJobStatus"]
    warm = raw.get("WarmPoolStatus") or {}
    pool = warm.get("Status")
    retained = warm.get("ResourceRetainedBillableTimeInSeconds")
    return JobDescription(
        name=name,
        status=JobStatus.IN_PROGRESS if status == JobStatus.STOPPING else status,
        failure_reason=raw.get("FailureReason"),
        final_metrics={m["MetricName"]: float(m["Value"]) for m in raw.get("FinalMetricDataList", [])},
        model_artifacts=(raw.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
        start_time=_timestamp(raw.get("TrainingStartTime")),
        end_time=_timestamp(raw.get("TrainingEndTime")),
        billable_seconds=raw.get("BillableTimeInSeconds"),
        warm_pool_status=WarmPoolStatus.REUSED if took_pool else (WarmPoolStatus.PASSED_ON if pool == WarmPoolStatus.REUSED else pool),
        log_uri=log_uri(region, name),
        tags=tags,
        pool_status=pool,
        pool_reused_by=warm.get("ReusedByJob"),
        retained_seconds=None if retained is None else float(retained),
    )


@dataclass(frozen=True)
class _Call:
    """One SageMaker call a step needs: ``method`` of the client with ``params``; ``what`` names it in errors."""

    what: str
    method: str
    params: dict[str, Any]


Steps = Generator[_Call, Any, T]  # yields the calls it needs, is sent their responses, returns the result


class SageMakerBackend(Backend):
    """Fold jobs as SageMaker training jobs.

    ``sagemaker_client``, ``async_sagemaker_client`` (an open aiobotocore client), ``s3_client`` and
    ``sleep`` are test seams.
    """

    name = "sagemaker"

    def __init__(
        self,
        config: SageMakerConfig,
        *,
        sagemaker_client: Any = None,
        async_sagemaker_client: Any = None,
        s3_client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        # SageMaker jobs take minutes: poll like the amazon provider's operators (check_interval 30 s),
        # not every 2 s; an emulator's connection lowers it (poll_interval_s)
        self.poll_interval_s = self.default_poll_s = config.poll_interval_s
        self._sm = sagemaker_client
        self._asm = async_sagemaker_client  # an open aiobotocore client; its owner closes it
        self._aio: tuple[asyncio.AbstractEventLoop, Any, AsyncExitStack] | None = None  # the one we opened
        self._s3 = s3_client
        self.backoff = Backoff(sleep=sleep)
        self._sleep = sleep
        self._staging: Staging | None = None
        self._tags: dict[str, dict[str, str]] = {}  # job name -> tags (from submit, or ListTags once)
        self._arns: dict[str, str] = {}  # job name -> ARN, from its last describe (for ListTags)
        self._last_round = -float("inf")  # monotonic time wait()'s last round of describes began
        self._round: list[str] = []  # the jobs that round has yet to describe

    # -- clients ---------------------------------------------------------------------------
    @property
    def sagemaker(self) -> Any:
        if self._sm is None:
            self._sm = self.config.client("sagemaker")
        return self._sm

    async def async_sagemaker(self) -> Any:
        """The SageMaker aiobotocore client of the running event loop, opened on first use.

        An aiobotocore client belongs to the loop it was opened in, so a backend used from a new
        loop opens a new one. Opening it blocks (connection lookup, credentials): in a thread.
        """
        if self._asm is not None:
            return self._asm
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            context = await asyncio.to_thread(self.config.client, "sagemaker", deferrable=True)
            stack = AsyncExitStack()
            client = await stack.enter_async_context(context)
            self._aio = (loop, client, stack)
        return self._aio[1]

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

    @property
    def instance_count(self) -> int:  # type: ignore[override]
        return self.config.instance_count

    @property
    def price_per_instance_hour(self) -> float | None:  # type: ignore[override]
        return self.config.price_per_instance_hour

    @property
    def releases_pools(self) -> bool:
        return self.config.release_pools == "auto" and self.config.keep_alive_period_s > 0

    def release_pool(self, name: str) -> bool:
        """``UpdateTrainingJob`` with ``KeepAlivePeriodInSeconds: 0``: the pool ``name`` left ends now.

        A pool already taken or ended is refused with a ``ValidationException``: ``False``.
        """
        from botocore.exceptions import ClientError

        try:
            self.backoff.call(
                f"UpdateTrainingJob {name}", self.sagemaker.update_training_job,
                TrainingJobName=name, ResourceConfig={"KeepAlivePeriodInSeconds": 0},
            )
        except ClientError as exc:
            if is_not_found(exc) or error_code(exc) == "ValidationException":
                log.info("not releasing the pool of %s: %s", name, error_message(exc))
                return False
            raise
        log.info("released the warm pool of %s", name)
        return True

    def owner_tags(self, name: str) -> dict[str, str]:
        """Tags from this process's own ``CreateTrainingJob``, else ``ListTags`` (once per job)."""
        if name not in self._tags:
            arn = self._arns.get(name) or self._run(self._describe_raw(name))["TrainingJobArn"]
            self._tags[name] = self._run(self._listing_tags(name, arn))
        return self._tags[name]

    def pool_provider(self, name: str, window_s: float) -> str | None:
        """The job whose warm pool job ``name`` started on, if any.

        One ``ListTrainingJobs`` of jobs whose pool was ``Reused``, created in the ``window_s``
        seconds before ``name`` (a provider ended before ``name`` was created, less than its
        keep-alive earlier): for single jobs such as the final model, never per fold job.
        """
        raw = self._run(self._describe_raw(name))
        created: Any = raw.get("CreationTime")
        params: dict[str, Any] = {"WarmPoolStatusEquals": WarmPoolStatus.REUSED.value, "MaxResults": 100}
        if hasattr(created, "timestamp"):
            import datetime as dt

            params.update(CreationTimeBefore=created, CreationTimeAfter=created - dt.timedelta(seconds=window_s))
        while True:
            page = self._run(self._one(_Call("ListTrainingJobs", "list_training_jobs", dict(params))))
            for job in page.get("TrainingJobSummaries", []):
                if (job.get("WarmPoolStatus") or {}).get("ReusedByJob") == name:
                    return job["TrainingJobName"]
            if not page.get("NextToken"):
                return None
            params["NextToken"] = page["NextToken"]

    # -- Backend ---------------------------------------------------------------------------
    def build_request(self, spec: JobSpec) -> dict[str, Any]:
        return training_job_request(spec, self.config, self.staging, self.region)

    def submit(self, spec: JobSpec) -> None:
        from botocore.exceptions import ClientError

        request = self.build_request(spec)
        try:
            self.backoff.call(f"CreateTrainingJob {spec.name}", self.sagemaker.create_training_job, **request)
        except ClientError as exc:
            if is_already_exists(exc):
                raise JobExistsError(spec.name) from exc
            raise
        self._tags[spec.name] = {t["Key"]: t["Value"] for t in request["Tags"]}
        log.info("created training job %s", spec.name)

    def describe(self, name: str) -> JobDescription:
        return self._run(self._describing(name, self.region))

    async def adescribe_many(self, names: Sequence[str]) -> list[JobDescription]:
        """:meth:`describe` of each of ``names`` on the async client, one after the other.

        One at a time like :meth:`wait`: a poll every few seconds is not worth bursting into
        the account's DescribeTrainingJob rate limit.
        """
        if not names:
            return []
        client = await self.async_sagemaker()
        region = region_of(self.config, client)
        return [await self._arun(self._describing(name, region), client) for name in names]

    def stop(self, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.backoff.call(f"StopTrainingJob {name}", self.sagemaker.stop_training_job, TrainingJobName=name)
        except ClientError as exc:
            if is_not_found(exc):
                raise JobNotFoundError(name) from exc
            if error_code(exc) != "ValidationException":  # e.g. "status Completed": it already ended
                raise
            log.info("not stopping %s: %s", name, error_message(exc))

    def wait(self, names: list[str], timeout: float) -> list[JobDescription]:
        """Like the default, but one round of DescribeTrainingJob per poll interval at most, and
        back as soon as a describe shows an end.

        A round describes each job in flight once; rounds start a poll interval apart. The first
        ended job found is returned at once — its pool can take the next job now, not after the
        rest of the round — and the next call carries on with the round where it stopped (without
        waiting), so calls stay within jobs in flight ÷ poll interval however often the tuner
        calls back.
        """
        start = time.monotonic()
        deadline = start + timeout
        wanted = set(names)
        self._round = [n for n in self._round if n in wanted]
        if not self._round:  # back-to-back calls wait out the interval since the last round began
            gap = min(self.poll_interval_s - (start - self._last_round), timeout)
            if gap > 0:
                self._sleep(gap)
        while True:
            if not self._round:
                self._round = list(names)
                self._last_round = time.monotonic()
            while self._round:
                d = self.describe(self._round.pop(0))
                if d.done:
                    return [d]
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return []
            self._sleep(min(max(0.0, self.poll_interval_s - (now - self._last_round)), remaining))
            if time.monotonic() >= deadline:
                return []

    def close(self) -> None:
        """Drops the clients' state; an async client still open is dropped too (see :meth:`aclose`)."""
        self._staging = None
        self._aio = None

    async def aclose(self) -> None:
        """:meth:`close`, closing first the async client this backend opened in the running loop."""
        opened, self._aio = self._aio, None
        if opened is not None and opened[0] is asyncio.get_running_loop():
            await opened[2].aclose()
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _describe_raw(self, name: str) -> Steps[dict[str, Any]]:
        from botocore.exceptions import ClientError

        try:
            return (yield _Call(f"DescribeTrainingJob {name}", "describe_training_job", {"TrainingJobName": name}))
        except ClientError as exc:
            if is_not_found(exc):
                raise JobNotFoundError(name) from exc
            raise

    def _describing(self, name: str, region: str) -> Steps[JobDescription]:
        """The steps of describing ``name``; :meth:`_run` or :meth:`_arun` make their calls.

        One ``DescribeTrainingJob``, nothing else: tags are only read when a job is re-attached
        (:meth:`owner_tags`), reuse is learned from the providers' descriptions (module docstring).
        """
        raw = yield from self._describe_raw(name)
        self._arns[name] = raw["TrainingJobArn"]
        return job_description(name, raw, tags=self._tags.get(name, {}), region=region)

    @staticmethod
    def _one(call: _Call) -> Steps[Any]:
        return (yield call)

    def _listing_tags(self, name: str, arn: str) -> Steps[dict[str, str]]:
        tags: dict[str, str] = {}
        params: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = yield _Call(f"ListTags {name}", "list_tags", dict(params))
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            if not page.get("NextToken"):
                return tags
            params["NextToken"] = page["NextToken"]

    def _run(self, steps: Steps[T]) -> T:
        """Make ``steps``' calls on the boto3 client; a failed call is raised at the step that made it."""
        try:
            call = next(steps)
            while True:
                try:
                    response = self.backoff.call(call.what, getattr(self.sagemaker, call.method), **call.params)
                except Exception as exc:  # noqa: BLE001 - handed to the step, which maps or re-raises it
                    call = steps.throw(exc)
                else:
                    call = steps.send(response)
        except StopIteration as done:
            return done.value

    async def _arun(self, steps: Steps[T], client: Any) -> T:
        """:meth:`_run` on the aiobotocore ``client``: every call awaited in the event loop."""
        try:
            call = next(steps)
            while True:
                try:
                    response = await self.backoff.acall(call.what, getattr(client, call.method), **call.params)
                except Exception as exc:  # noqa: BLE001
                    call = steps.throw(exc)
                else:
                    call = steps.send(response)
        except StopIteration as done:
            return done.value


__all__ = ["SageMakerBackend", "job_description", "log_uri", "region_of", "training_job_request"]
