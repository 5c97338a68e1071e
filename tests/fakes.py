"""An in-memory backend for testing the tuner's scheduling logic in isolation.

The real local backend is covered by test_local_backend.py and the end-to-end tests; this
double makes job outcomes scripted and instantaneous so scheduling rules can be asserted
exactly (concurrency, failure handling, crash/resume ordering).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.errors import JobExistsError, JobNotFoundError


class ScriptedBackend(Backend):
    """Jobs end on the next ``wait``; ``outcome(spec)`` returns (status, metrics, reason)."""

    name = "scripted"

    def __init__(self, outcome: Callable[[JobSpec], tuple[str, dict, str | None]], capacity: int = 4, jobs=None):
        self.outcome = outcome
        self._capacity = capacity
        self.jobs: dict[str, dict] = {} if jobs is None else jobs  # shared across "processes"
        self.submitted: list[str] = []
        self.stopped: list[str] = []
        self.max_running = 0
        self.waits = 0
        self.crash_after_waits: int | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, spec: JobSpec) -> None:
        if spec.name in self.jobs:
            raise JobExistsError(spec.name)
        self.submitted.append(spec.name)
        self.jobs[spec.name] = {"spec": spec, "desc": JobDescription(spec.name, "InProgress", tags=dict(spec.tags))}
        running = sum(1 for j in self.jobs.values() if j["desc"].status == "InProgress")
        self.max_running = max(self.max_running, running)

    def describe(self, name: str) -> JobDescription:
        if name not in self.jobs:
            raise JobNotFoundError(name)
        return self.jobs[name]["desc"]

    def stop(self, name: str) -> None:
        job = self.jobs[name]
        if job["desc"].status == "InProgress":
            self.stopped.append(name)
            job["desc"] = JobDescription(name, "Stopped", tags=job["desc"].tags)

    def wait(self, names, timeout):
        self.waits += 1
        if self.crash_after_waits is not None and self.waits > self.crash_after_waits:
            raise KeyboardInterrupt("simulated crash of the orchestrator")
        # finish the oldest running job only, so trials interleave like real asynchronous jobs
        for name in names:
            job = self.jobs[name]
            if job["desc"].status == "InProgress":
                status, metrics, reason = self.outcome(job["spec"])
                now = time.time()
                job["desc"] = JobDescription(
                    name, status, failure_reason=reason, final_metrics=metrics, start_time=now - 1,
                    end_time=now, billable_seconds=1.0, tags=job["desc"].tags,
                )
                break
        return [self.jobs[n]["desc"] for n in names if self.jobs[n]["desc"].done]
