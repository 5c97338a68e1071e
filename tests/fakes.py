"""Test backends: in memory (ScriptedBackend) and on disk (DiskBackend, seen by every process).

The real local backend is covered by test_local_backend.py and the end-to-end tests; this
double makes job outcomes scripted and instantaneous so scheduling rules can be asserted
exactly (concurrency, failure handling, crash/resume ordering).
"""

from __future__ import annotations

import json
import os
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


class DiskBackend(Backend):
    """Jobs kept as JSON files under ``root``, so any process (a trigger, a resumed task) sees them.

    A job ends after ``end_after`` describes of it; ``outcome(spec)`` gives (status, metrics, reason).
    ``submitted.log`` lists every submit, one name a line, refused ones too (a double launch shows up there);
    ``async_polls`` counts :meth:`adescribe_many` calls (the trigger's polls).
    """

    name = "disk"

    def __init__(self, root: str, outcome: Callable[[JobSpec], tuple[str, dict, str | None]], *,
                 capacity: int = 2, end_after: int = 2):
        self.root = root
        self.outcome = outcome
        self._capacity = capacity
        self.end_after = end_after
        os.makedirs(root, exist_ok=True)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def local_dirs(self) -> list[str]:
        return [self.root]

    def _path(self, name: str) -> str:
        return os.path.join(self.root, f"{name}.json")

    def _read(self, name: str) -> dict:
        if not os.path.exists(self._path(name)):
            raise JobNotFoundError(name)
        with open(self._path(name)) as f:
            return json.load(f)

    def _write(self, name: str, job: dict) -> None:
        tmp = self._path(name) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(job, f)
        os.replace(tmp, self._path(name))

    def submit(self, spec: JobSpec) -> None:
        # every attempt is logged, refused ones too: a second submit of a name is a double launch
        with open(os.path.join(self.root, "submitted.log"), "a") as f:
            f.write(spec.name + "\n")
        if os.path.exists(self._path(spec.name)):
            raise JobExistsError(spec.name)
        self._write(spec.name, {"spec": spec.to_dict(), "describes": 0,
                                "desc": JobDescription(spec.name, "InProgress", tags=dict(spec.tags)).to_dict()})

    def describe(self, name: str) -> JobDescription:
        job = self._read(name)
        desc = JobDescription.from_dict(job["desc"])
        if not desc.done:
            job["describes"] += 1
            if job["describes"] >= self.end_after:
                status, metrics, reason = self.outcome(JobSpec.from_dict(job["spec"]))
                now = time.time()
                desc = JobDescription(name, status, failure_reason=reason, final_metrics=metrics, start_time=now - 1,
                                      end_time=now, billable_seconds=1.0, tags=desc.tags)
                job["desc"] = desc.to_dict()
            self._write(name, job)
        return desc

    def stop(self, name: str) -> None:
        job = self._read(name)
        if not JobDescription.from_dict(job["desc"]).done:
            job["desc"] = JobDescription(name, "Stopped", tags=job["desc"]["tags"]).to_dict()
            self._write(name, job)

    async def adescribe_many(self, names):
        counter = os.path.join(self.root, "async_polls")
        polls = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "w") as f:
            f.write(str(polls + 1))
        return await super().adescribe_many(names)

    def submitted(self) -> list[str]:
        path = os.path.join(self.root, "submitted.log")
        return open(path).read().split() if os.path.exists(path) else []

    def async_polls(self) -> int:
        counter = os.path.join(self.root, "async_polls")
        return int(open(counter).read()) if os.path.exists(counter) else 0
