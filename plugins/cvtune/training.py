"""Single training jobs outside a tuning run: the final model on the full training set.

The final job uses the same script and backend as the fold jobs. Its channels are the
manifest's full-train set and, when the manifest has one, the holdout set as channel ``test``,
so the script's ``test:*`` metric lines are the holdout evaluation — on SageMaker too, where the
model never comes back to this machine: the metric definitions below turn those lines into
``FinalMetricDataList`` entries. On SageMaker the final job is built from the same config as the
fold jobs (same ``ResourceConfig`` and keep-alive), so it starts on the warm pool they leave.
"""

from __future__ import annotations

import logging
from typing import Any

from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.errors import JobExistsError, RunFailedError
from cvtune.metrics import default_metric_definitions
from cvtune.states import JobStatus, WarmPoolStatus

log = logging.getLogger("cvtune.training")

METRIC_NAMES = ("auc", "logloss", "accuracy", "f1", "rmse", "mae", "r2")
FINAL_METRIC_DEFINITIONS = default_metric_definitions(
    f"{channel}:{name}" for channel in ("train", "test") for name in METRIC_NAMES
)


def holdout_definition(definition: dict[str, str]) -> dict[str, str] | None:
    """The ``test:X`` twin of a ``validation:X`` definition whose regex names its channel."""
    name, regex = definition["Name"], definition["Regex"]
    if not name.startswith("validation:") or "validation" not in regex:
        return None
    return {"Name": "test:" + name[len("validation:"):], "Regex": regex.replace("validation", "test")}


def final_metric_definitions(metric_definitions: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """What the final job's log is searched for: the generic script's ``train:``/``test:`` metrics,
    the tuning config's own definitions (first: they win), and a ``test:X`` twin of each ``validation:X`` one, so a
    custom objective is measured on the holdout without writing its definition twice."""
    out: list[dict[str, str]] = []
    names: set[str] = set()
    # the config's own definitions first: a script's log format wins over the generic script's
    for d in [*(metric_definitions or []), *map(holdout_definition, metric_definitions or []), *FINAL_METRIC_DEFINITIONS]:
        if d is not None and d["Name"] not in names:
            names.add(d["Name"])
            out.append(d)
    return out


def ensure_job(backend: Backend, spec: JobSpec) -> None:
    """Create the job, or re-attach if an earlier attempt of the same task created it.

    A job of that name whose tags differ belongs to someone else: that is an error, never reuse.
    """
    try:
        backend.submit(spec)
    except JobExistsError:
        existing = backend.describe(spec.name).tags or {}
        if any(existing.get(k) != v for k, v in spec.tags.items()):
            raise RunFailedError(
                f"job name {spec.name} is taken by another job (tags {existing}); refusing to reuse it"
            ) from None
        log.info("re-attached to existing job %s", spec.name)


def wait_for(backend: Backend, name: str, poll_s: float = 5.0) -> JobDescription:
    while True:
        ended = backend.wait([name], timeout=poll_s)
        if ended:
            return ended[0]


def train_final(
    backend: Backend,
    manifest: dict[str, Any],
    *,
    entry_point: str,
    hyperparameters: dict[str, Any],
    job_name: str,
    metric_definitions: list[dict[str, str]] | None = None,
    max_runtime_s: int = 3600,
    tags: dict[str, str] | None = None,
    poll_s: float = 5.0,
    release_pool: bool = True,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Train on the full training set (holdout as ``test``); returns the model URI and metrics.

    ``release_pool``: end the job's warm pool once it ended (when the backend releases pools), so
    nothing is billed for a keep-alive no later step uses.
    """
    channels = {"train": manifest["full_train"]["uri"]}
    if manifest.get("holdout"):
        channels["test"] = manifest["holdout"]["uri"]
    definitions = final_metric_definitions(metric_definitions)
    spec = JobSpec(
        name=job_name,
        entry_point=entry_point,
        hyperparameters=hyperparameters,
        channels=channels,
        metric_definitions=definitions,
        max_runtime_s=max_runtime_s,
        tags={"cvtune:purpose": "final", **(tags or {})},
        environment=dict(environment or {}),
    )
    ensure_job(backend, spec)
    description = wait_for(backend, job_name, poll_s)
    released = bool(release_pool and backend.releases_pools and backend.release_pool(job_name))
    # a provider ended less than its keep-alive (and at most its runtime) before this job was created
    window = getattr(getattr(backend, "config", None), "keep_alive_period_s", 0) + max_runtime_s
    provider = backend.pool_provider(job_name, window) if window > max_runtime_s else None
    if description.status != JobStatus.COMPLETED:
        raise RunFailedError(f"final training job {job_name} {description.status}: {description.failure_reason}")
    return {
        "job_name": job_name,
        "model_uri": description.model_artifacts,
        "metrics": description.final_metrics,
        "holdout_metrics": {k[len("test:") :]: v for k, v in description.final_metrics.items() if k.startswith("test:")},
        "hyperparameters": hyperparameters,
        "entry_point": entry_point,
        "billable_seconds": description.billable_seconds,
        "warm_pool_status": WarmPoolStatus.REUSED if provider else description.warm_pool_status,
        "took_pool_of": provider,
        "pool_released": released,
        "log_uri": description.log_uri,
    }
