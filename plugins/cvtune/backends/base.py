"""The backend interface: where training jobs run.

A backend creates named training jobs, reports their lifecycle
(``InProgress`` → ``Completed`` | ``Failed`` | ``Stopped``) in the shape of SageMaker's
``DescribeTrainingJob``, and stops them. Job names are the tuner's idempotency keys: a backend
must refuse to create a name that already exists (:class:`~cvtune.errors.JobExistsError`) and
must describe jobs created by an earlier process, so a resumed run can re-attach.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from cvtune.states import JOB_ENDED

JOB_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass
class JobSpec:
    """Everything needed to run one training job under the script-mode contract.

    ``channels`` maps a channel name (``train``, ``validation``) to a directory or prefix URI;
    ``hyperparameters`` are passed as ``--name value`` arguments and in ``SM_HPS``.
    """

    name: str
    entry_point: str
    hyperparameters: dict[str, Any]
    channels: dict[str, str]
    output_uri: str = ""  # where the model goes; "" lets the backend choose (its job directory)
    metric_definitions: list[dict[str, str]] = field(default_factory=list)
    max_runtime_s: int = 3600
    tags: dict[str, str] = field(default_factory=dict)
    #: the job's own environment variables (SageMaker's ``Environment``); nothing else of the
    #: submitting process reaches a job
    environment: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class JobDescription:
    """The part of ``DescribeTrainingJob`` the tuner needs, backend-neutral."""

    name: str
    status: str
    failure_reason: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)
    model_artifacts: str | None = None
    start_time: float | None = None
    end_time: float | None = None
    billable_seconds: float | None = None
    warm_pool_status: str | None = None
    log_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    # The pool this job left behind (SageMaker's own WarmPoolStatus of the job): its status
    # (Available / InUse / Reused / Terminated), the job that took it, and the seconds it was
    # retained so far (billed like job time, final once Reused or Terminated).
    pool_status: str | None = None
    pool_reused_by: str | None = None
    retained_seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_ENDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobDescription:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Backend(abc.ABC):
    """Runs training jobs. Implementations: ``local`` (warm process pool) and ``sagemaker``."""

    name: str = "abstract"

    @abc.abstractmethod
    def submit(self, spec: JobSpec) -> None:
        """Create the job. Raises ``JobExistsError`` if the name was ever used."""

    @abc.abstractmethod
    def describe(self, name: str) -> JobDescription:
        """Current state of a job. Raises ``JobNotFoundError`` for an unknown name."""

    @abc.abstractmethod
    def stop(self, name: str) -> None:
        """Ask the job to stop; a job that already ended is left as it is."""

    def wait(self, names: list[str], timeout: float) -> list[JobDescription]:
        """Block up to ``timeout`` seconds until at least one of ``names`` has ended.

        Returns the descriptions of all of ``names`` that have ended (possibly none on
        timeout). The default polls :meth:`describe`; backends with a cheaper signal override.
        """
        import time

        deadline = time.monotonic() + timeout
        while True:
            ended = [d for d in (self.describe(n) for n in names) if d.done]
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(min(self.poll_interval_s, max(0.0, deadline - time.monotonic())))

    poll_interval_s: float = 1.0
    # seconds between the tuner's rounds of ``wait`` (and a trigger's polls) unless a task says
    # otherwise: cheap for local workers, SageMaker's comes from its config (30 s by default)
    default_poll_s: float = 2.0

    #: Why a task must not defer while this backend's jobs run (``None``: it may). Deferring hands
    #: the in-flight jobs to the triggerer, and the task may resume on another worker, so the jobs
    #: must be observable (describe, stop) from any process on any host.
    cannot_defer_reason: str | None = None

    async def adescribe_many(self, names: Sequence[str]) -> list[JobDescription]:
        """Describe ``names`` without blocking the event loop (a trigger's poll), in that order.

        The default runs :meth:`describe` in a worker thread; backends with an async client
        override it. Raises what :meth:`describe` raises (``JobNotFoundError``).
        """
        import asyncio

        names = list(names)
        return await asyncio.to_thread(lambda: [self.describe(n) for n in names])

    @property
    def capacity(self) -> int | None:
        """Most jobs this backend runs at once, if it has a hard limit (``None``: no limit)."""
        return None

    #: Instances one job runs on (job and retained seconds are billed per instance).
    instance_count: int = 1
    #: What one instance-hour costs, if the user said (money in summaries); ``None``: unknown.
    price_per_instance_hour: float | None = None

    @property
    def releases_pools(self) -> bool:
        """Whether the pools ended jobs leave behind should be released once nothing will use them."""
        return False

    def release_pool(self, name: str) -> bool:
        """End the warm pool job ``name`` left behind now; ``False`` if there was none to end."""
        return False

    def owner_tags(self, name: str) -> dict[str, str]:
        """The tags of job ``name``: who it belongs to, checked before re-attaching to it."""
        return self.describe(name).tags or {}

    def pool_provider(self, name: str, window_s: float) -> str | None:
        """The job whose warm pool job ``name`` started on (``None``: none, or not known)."""
        return None

    @property
    def local_dirs(self) -> list[str]:
        """Local folders this backend writes while jobs run (kept out of the ledger's code
        fingerprint, :mod:`cvtune.sourcedir`, when the entry point's folder holds one)."""
        return []

    #: Jobs a driver may hand this backend beyond :attr:`capacity`, queued here so that a slot that
    #: frees up starts the next job at once, before the driver has recorded the ended one.
    queue_ahead: int = 0

    def recorded(self, name: str) -> None:  # noqa: B027 - optional hook
        """The ended job's result is recorded (in the ledger): free what the backend keeps for it."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release resources (worker processes, clients). Running jobs are not stopped."""

    async def aclose(self) -> None:
        """:meth:`close` from an event loop (a trigger's end), closing async clients too.

        The default runs :meth:`close` in a worker thread; backends with an async client override it.
        """
        import asyncio

        await asyncio.to_thread(self.close)

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Observer(Backend):
    """A view of ``backend`` that describes and stops jobs but never creates one.

    What triggers and sensors use: submitting is the only thing that starts workers (a local warm
    pool) or needs launch permissions, so an observer never does either.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        self.cannot_defer_reason = backend.cannot_defer_reason
        self.instance_count = backend.instance_count
        self.price_per_instance_hour = backend.price_per_instance_hour
        self.poll_interval_s = backend.poll_interval_s
        self.default_poll_s = backend.default_poll_s

    def submit(self, spec: JobSpec) -> None:
        raise RuntimeError(f"an observer of the {self.name} backend cannot submit jobs ({spec.name})")

    def describe(self, name: str) -> JobDescription:
        return self.backend.describe(name)

    @property
    def local_dirs(self) -> list[str]:
        return self.backend.local_dirs

    async def adescribe_many(self, names: Sequence[str]) -> list[JobDescription]:
        return await self.backend.adescribe_many(names)

    def stop(self, name: str) -> None:
        self.backend.stop(name)

    @property
    def capacity(self) -> int | None:
        return self.backend.capacity

    @property
    def releases_pools(self) -> bool:
        return self.backend.releases_pools

    def release_pool(self, name: str) -> bool:
        return self.backend.release_pool(name)

    def owner_tags(self, name: str) -> dict[str, str]:
        return self.backend.owner_tags(name)

    def pool_provider(self, name: str, window_s: float) -> str | None:
        return self.backend.pool_provider(name, window_s)

    def recorded(self, name: str) -> None:
        self.backend.recorded(name)

    def close(self) -> None:
        self.backend.close()

    async def aclose(self) -> None:
        await self.backend.aclose()
