"""The local backend's keys of the ``cvtune`` connection extra (and of ``--backend-config``)."""

from __future__ import annotations

from typing import ClassVar, Literal

from cvtune.local.backend import DEFAULT_PRELOAD
from cvtune.options import Options, option


class LocalOptions(Options):
    """The embedded default: a warm pool of worker processes on the task's host."""

    backend_doc: ClassVar[str] = '`"local"` (the default) or `"sagemaker"`'

    workers: int | None = option(what="warm worker processes: most fold jobs at once (same as `max_parallel_jobs`)",
                                 shown="the CPU count", ge=1)
    max_parallel_jobs: int | None = option(what="the same as `workers`", shown="the CPU count", ge=1)
    keep_alive_s: float = option(300.0, what="an idle worker stays alive this long for the next job", ge=0)
    preload: list[str] = option(
        list(DEFAULT_PRELOAD), what="modules each worker imports once, before its first job", shown=f"`{list(DEFAULT_PRELOAD)}`",
        fix='a list of module names, e.g. ["pandas", "xgboost"]',
    )
    work_dir: str | None = option(what="local directory of the job directories (logs, models)",
                                  shown="`{artifact_root}/jobs` (a local root), else `$CVTUNE_HOME/jobs`", min_length=1)
    cpus_per_job: int | None = option(what="CPU threads of each job (BLAS/OpenMP variables)",
                                      shown="CPU count / workers", ge=1)
    stop_grace_s: float = option(5.0, what="seconds between SIGTERM and SIGKILL when a job is stopped", ge=0)

    job_cleanup: Literal["compact", "keep"] = option(
        "compact", what="an ended job's directory once its result is recorded: `compact` keeps only what `describe` "
        "and a failure's diagnosis need; `keep` leaves it whole")
    queue_ahead: int | None = option(what="jobs a driver may queue beyond `max_parallel_jobs`, so a freed worker starts "
                                     "the next at once (queued jobs are lost if the driver dies)", shown="0", ge=0)
