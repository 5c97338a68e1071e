"""Training jobs: the record DescribeTrainingJob returns, and the lifecycle thread that drives it.

Lifecycle (DescribeTrainingJob, ``SecondaryStatus``): ``TrainingJobStatus`` is ``InProgress``
through the secondary statuses ``Starting`` → ``Downloading`` → ``Training`` → ``Uploading``, then
``Completed`` | ``Failed`` | ``Stopped`` (``Stopping`` in between after StopTrainingJob;
``MaxRuntimeExceeded`` when the stopping condition hits; ``Restarting`` when a ``RetryStrategy``
retries an ``InternalServerError``). AWS: "Starting - Starting the training job.", "Downloading -
An optional stage for algorithms that support File training input mode. It indicates that data is
being downloaded to the ML storage volumes.", "Training - Training is in progress.", "Uploading -
Training is complete and the model artifacts are being uploaded to the S3 location." Each change
is appended to ``SecondaryStatusTransitions``.

Billing starts at ``TrainingStartTime`` (after provisioning): a job that reuses a warm pool skips
provisioning — "Subsequent training jobs that match specified parameters run on the retained warm
pool infrastructure, which speeds up start times by reducing the time spent provisioning
resources." ``MaxRuntimeInSeconds`` — "The maximum length of time, in seconds, that a training job
can run before it is stopped" — stops the script (SIGTERM, then SIGKILL after the scaled 120 s
"Algorithms can use this 120-second window to save the model artifacts") and the job ends
``Stopped`` / ``MaxRuntimeExceeded`` with its model uploaded. StopTrainingJob does the same with
``Stopped``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cvtune.emulator import runner, s3io
from cvtune.emulator.metering import billable
from cvtune.states import JOB_ACTIVE, JobStatus, WarmPoolStatus

if TYPE_CHECKING:
    from cvtune.emulator.service import Service

log = logging.getLogger("cvtune.emulator.training")

MESSAGES = {
    "Starting": "Launching requested ML instances",
    "Reusing": "Reusing warm pool instances",
    "Preparing": "Preparing the instances for training",
    "Downloading": "Downloading input data",
    "Training": "Training image download completed. Training in progress.",
    "Uploading": "Uploading generated training model",
    "Completed": "Training job completed",
    "Failed": "Training job failed",
    "Stopping": "Stopping the training job",
    "Stopped": "The training job was stopped",
    "MaxRuntimeExceeded": "Job stopped because max run time reached",
    "Restarting": "Restarting the training job after an internal error",
}


@dataclass
class TrainingJob:
    request: dict[str, Any]
    arn: str
    created: float
    status: str = JobStatus.IN_PROGRESS
    secondary: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    start: float | None = None  # TrainingStartTime (real)
    end: float | None = None
    modified: float = 0.0
    billable_s: float = 0.0  # emulated seconds since TrainingStartTime, summed over the phases
    failure: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    model_uri: str | None = None
    took_pool_from: str | None = None
    cache_dir: str | None = None  # the pool's persistent cache while this job holds it (service.py)
    bytes_downloaded: int | None = None  # channel bytes fetched from S3 (File: all; FastFile: those read)
    bytes_total: int | None = None  # of all its channels
    attempts: int = 0
    log: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.request["TrainingJobName"]

    @property
    def keep_alive_s(self) -> int:
        return int(self.request["ResourceConfig"].get("KeepAlivePeriodInSeconds") or 0)

    def describe(self, service: Service) -> dict[str, Any]:
        r = self.request
        out: dict[str, Any] = {
            "TrainingJobName": self.name,
            "TrainingJobArn": self.arn,
            "TrainingJobStatus": self.status,
            "SecondaryStatus": self.secondary,
            "AlgorithmSpecification": r["AlgorithmSpecification"],
            "RoleArn": r["RoleArn"],
            "OutputDataConfig": r["OutputDataConfig"],
            "ResourceConfig": r["ResourceConfig"],
            "StoppingCondition": r["StoppingCondition"],
            "CreationTime": self.created,
            "LastModifiedTime": self.modified or self.created,
            "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
            "EnableNetworkIsolation": bool(r.get("EnableNetworkIsolation", False)),
            "EnableInterContainerTrafficEncryption": bool(r.get("EnableInterContainerTrafficEncryption", False)),
            "EnableManagedSpotTraining": bool(r.get("EnableManagedSpotTraining", False)),
        }
        for key in ("HyperParameters", "InputDataConfig", "VpcConfig", "Environment", "RetryStrategy", "CheckpointConfig"):
            if r.get(key) is not None:
                out[key] = r[key]
        if self.model_uri:
            out["ModelArtifacts"] = {"S3ModelArtifacts": self.model_uri}
        if self.start is not None:
            out["TrainingStartTime"] = self.start
        if self.end is not None:
            out["TrainingEndTime"] = self.end
            out["TrainingTimeInSeconds"] = billable(self.billable_s) if self.start is not None else 0
            out["BillableTimeInSeconds"] = billable(self.billable_s) if self.start is not None else 0
        if self.failure:
            out["FailureReason"] = self.failure
        if self.metrics:
            out["FinalMetricDataList"] = [
                {"MetricName": k, "Value": v, "Timestamp": self.end or self.modified} for k, v in self.metrics.items()
            ]
        pool = service.warm_pools.pools.get(self.name)
        if pool is not None:
            out["WarmPoolStatus"] = pool.status_dict(service.clock)
        elif self.status in JOB_ACTIVE and self.keep_alive_s > 0:
            out["WarmPoolStatus"] = {"Status": WarmPoolStatus.IN_USE}
        out["_attempts"] = self.attempts  # dropped on the wire; read by the meter
        out["_input"] = {"bytes_downloaded": self.bytes_downloaded, "bytes_total": self.bytes_total,
                         "took_pool": self.took_pool_from is not None}
        return out


class Lifecycle:
    """Drives one job through its statuses in its own thread."""

    def __init__(self, service: Service, job: TrainingJob) -> None:
        self.service = service
        self.job = job
        self.clock = service.clock
        self.timing = service.config.timing

    # -- status bookkeeping ------------------------------------------------------------------
    def _secondary(self, status: str, message_key: str | None = None) -> None:
        with self.service.lock:
            now = self.clock.now()
            if self.job.transitions:
                self.job.transitions[-1].setdefault("EndTime", now)
            self.job.transitions.append({"Status": status, "StartTime": now, "StatusMessage": MESSAGES[message_key or status]})
            self.job.secondary = status
            self.job.modified = now

    def _fill(self, began: float, emulated_s: float) -> bool:
        """End a billed phase that began at ``began`` (real) and stands for ``emulated_s``: the
        emulator's own work in it (S3 through moto, packing) counts towards that time, so its real
        cost — magnified by 1/time_scale — only lengthens the phase where it exceeds it. Billed:
        ``emulated_s`` plus any overrun, counted like the script's own time (emulated seconds with
        ``scaled_script``, so billing matches the wall clock; else real seconds, as real compute).
        True if the job was asked to stop meanwhile."""
        stopped = self.clock.wait(max(0.0, emulated_s - self.clock.emulated(self.clock.now() - began)), self.job.stop)
        overrun = max(0.0, self.clock.now() - began - self.clock.real(emulated_s))
        self.job.billable_s += emulated_s + (self.clock.emulated(overrun) if self.timing.scaled_script else overrun)
        return stopped

    def _wait(self, emulated_s: float, billed: bool) -> bool:
        """A simulated phase; True if the job was asked to stop meanwhile."""
        stopped = self.clock.wait(emulated_s, self.job.stop)
        if billed:
            self.job.billable_s += emulated_s
        return stopped

    # -- the thread --------------------------------------------------------------------------
    def run(self) -> None:
        job = self.job
        retries = int((job.request.get("RetryStrategy") or {}).get("MaximumRetryAttempts", 0))
        try:
            while True:
                job.attempts += 1
                outcome = self._attempt(reused=job.took_pool_from is not None and job.attempts == 1)
                if outcome == "InternalServerError" and job.attempts <= retries:
                    self._secondary("Restarting")
                    continue
                break
        except Exception as exc:  # noqa: BLE001 - an emulator bug must not leave a job InProgress
            log.exception("training job %s crashed", job.name)
            self._end(JobStatus.FAILED, "Failed", f"InternalServerError: emulator error: {exc}")
            return

    def _attempt(self, reused: bool) -> str:
        job, timing = self.job, self.timing
        self._secondary("Starting", "Reusing" if reused else "Starting")
        if self._wait(timing.reuse_start_s if reused else timing.provision_s, billed=False):
            return self._stopped()
        self._secondary("Starting", "Preparing")
        with self.service.lock:
            if job.start is None:
                job.start = self.clock.now()
        root = runner.JobRoot.make(job.name)
        try:
            self._secondary("Downloading")
            began = self.clock.now()
            try:
                argv, env, cwd, inputs = runner.prepare(root, job.request, self.service.s3, cache=self.service.objects,
                                                        warm_pool_cache=job.cache_dir)
            except runner.ClientError as exc:
                return self._end(JobStatus.FAILED, "Failed", f"ClientError: {exc}")
            except runner.AlgorithmError as exc:
                return self._end(JobStatus.FAILED, "Failed", f"AlgorithmError: {exc}")
            # download_s is the time to fetch all of a job's channels: File channels now, FastFile
            # ones as the script reads them (added to its Training time below)
            total = inputs.file_bytes + inputs.streamed_total
            job.bytes_total = total
            if self._fill(began, timing.download_s * (inputs.file_bytes / total if total else 1.0)):
                return self._stopped()
            if self.service.faults.job_attempt_fails():
                self._secondary("Training")
                return self._end(JobStatus.FAILED, "Failed", "InternalServerError: We encountered an internal error. Please try again.",
                                 final=False)
            self._secondary("Training")
            max_runtime = job.request["StoppingCondition"].get("MaxRuntimeInSeconds")
            process = runner.Process(argv, env, cwd, root("training.log"), launcher=self.service.launcher)
            began = self.clock.now()
            # MaxRuntimeInSeconds counts from TrainingStartTime: what is billed so far is used up
            remaining = None if max_runtime is None else max(0.0, max_runtime - job.billable_s)
            scaled = timing.scaled_script
            if scaled and remaining is not None:
                remaining = self.clock.real(remaining)
            code, cut = process.wait(remaining, job.stop)
            ran = self.clock.now() - began
            job.billable_s += self.clock.emulated(ran) if scaled else ran
            streamed = inputs.streamed_read()
            job.bytes_downloaded = (job.bytes_downloaded or 0) + inputs.file_bytes + streamed  # every attempt fetches
            if streamed and self._wait(timing.download_s * streamed / total, billed=True) and cut is None:
                cut = "stopped"
            job.log = process.log_tail(200)
            self.service.logs[job.name] = self._full_log(root("training.log"))
            from cvtune.metrics import extract_metrics

            job.metrics = extract_metrics(self.service.logs[job.name], job.request["AlgorithmSpecification"].get("MetricDefinitions") or [])
            if cut is None:
                reason = runner.failure_reason(root, code, job.log)
                if reason:
                    self._upload_output(root)
                    return self._end(JobStatus.FAILED, "Failed", reason)
            self._secondary("Uploading")
            began = self.clock.now()
            self._upload_model(root)
            self._upload_output(root)
            if self._fill(began, timing.upload_s) and cut is None:
                cut = "stopped"
            if cut == "max_runtime":
                return self._end(JobStatus.STOPPED, "MaxRuntimeExceeded", None)
            if cut == "stopped":
                return self._end(JobStatus.STOPPED, "Stopped", None)
            return self._end(JobStatus.COMPLETED, "Completed", None)
        finally:
            root.remove()

    @staticmethod
    def _full_log(path: str) -> str:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _stopped(self) -> str:
        return self._end(JobStatus.STOPPED, "Stopped", None)

    def _upload_model(self, root: runner.JobRoot) -> None:
        output = self.job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        uri = f"{output}/{self.job.name}/output/model.tar.gz"
        s3io.write(self.service.s3, uri, s3io.pack(root("model")))
        self.job.model_uri = uri

    def _upload_output(self, root: runner.JobRoot) -> None:
        output = self.job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        s3io.write(self.service.s3, f"{output}/{self.job.name}/output/output.tar.gz", s3io.pack(root("output", "data")))

    def _end(self, status: str, secondary: str, failure: str | None, final: bool = True) -> str:
        """Record the end of an attempt; ``final=False``: a retryable InternalServerError."""
        job = self.job
        retries = int((job.request.get("RetryStrategy") or {}).get("MaximumRetryAttempts", 0))
        if not final and job.attempts <= retries:
            return "InternalServerError"
        self._secondary(secondary)
        with self.service.lock:
            now = self.clock.now()
            job.transitions[-1]["EndTime"] = now
            job.status, job.failure, job.end, job.modified = status, failure, now, now
            self.service.job_ended(job)
        return status
