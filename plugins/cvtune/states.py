"""Every state name cvtune writes or reads: training jobs, warm pools, fold jobs, trials, runs.

One home for them, as ``str`` enums: a member *is* its value (``JobStatus.COMPLETED ==
"Completed"``, same hash, ``json.dumps`` and ``f"{…}"`` give ``Completed``), so ledgers,
``state.json`` files, XComs and trigger events hold exactly the strings they held before, and a
ledger read back from JSON (plain strings) compares equal to the members. Only ``repr()``
differs, so messages format states with ``{state}``, not ``{state!r}``.

The job and warm-pool values are SageMaker's, so the SageMaker backend passes
``DescribeTrainingJob`` through unchanged and the local backend and the emulator speak the same
language.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A training (or transform) job's status.

    AWS (DescribeTrainingJob, ``TrainingJobStatus``): "SageMaker provides the following training job
    statuses: InProgress - The training is in progress. Completed - The training job has completed.
    …" (the service model also lists ``Deleting``, which cvtune never sees); ``TransformJobStatus``
    has the same five values.
    """

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


#: a job in one of these will not change any more
JOB_ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED})
#: a job still holding its instance
JOB_ACTIVE = frozenset({JobStatus.IN_PROGRESS, JobStatus.STOPPING})


class WarmPoolStatus(StrEnum):
    """``WarmPoolStatus.Status`` of a training job.

    AWS (API_WarmPoolStatus): "Valid Values: Available | Terminated | Reused | InUse";
    "Reused: The warm pool moved to a matching training job for reuse." ``PassedOn`` and ``Cold``
    are cvtune's own.
    """

    AVAILABLE = "Available"
    IN_USE = "InUse"
    REUSED = "Reused"
    TERMINATED = "Terminated"
    #: cvtune: this job's pool was taken by the next job (SageMaker then says ``Reused`` of the
    #: *provider*; the ledger keeps ``Reused`` for the job that started warm)
    PASSED_ON = "PassedOn"
    #: local backend: the job's worker was still starting when the job was handed to it
    COLD = "Cold"


#: a pool still billed and still able to be taken
POOL_OPEN = frozenset({WarmPoolStatus.AVAILABLE, WarmPoolStatus.IN_USE})
#: a pool that will not change any more
POOL_FINAL = frozenset({WarmPoolStatus.REUSED, WarmPoolStatus.TERMINATED})


class FoldState(StrEnum):
    """A fold job's ``state`` in the ledger: the backend's :class:`JobStatus` once the job exists,
    before that ``Pending`` (not created) or ``Launching`` (recorded, maybe created), and
    ``Cancelled`` for one its trial no longer needs."""

    PENDING = "Pending"
    LAUNCHING = "Launching"
    IN_PROGRESS = JobStatus.IN_PROGRESS.value
    COMPLETED = JobStatus.COMPLETED.value
    FAILED = JobStatus.FAILED.value
    STOPPING = JobStatus.STOPPING.value
    STOPPED = JobStatus.STOPPED.value
    CANCELLED = "Cancelled"


#: a fold job that will not change any more
FOLD_DONE = frozenset({FoldState.COMPLETED, FoldState.FAILED, FoldState.STOPPED, FoldState.CANCELLED})
#: a fold job that may exist on the backend and has not ended
FOLD_ACTIVE = frozenset({FoldState.IN_PROGRESS, FoldState.LAUNCHING})


class TrialState(StrEnum):
    """A trial's ``state`` in the ledger (also what the proposers are told)."""

    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    PRUNED = "Pruned"


TRIAL_DONE = frozenset({TrialState.COMPLETED, TrialState.FAILED, TrialState.STOPPED, TrialState.PRUNED})
#: a trial that ended without a result
TRIAL_UNFINISHED = TRIAL_DONE - {TrialState.COMPLETED}


class RunStatus(StrEnum):
    """A run's ``status`` in the ledger, in SageMaker's ``HyperParameterTuningJobStatus`` words."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"


RUN_ENDED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.STOPPED})


class StopCriterion(StrEnum):
    """``stop_reason.criterion`` in the ledger: why a run asked for no more trials."""

    TARGET_VALUE = "target_value"
    MAX_TRIALS_NOT_IMPROVING = "max_trials_not_improving"
    CONVERGENCE = "convergence"
    MAX_TRIALS = "max_trials"
    #: the proposer has nothing left to ask (a grid is done)
    EXHAUSTED = "exhausted"
    #: stopped from outside (``cvtune stop``, a killed task)
    STOPPED = "stopped"


#: the completion criteria (:mod:`cvtune.completion`): met, in-flight trials finish, none starts
COMPLETION_CRITERIA = frozenset(
    {StopCriterion.TARGET_VALUE, StopCriterion.MAX_TRIALS_NOT_IMPROVING, StopCriterion.CONVERGENCE}
)
