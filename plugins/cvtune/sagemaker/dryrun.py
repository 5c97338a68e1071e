"""The SageMaker dry run: the requests a tuning run would send, validated, with nothing sent.

The real tuner plans the first trial against a backend that only records (in a scratch artifact
root that is deleted afterwards), so the hyperparameters, job names, tags and channels are exactly
what the run would use. Each fold job's ``CreateTrainingJob`` request is then built by the same
function the backend uses and checked against botocore's model of the SageMaker API. No client is
created and no credentials are needed; local data and code are hashed to show the S3 URIs they
would be uploaded to.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.errors import JobNotFoundError
from cvtune.sagemaker import requests as sm_requests
from cvtune.sagemaker.config import SageMakerConfig
from cvtune.sagemaker.staging import Staging


class _Recorder(Backend):
    """Accepts every job and never runs it."""

    name = "dry-run"

    def submit(self, spec: JobSpec) -> None:
        pass

    def describe(self, name: str) -> JobDescription:
        raise JobNotFoundError(name)

    def stop(self, name: str) -> None:
        pass


def warm_pool_plan(sm: SageMakerConfig, requests: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the run's fold jobs can reuse each other's instances, and why (not)."""
    if sm.use_spot_instances:
        return {"reusable": False, "reason": "spot instances never use warm pools"}
    if sm.keep_alive_period_s == 0:
        return {"reusable": False, "reason": "keep_alive_period_s is 0: every fold job provisions new instances"}
    keys = {
        (
            r["RoleArn"], repr(r["ResourceConfig"]), repr(r.get("VpcConfig")), r["EnableNetworkIsolation"],
            r["EnableInterContainerTrafficEncryption"], r["AlgorithmSpecification"]["TrainingImage"],
        )
        for r in requests
    }
    if len(keys) > 1:  # cannot happen with one config; kept so a regression shows up here
        return {"reusable": False, "reason": "fold job requests differ in ResourceConfig/VPC/role/image"}
    return {
        "reusable": True,
        "reason": (
            f"every fold job has the same role, ResourceConfig ({sm.instance_count} x {sm.instance_type}, "
            f"{sm.volume_size_gb} GB), VPC, isolation and encryption settings and image; a job created within "
            f"{sm.keep_alive_period_s} s of another's end reuses its instances"
        ),
    }


def dry_run(
    config: Any,
    manifest: dict[str, Any],
    sm: SageMakerConfig,
    *,
    run_id: str,
    region: str | None = None,
    warm_start: Any = None,
    assumptions: Any = None,
) -> dict[str, Any]:
    """``{"requests": [...], "plan": {...}}`` for the first trial of a tuning run.

    The plan's ``cost`` is :func:`cvtune.sagemaker.plan.plan_run` under ``assumptions``
    (:class:`~cvtune.sagemaker.plan.Assumptions`; default: a 3-minute cold start and jobs as long
    as ``max_runtime_s``): wall time, instance-hours, peak instances, quotas, money.
    """
    from cvtune.sagemaker.plan import Assumptions, plan_run

    assumptions = (assumptions or Assumptions()).check()  # a bad assumption fails before any work
    from cvtune.sagemaker.backend import region_of
    from cvtune.tuner import CVTuner

    region = region or region_of(sm)
    scratch = tempfile.mkdtemp(prefix="cvtune-dry-run-")
    try:
        tuner = CVTuner(config, manifest, _Recorder(), run_id=run_id, artifact_root=scratch, warm_start=warm_start)
        tuner.start()
        trial = tuner.ledger.trials[0]
        specs = [tuner._spec(trial, job) for job in trial["fold_jobs"]]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    staging = Staging(sm.s3_prefix)
    from cvtune.sagemaker.backend import training_job_request

    requests = [training_job_request(spec, sm, staging, region) for spec in specs]
    for request in requests:
        sm_requests.validate("CreateTrainingJob", request)
    folds = len(manifest["folds"])
    parallel = [n for n in (config.max_parallel_jobs, sm.max_parallel_jobs) if n]
    concurrent_jobs = min([config.max_parallel_trials * folds, *parallel])
    return {
        "requests": [{"operation": "CreateTrainingJob", "params": r} for r in requests],
        "plan": {
            "run_id": run_id,
            "region": region,
            "training_image": requests[0]["AlgorithmSpecification"]["TrainingImage"] if requests else None,
            "fold_jobs_total": config.max_trials * folds,
            "max_concurrent_jobs": concurrent_jobs,
            "max_concurrent_instances": concurrent_jobs * sm.instance_count,
            "warm_pool": warm_pool_plan(sm, requests),
            "cost": plan_run(config, folds, sm, assumptions),
            "uploads": [{"local": u["local"], "uri": u["uri"], "kind": u["kind"]} for u in staging.uploads],
        },
    }
