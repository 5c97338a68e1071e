"""The SageMaker operations the emulator answers itself, over its state (one lock for all of it).

Training: ``CreateTrainingJob`` (validation, spot + keep-alive refused, quota, warm-pool match),
``DescribeTrainingJob``, ``StopTrainingJob``, ``UpdateTrainingJob`` (keep-alive), ``ListTrainingJobs``
(``NameContains``, ``StatusEquals``, ``WarmPoolStatusEquals``, creation/modification time bounds,
sorting and paging). Transform: ``CreateModel`` / ``DescribeModel`` / ``DeleteModel``,
``CreateTransformJob`` / ``DescribeTransformJob`` / ``StopTransformJob`` / ``ListTransformJobs``.
Tags: ``AddTags`` / ``ListTags`` / ``DeleteTags`` for the emulator's resources. Everything else
goes to moto's server (:mod:`cvtune.emulator.server`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

from cvtune.emulator import s3io, validation
from cvtune.emulator.clock import Clock
from cvtune.emulator.faults import Faults
from cvtune.emulator.launcher import Launcher
from cvtune.emulator.metering import Meter
from cvtune.emulator.quotas import LimitExceeded, Quotas
from cvtune.emulator.training import Lifecycle, TrainingJob
from cvtune.emulator.transform import TransformJob, TransformRun
from cvtune.emulator.warmpools import WarmPools, pool_key
from cvtune.states import JOB_ACTIVE, JobStatus

ACCOUNT = "123456789012"


class ServiceError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Timing:
    """Emulated seconds of the simulated phases (scaled by the clock)."""

    provision_s: float = 120.0  # a cold start: "typical startup times"
    reuse_start_s: float = 5.0  # on a warm pool: no provisioning
    download_s: float = 5.0
    upload_s: float = 5.0
    # The training script's own time is real compute by default. A benchmark whose script sleeps
    # for an emulated duration (already multiplied by the time scale) sets this: the script's real
    # seconds are then billed, and held against MaxRuntimeInSeconds, as emulated seconds.
    scaled_script: bool = False


@dataclass
class ServiceConfig:
    region: str = "us-east-1"
    timing: Timing = field(default_factory=Timing)
    quotas: Quotas = field(default_factory=Quotas)
    faults: Faults = field(default_factory=Faults)


class Service:
    def __init__(self, config: ServiceConfig, clock: Clock, s3: Any) -> None:
        self.config = config
        self.clock = clock
        self.s3 = s3
        self.faults = config.faults
        self.quotas = config.quotas
        self.lock = threading.RLock()
        self.meter = Meter()
        self.warm_pools = WarmPools(clock)
        self.jobs: dict[str, TrainingJob] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.transforms: dict[str, TransformJob] = {}
        self.tags: dict[str, list[dict[str, str]]] = {}
        self.logs: dict[str, str] = {}
        self.threads: list[threading.Thread] = []
        self.objects = s3io.ObjectCache()  # the emulator's copy of channel objects (see s3io)
        # scaled scripts start as forks of one running interpreter: a new interpreter per job would
        # add its start-up, magnified by 1/time_scale, to every job (cvtune.emulator.launcher)
        self.launcher = Launcher() if config.timing.scaled_script else None

    OPERATIONS = frozenset({
        "CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob", "UpdateTrainingJob", "ListTrainingJobs",
        "CreateModel", "DescribeModel", "DeleteModel", "CreateTransformJob", "DescribeTransformJob",
        "StopTransformJob", "ListTransformJobs", "AddTags", "ListTags", "DeleteTags",
    })

    def arn(self, kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{self.config.region}:{ACCOUNT}:{kind}/{name.lower()}"

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            validation.validate(operation, params)
        except validation.RequestInvalid as exc:
            raise ServiceError("ValidationException", str(exc)) from None
        handler = getattr(self, "op_" + operation)
        return handler(params)

    def _start(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    # -- training ------------------------------------------------------------------------------
    def _in_use(self, instance_type: str) -> int:
        running = sum(
            j.request["ResourceConfig"]["InstanceCount"]
            for j in self.jobs.values()
            if j.status in JOB_ACTIVE and j.request["ResourceConfig"]["InstanceType"] == instance_type
        )
        return running + self.warm_pools.retained_instances(instance_type)

    def op_CreateTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["TrainingJobName"]
        resources = p["ResourceConfig"]
        keep_alive = resources.get("KeepAlivePeriodInSeconds") or 0
        if p.get("EnableManagedSpotTraining") and keep_alive > 0:
            # warm-pools guide, Considerations: warm pools are not supported with managed spot training
            raise ServiceError("ValidationException",
                               "You can't use SageMaker managed warm pools with managed spot training: "
                               "KeepAlivePeriodInSeconds must be 0 when EnableManagedSpotTraining is true.")
        if "InstanceType" not in resources:
            raise ServiceError("ValidationException", "ResourceConfig.InstanceType is required (instance groups are not emulated)")
        with self.lock:
            if name in self.jobs:
                raise ServiceError("ResourceInUse", f"Training job names must be unique within an AWS account and region, "
                                   f"and a training job with this name already exists ({self.jobs[name].arn})")
            key = pool_key(p)
            pool = None if p.get("EnableManagedSpotTraining") else self.warm_pools.take(key, name)
            if pool is None:
                try:
                    self.quotas.check_training(resources["InstanceType"], self._in_use(resources["InstanceType"]),
                                               resources["InstanceCount"])
                except LimitExceeded as exc:
                    raise ServiceError("ResourceLimitExceeded", str(exc)) from None
            now = self.clock.now()
            job = TrainingJob(request=p, arn=self.arn("training-job", name), created=now, modified=now)
            job.took_pool_from = pool.job if pool else None
            if pool is not None:  # the persistent cache moves with the pool
                job.cache_dir, pool.cache_dir = pool.cache_dir, None
            elif keep_alive > 0 and not p.get("EnableManagedSpotTraining"):
                job.cache_dir = tempfile.mkdtemp(prefix=f"sm-emu-warmpoolcache-{name[:40]}-")
            self.jobs[name] = job
            if p.get("Tags"):
                self.tags[job.arn] = list(p["Tags"])
        self._start(Lifecycle(self, job).run, f"training-{name}")
        return {"TrainingJobArn": job.arn}

    def job_ended(self, job: TrainingJob) -> None:
        """Called under the lock when a job has ended: keep its instances as a pool if allowed."""
        resources = job.request["ResourceConfig"]
        cache, job.cache_dir = job.cache_dir, None
        itype, count = resources["InstanceType"], resources["InstanceCount"]
        if (job.status != JobStatus.COMPLETED or job.keep_alive_s <= 0 or job.request.get("EnableManagedSpotTraining")
                # "a warm pool is not retained after the completion of the training job" — and no error
                or not self.quotas.warm_pool_has_room(itype, self.warm_pools.retained_instances(itype), count)):
            if cache:
                shutil.rmtree(cache, ignore_errors=True)
            return
        self.warm_pools.keep(job.name, pool_key(job.request), itype, count, job.keep_alive_s, cache_dir=cache)

    def _job(self, name: str) -> TrainingJob:
        job = self.jobs.get(name)
        if job is None:
            raise ServiceError("ValidationException", f"Requested resource not found: Training job {name} does not exist")
        return job

    def op_DescribeTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.warm_pools.expire()
            out = self._job(p["TrainingJobName"]).describe(self)
        out.pop("_attempts", None)
        out.pop("_input", None)
        return out

    def op_StopTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            job = self._job(p["TrainingJobName"])
            if job.status != JobStatus.IN_PROGRESS:
                raise ServiceError("ValidationException", f"The training job {job.name} status is {job.status}. "
                                   "Only jobs in InProgress status can be stopped.")
            job.status = JobStatus.STOPPING
            job.modified = self.clock.now()
            job.stop.set()
        return {}

    def op_UpdateTrainingJob(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            job = self._job(p["TrainingJobName"])
            keep_alive = (p.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
            if keep_alive is not None:
                if job.status in JOB_ACTIVE:
                    job.request["ResourceConfig"] = {**job.request["ResourceConfig"], "KeepAlivePeriodInSeconds": keep_alive}
                elif job.name in self.warm_pools.pools:
                    try:
                        self.warm_pools.update_keep_alive(job.name, keep_alive)
                    except ValueError as exc:
                        raise ServiceError("ValidationException", str(exc)) from None
                else:
                    raise ServiceError("ValidationException", f"training job {job.name} has no warm pool to update")
            job.modified = self.clock.now()
        return {"TrainingJobArn": job.arn}

    def op_ListTrainingJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.warm_pools.expire()
            rows = [j.describe(self) for j in self.jobs.values()]
        rows = [r for r in rows if self._listed(r, p)]
        sort_by = p.get("SortBy", "CreationTime")
        field_of = {"Name": "TrainingJobName", "CreationTime": "CreationTime", "Status": "TrainingJobStatus"}[sort_by]
        rows.sort(key=lambda r: r[field_of], reverse=p.get("SortOrder", "Descending") == "Descending")
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults") or 10)
        page = rows[start : start + size]
        summaries: list[dict[str, Any]] = []
        for r in page:
            summary: dict[str, Any] = {k: r[k] for k in ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingJobStatus",
                                         "SecondaryStatus", "LastModifiedTime") if k in r}
            for k in ("TrainingEndTime", "WarmPoolStatus"):
                if k in r:
                    summary[k] = r[k]
            summaries.append(summary)
        out: dict[str, Any] = {"TrainingJobSummaries": summaries}
        if start + size < len(rows):
            out["NextToken"] = str(start + size)
        return out

    @staticmethod
    def _listed(row: dict[str, Any], p: dict[str, Any]) -> bool:
        if p.get("NameContains") and p["NameContains"].lower() not in row["TrainingJobName"].lower():
            return False
        if p.get("StatusEquals") and row["TrainingJobStatus"] != p["StatusEquals"]:
            return False
        if p.get("WarmPoolStatusEquals") and (row.get("WarmPoolStatus") or {}).get("Status") != p["WarmPoolStatusEquals"]:
            return False
        for key, field_name, after in (("CreationTimeAfter", "CreationTime", True), ("CreationTimeBefore", "CreationTime", False),
                                       ("LastModifiedTimeAfter", "LastModifiedTime", True),
                                       ("LastModifiedTimeBefore", "LastModifiedTime", False)):
            if key in p:
                bound = float(p[key])
                if (after and not row[field_name] > bound) or (not after and not row[field_name] < bound):
                    return False
        return True

    # -- models and transform ------------------------------------------------------------------
    def op_CreateModel(self, p: dict[str, Any]) -> dict[str, Any]:
        container = p.get("PrimaryContainer") or (p.get("Containers") or [None])[0]
        if not container or "ModelDataUrl" not in container:
            raise ServiceError("ValidationException", "the emulator serves a PrimaryContainer with ModelDataUrl")
        with self.lock:
            if p["ModelName"] in self.models:
                raise ServiceError("ValidationException",
                                   f"Cannot create already existing model \"{self.arn('model', p['ModelName'])}\".")
            model = {**p, "PrimaryContainer": container, "ModelArn": self.arn("model", p["ModelName"]),
                     "CreationTime": self.clock.now()}
            self.models[p["ModelName"]] = model
            if p.get("Tags"):
                self.tags[model["ModelArn"]] = list(p["Tags"])
        return {"ModelArn": model["ModelArn"]}

    def _model(self, name: str) -> dict[str, Any]:
        if name not in self.models:
            raise ServiceError("ValidationException", f"Could not find model \"{self.arn('model', name)}\".")
        return self.models[name]

    def op_DescribeModel(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            model = dict(self._model(p["ModelName"]))
        model.pop("Tags", None)
        model.pop("Containers", None)
        model.setdefault("EnableNetworkIsolation", False)
        return model

    def op_DeleteModel(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._model(p["ModelName"])
            del self.models[p["ModelName"]]
        return {}

    def op_CreateTransformJob(self, p: dict[str, Any]) -> dict[str, Any]:
        name = p["TransformJobName"]
        with self.lock:
            if name in self.transforms:
                raise ServiceError("ResourceInUse", f"Job name must be unique within an AWS account and region, "
                                   f"and a job with this name already exists ({self.transforms[name].arn})")
            model = self._model(p["ModelName"])
            now = self.clock.now()
            job = TransformJob(request=p, arn=self.arn("transform-job", name), created=now, modified=now)
            self.transforms[name] = job
            if p.get("Tags"):
                self.tags[job.arn] = list(p["Tags"])
        self._start(TransformRun(self, job, model).run, f"transform-{name}")
        return {"TransformJobArn": job.arn}

    def _transform(self, name: str) -> TransformJob:
        if name not in self.transforms:
            raise ServiceError("ValidationException", f"Could not find requested job with name {name}")
        return self.transforms[name]

    def op_DescribeTransformJob(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            return self._transform(p["TransformJobName"]).describe()

    def op_StopTransformJob(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            job = self._transform(p["TransformJobName"])
            if job.status != JobStatus.IN_PROGRESS:
                raise ServiceError("ValidationException", f"Transform job {job.name} is {job.status}; it cannot be stopped")
            job.status = JobStatus.STOPPING
            job.stop.set()
        return {}

    def op_ListTransformJobs(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            rows = [t.describe() for t in self.transforms.values()]
        rows = [r for r in rows if (not p.get("NameContains") or p["NameContains"].lower() in r["TransformJobName"].lower())
                and (not p.get("StatusEquals") or r["TransformJobStatus"] == p["StatusEquals"])]
        keys = ("TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime", "TransformJobStatus", "FailureReason")
        return {"TransformJobSummaries": [{k: r[k] for k in keys if k in r} for r in rows][: int(p.get("MaxResults") or 10)]}

    # -- tags ----------------------------------------------------------------------------------
    def owns(self, arn: str) -> bool:
        return any(f":{kind}/" in arn for kind in ("training-job", "transform-job", "model")) and (
            arn in self.tags or arn in {j.arn for j in self.jobs.values()} or arn in {t.arn for t in self.transforms.values()}
            or arn in {m["ModelArn"] for m in self.models.values()}
        )

    def op_AddTags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            tags = {t["Key"]: t["Value"] for t in self.tags.get(p["ResourceArn"], [])}
            tags.update({t["Key"]: t["Value"] for t in p["Tags"]})
            self.tags[p["ResourceArn"]] = [{"Key": k, "Value": v} for k, v in tags.items()]
        return {"Tags": p["Tags"]}

    def op_ListTags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            tags = list(self.tags.get(p["ResourceArn"], []))
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults") or 50)
        out: dict[str, Any] = {"Tags": tags[start : start + size]}
        if start + size < len(tags):
            out["NextToken"] = str(start + size)
        return out

    def op_DeleteTags(self, p: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.tags[p["ResourceArn"]] = [t for t in self.tags.get(p["ResourceArn"], []) if t["Key"] not in p["TagKeys"]]
        return {}

    def close(self) -> None:
        """The emulator stops: its object copies and the pools' caches go."""
        with self.lock:
            self.warm_pools.drop_caches()
            for job in self.jobs.values():
                if job.cache_dir:
                    shutil.rmtree(job.cache_dir, ignore_errors=True)
                    job.cache_dir = None
        self.objects.remove()
        if self.launcher is not None:
            self.launcher.stop()

    # -- reporting -----------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        with self.lock:
            self.warm_pools.expire()
            jobs = [j.describe(self) for j in self.jobs.values()]
            transforms = [t.describe() for t in self.transforms.values()]
        return self.meter.report(jobs, transforms)
