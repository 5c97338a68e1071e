"""An in-process backend on a virtual clock, for benchmarks that need thousands of fold jobs.

Benchmarks 3 (early stopping) and 4 (Bayesian vs Random) count fold jobs and compare best
scores over hundreds of tuning runs; through the warm pool that is hours on 2 cores. This backend
keeps everything that decides those figures real and drops only the process machinery:

* the real :class:`cvtune.tuner.CVTuner`, proposers and stopping rules drive the run through the
  :class:`~cvtune.backends.base.Backend` interface, so every fold job counted was launched by
  the tuner's own decisions;
* a fold job calls the real training script's own functions (``include/training/train.py``:
  ``read_hyperparameters`` -> ``resolve_hyperparameters`` -> ``train``) in this process, on the
  job's fold files, with the ``SM_*`` environment the local backend would give it; its printed
  log lines go through the same :func:`cvtune.metrics.extract_metrics` as a real job's log. The
  objective is therefore exactly what the script computes in a real fold job (xgboost with
  ``n_jobs=1`` and a fixed seed is deterministic), which is also why a result may be memoized
  per (hyperparameters, fold) and shared by runs of the same dataset;
* time is virtual: every job takes one time unit, at most ``slots`` run at once, and
  :meth:`wait` advances the clock to the next job end. Jobs that end at the same instant end
  in launch order. So scheduling is exactly the tuner's, as if all fold jobs took equally long,
  and it does not depend on the machine's load. A stopped job never trains.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import TRAIN_SCRIPT  # noqa: E402

from cvtune.backends.base import Backend, JobDescription, JobSpec  # noqa: E402
from cvtune.errors import JobExistsError, JobNotFoundError  # noqa: E402
from cvtune.metrics import extract_metrics  # noqa: E402
from cvtune.states import JobStatus  # noqa: E402

_script = None


def training_script():
    """``include/training/train.py`` imported as a module (its ``__main__`` block does not run)."""
    global _script
    if _script is None:
        spec = importlib.util.spec_from_file_location("cvtune_bench_train", TRAIN_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _script = module
    return _script


def _hp_string(value: Any) -> str:
    # as cvtune.local.backend passes hyperparameters: strings as they are, the rest as JSON
    return value if isinstance(value, str) else json.dumps(value)


class InProcessBackend(Backend):
    """Fold jobs trained in this process by the real training script, on a virtual clock."""

    name = "inprocess"

    def __init__(self, work_dir: str, slots: int = 2, cache: dict | None = None) -> None:
        self.work_dir = work_dir
        self.slots = slots
        self.cache = {} if cache is None else cache
        self.now = 0.0
        self.jobs: dict[str, dict[str, Any]] = {}
        self.trained = 0  # fold jobs that really trained (not served from the cache)

    @property
    def capacity(self) -> int:
        return self.slots

    def submit(self, spec: JobSpec) -> None:
        if spec.name in self.jobs:
            raise JobExistsError(spec.name)
        running = sum(1 for j in self.jobs.values() if j["status"] == JobStatus.IN_PROGRESS)
        if running >= self.slots:
            raise RuntimeError(f"{spec.name}: the tuner launched beyond the backend's {self.slots} slots")
        self.jobs[spec.name] = {"spec": spec, "status": JobStatus.IN_PROGRESS, "start": self.now, "end": self.now + 1.0,
                                "metrics": {}, "reason": None}

    def describe(self, name: str) -> JobDescription:
        job = self.jobs.get(name)
        if job is None:
            raise JobNotFoundError(name)
        done = job["status"] != JobStatus.IN_PROGRESS
        return JobDescription(
            name=name,
            status=job["status"],
            failure_reason=job["reason"],
            final_metrics=dict(job["metrics"]),
            start_time=job["start"],
            end_time=job["end"] if done else None,
            billable_seconds=(job["end"] - job["start"]) if done else None,
            tags=dict(job["spec"].tags),
        )

    def stop(self, name: str) -> None:
        job = self.jobs[name]
        if job["status"] == JobStatus.IN_PROGRESS:
            job["status"], job["end"] = JobStatus.STOPPED, self.now

    def wait(self, names: list[str], timeout: float) -> list[JobDescription]:
        ended = [self.describe(n) for n in names if self.jobs[n]["status"] != JobStatus.IN_PROGRESS]
        if ended:
            return ended
        running = [n for n in self.jobs if self.jobs[n]["status"] == JobStatus.IN_PROGRESS]
        if not running:
            return []
        self.now = min(self.jobs[n]["end"] for n in running)
        for n in running:  # dict order is launch order
            if self.jobs[n]["end"] <= self.now:
                self._run(self.jobs[n])
        return [self.describe(n) for n in names if self.jobs[n]["status"] != JobStatus.IN_PROGRESS]

    def _run(self, job: dict[str, Any]) -> None:
        spec: JobSpec = job["spec"]
        key = (spec.channels.get("train"), spec.channels.get("validation"),
               json.dumps(spec.hyperparameters, sort_keys=True, default=str))
        if key not in self.cache:
            self.cache[key] = self._train(spec)
            self.trained += 1
        status, log, reason = self.cache[key]
        job["status"], job["reason"] = status, reason
        job["metrics"] = extract_metrics(log, spec.metric_definitions)

    def _train(self, spec: JobSpec) -> tuple[str, str, str | None]:
        script = training_script()
        model_dir = os.path.join(self.work_dir, "model")
        environ = {
            "SM_HPS": json.dumps(spec.hyperparameters, default=str),
            "SM_CHANNEL_TRAIN": spec.channels["train"],
            "SM_MODEL_DIR": model_dir,
            "SM_OUTPUT_DATA_DIR": os.path.join(self.work_dir, "output", "data"),
            "SM_NUM_CPUS": "1",
            "SM_HOSTS": '["algo-1"]',
            "SM_CURRENT_HOST": "algo-1",
        }
        if "validation" in spec.channels:
            environ["SM_CHANNEL_VALIDATION"] = spec.channels["validation"]
        argv = [x for k, v in spec.hyperparameters.items() for x in (f"--{k}", _hp_string(v))]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                settings = script.resolve_hyperparameters(script.read_hyperparameters(argv, environ))
                script.train(settings, script.read_environment(environ))
        except script.TrainingError as exc:
            return JobStatus.FAILED, out.getvalue(), f"AlgorithmError: {exc}"
        return JobStatus.COMPLETED, out.getvalue(), None
