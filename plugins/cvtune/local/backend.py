"""The local backend: a warm pool of worker processes that behaves like SageMaker training jobs.

Each worker ("zygote", see :mod:`cvtune.local._zygote`) is a fresh interpreter that imports the
heavy modules once (``preload``) and then runs one job at a time, each in a fresh ``os.fork()``
child: jobs start in milliseconds yet are as isolated as separate ``python train.py`` runs (own
environment, cwd, argv, globals; a crash kills only the job). The pool grows on demand up to
``max_parallel_jobs``; an idle worker retires after ``keep_alive_s``, like a SageMaker warm pool.

Each job has a directory ``{work_dir}/{name}/`` laid out like ``/opt/ml``::

    input/config/hyperparameters.json   values as strings, as on SageMaker
    input/config/resourceconfig.json    {"current_host": "algo-1", "hosts": ["algo-1"]}
    input/config/inputdataconfig.json
    input/data/<channel>/               symlinks to a local directory's files, or a download
    model/                              SM_MODEL_DIR; uploaded to spec.output_uri if one is given
    output/data/                        SM_OUTPUT_DATA_DIR
    output/failure                      a script may write its failure reason here
    log.txt                             stdout + stderr of the job (fd level)
    spec.json, dispatch.json, state.json, final.json   (job state, see _zygote)

The job runs with ``cwd`` = its directory, ``sys.argv = [entry_point, "--name", "value", ...]``, the
entry point's directory first on ``sys.path``, an allowlisted part of the submitting process's
environment (:func:`job_environment`) plus the spec's ``environment`` and the ``SM_*`` variables,
and fds 1/2 on ``log.txt``. A job's directory appears whole (built under a temporary name, then
renamed), so a crash never leaves a job without its ``spec.json``.

Creating a file or directory (an inode) is the expensive part of a job's files: 0.05-0.5 ms of
kernel time each on an ext4 VM disk, where a rename or hard link costs 0.01 ms; a job once took ~19
of them. So a job takes ~5: its ``/opt/ml`` subtrees (``input/`` with its config files and channel
links, ``model/``, ``output/``) are recycled from completed jobs whose results are recorded
(``job_cleanup: compact``) — emptied, checked, and moved (renamed) into the next job with the same
channels; its spec carries who submitted it and, when a worker is idle at submit, the worker it is
handed to; a worker reports a job's end with its ``final.json`` over the pipe, so describing or
waiting for this backend's own jobs reads no file. Workers are started with ``subprocess`` running
``python -c`` (a fresh interpreter, like multiprocessing's spawn, but without re-importing the
caller's ``__main__``); once preloaded they write their own errors to ``{work_dir}/.workers.log``.

The files, not this object, are the source of truth: a new ``LocalBackend`` on the same
``work_dir``, in another process, describes, waits for and stops jobs an earlier (even killed)
process started. A job outlives the process that submitted it and records its own end.

Statuses reported by :meth:`LocalBackend.describe`:

* ``InProgress`` — queued in a backend, handed to a worker, or running (SageMaker's
  ``Starting``/``Downloading``/``Training`` are all reported as ``InProgress``);
* ``Stopping`` — :meth:`~LocalBackend.stop` recorded ``Stopped`` but the process is still exiting;
* ``Completed``, ``Failed``, ``Stopped`` — terminal.

A ``Failed`` job's ``failure_reason`` starts with ``AlgorithmError:`` (the script raised, exited
non-zero or crashed; or the content of ``output/failure`` if the script wrote one),
``MaxRuntimeExceeded:``, ``ClientError:`` (input channels or model upload), ``WorkerError:`` (its
worker died) or ``job process lost`` (process and worker gone without a result, e.g. the machine
rebooted), followed by the last 20 lines of the log.

``warm_pool_status`` of a job: ``"Reused"`` (it started on an already running, fully preloaded
worker: only a fork was paid), ``"Cold"`` (its worker was still starting, normally because it was
started for this job), or ``None`` (it never reached a worker, e.g. stopped while queued).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cvtune import store
from cvtune.backends.base import JOB_NAME_RE, Backend, JobDescription, JobSpec
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError
from cvtune.local import _zygote as z
from cvtune.metrics import validate_metric_definitions
from cvtune.states import JOB_ENDED, JobStatus, WarmPoolStatus
from cvtune.store import ArtifactStore, default_store

__all__ = ["DEFAULT_PRELOAD", "LocalBackend", "WORKER_LOG"]

DEFAULT_PRELOAD: tuple[str, ...] = (
    "numpy",
    "pandas",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "xgboost",
    "joblib",
)

CURRENT_HOST = "algo-1"
#: Where workers write their own errors once started (jobs have their own logs).
WORKER_LOG = ".workers.log"
_CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# What a job sees of the submitting process's environment (an Airflow worker's holds AWS keys,
# AIRFLOW_CONN_*, the Fernet key, the database URL): on SageMaker a job sees only the request's
# Environment, so locally it gets the same plus what any process needs to run.
_ENV_ALLOWED = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM"})
_ENV_ALLOWED_PREFIXES = ("LC_", "PYTHON", "SM_")
_ENV_THREADS = frozenset({
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
    "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS", "GOTO_NUM_THREADS", "RAYON_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_DYNAMIC", "MKL_DYNAMIC", "KMP_AFFINITY",
})


def job_environment(parent: Any, configured: dict[str, str] | None = None) -> dict[str, str]:
    """A job's environment: the allowlisted part of ``parent`` (PATH, HOME, LANG/LC_*, TZ, TMPDIR,
    PYTHON*, thread counts, SM_*) plus the run's ``environment:`` mapping; the SM_* contract is
    added on top by the backend. Nothing else of the submitting process reaches the job."""
    env = {
        k: v for k, v in parent.items()
        if k in _ENV_ALLOWED or k in _ENV_THREADS or k.startswith(_ENV_ALLOWED_PREFIXES)
    }
    env.update(configured or {})
    return env
JOB_CLEANUP = ("compact", "keep")
# Startup failures in a row after which queued work is failed instead of retried forever (e.g.
# the worker cannot import cvtune).
_MAX_STARTUP_FAILURES = 3
# How long after a job's deadline (+ stop grace) the backend itself ends a job nobody ended.
_DEADLINE_SLACK_S = 2.0
# A job's /opt/ml subtrees, recycled from completed jobs (see the module docstring).
_TREE = ("input", "model", "output")
_CONFIG_FILES = frozenset({"hyperparameters.json", "resourceconfig.json", "inputdataconfig.json"})

# The worker's command line: a fresh interpreter given the orchestrator's sys.path (Airflow puts
# plugins/ on it at runtime, so cvtune may only be importable that way).
_BOOTSTRAP = (
    "import sys, json; cfg = json.loads(sys.argv[1]); sys.path[:] = cfg['sys_path']; "
    "from cvtune.local._zygote import worker_main; worker_main(cfg, int(sys.argv[2]))"
)


@dataclass(eq=False)
class _Worker:
    popen: subprocess.Popen
    conn: Any  # multiprocessing.connection.Connection
    pid: int
    create_time: float | None
    ready: bool = False
    retired: bool = False
    job: str | None = None
    payload: dict[str, Any] | None = None
    job_started: bool = False
    started_at: float = 0.0
    idle_since: float = field(default_factory=time.monotonic)


class LocalBackend(Backend):
    """Runs training jobs on this machine in a warm pool of worker processes.

    :param work_dir: local directory holding one sub-directory per job (created if missing).
    :param max_parallel_jobs: most jobs running at once, i.e. most workers (default: CPU count).
    :param keep_alive_s: an idle worker exits after this many seconds (``math.inf``: never).
    :param preload: modules each worker imports once; ones that fail to import are skipped with a
        warning (jobs then import them themselves).
    :param cpus_per_job: ``SM_NUM_CPUS`` and the thread-count variables (``OMP_NUM_THREADS``...)
        of each job (default: ``max(1, cpu_count // max_parallel_jobs)``).
    :param stop_grace_s: seconds between SIGTERM and SIGKILL when a job is stopped or exceeds
        its max runtime.
    :param job_cleanup: what :meth:`recorded` (called once the job's result is in the run ledger)
        does with an ended job's directory: ``compact`` (default) keeps only ``spec.json`` and
        ``final.json`` (so the name stays taken and ``describe`` still answers) plus, for a failed
        job, ``log.txt`` and ``output/failure``; ``keep`` leaves it whole.
    :param queue_ahead: jobs a driver may queue beyond ``max_parallel_jobs`` (default 0), so a
        worker that finishes starts the next job before the driver has recorded the last. Queued
        jobs live in this object until a worker takes them: if the driving process dies, they are
        recorded as lost (a resumed run fails their trials), which is why it is off by default.

    :meth:`submit` never blocks: beyond ``max_parallel_jobs`` running jobs, jobs wait in a FIFO
    queue in this object and start as workers free up. There is no background thread; the queue
    and the workers' messages are processed inside :meth:`submit`, :meth:`describe`,
    :meth:`wait`, :meth:`stop` and :attr:`stats`. All methods are thread-safe.
    """

    name = "local"
    poll_interval_s = 0.2
    # A job outlives the process that submitted it, but whether it still runs is judged by process
    # ids, which mean nothing on another host or in another container (the triggerer, a Celery
    # worker the task resumes on): describing from there would record running jobs as lost.
    # And the warm pool would not survive: busy workers exit after their job once detached.
    cannot_defer_reason = (
        "its fold jobs run in worker processes on the task's host, and only a process on that host "
        "can tell whether they still run (a triggerer or a resumed task elsewhere would record them "
        "as lost); the warm pool would also be lost at every deferral"
    )

    def __init__(
        self,
        work_dir: str,
        max_parallel_jobs: int | None = None,
        keep_alive_s: float = 300.0,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        cpus_per_job: int | None = None,
        stop_grace_s: float = 5.0,
        job_cleanup: str = "compact",
        queue_ahead: int | None = None,
        store: ArtifactStore | None = None,
    ) -> None:
        store = store or default_store()
        if not store.is_local(work_dir):
            raise ConfigError("work_dir", f"{work_dir!r} is not a local path", "the local backend needs a local directory")
        cpus = os.cpu_count() or 1
        if max_parallel_jobs is None:
            max_parallel_jobs = cpus
        if not isinstance(max_parallel_jobs, int) or isinstance(max_parallel_jobs, bool) or max_parallel_jobs < 1:
            raise ConfigError("max_parallel_jobs", f"must be a positive integer, got {max_parallel_jobs!r}")
        if cpus_per_job is None:
            cpus_per_job = max(1, cpus // max_parallel_jobs)
        if not isinstance(cpus_per_job, int) or isinstance(cpus_per_job, bool) or cpus_per_job < 1:
            raise ConfigError("cpus_per_job", f"must be a positive integer, got {cpus_per_job!r}")
        if not isinstance(keep_alive_s, (int, float)) or keep_alive_s < 0:
            raise ConfigError("keep_alive_s", f"must be a number >= 0, got {keep_alive_s!r}")
        if not isinstance(stop_grace_s, (int, float)) or stop_grace_s < 0:
            raise ConfigError("stop_grace_s", f"must be a number >= 0, got {stop_grace_s!r}")
        if job_cleanup not in JOB_CLEANUP:
            raise ConfigError("job_cleanup", f"unknown value {job_cleanup!r}", f"use one of {', '.join(JOB_CLEANUP)}")
        if queue_ahead is None:
            queue_ahead = 0
        if not isinstance(queue_ahead, int) or isinstance(queue_ahead, bool) or queue_ahead < 0:
            raise ConfigError("queue_ahead", f"must be an integer >= 0, got {queue_ahead!r}")
        self.job_cleanup = job_cleanup
        self.queue_ahead = queue_ahead
        if isinstance(preload, str):
            raise ConfigError("preload", "expected a list of module names, got a string", f"write [{preload!r}]")
        self.work_dir = os.path.abspath(store.local_path(work_dir))
        self.max_parallel_jobs = max_parallel_jobs
        self.keep_alive_s = float(keep_alive_s)
        self.preload = tuple(preload)
        self.cpus_per_job = cpus_per_job
        self.stop_grace_s = float(stop_grace_s)
        self.store = store  # stages remote channels, uploads to a remote output_uri
        self._lock = threading.RLock()
        self._workers: list[_Worker] = []
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._assigned: dict[str, _Worker] = {}
        self._startup_failures = 0
        self._warned: set[str] = set()
        self._closed = False
        self._cleanup_queue: deque[str] = deque()
        self._cleanup_wake = threading.Event()
        self._cleanup_thread: threading.Thread | None = None
        # ended jobs of our workers: their final.json, as reported with "ended" (until recorded)
        self._finals: dict[str, dict[str, Any]] = {}
        # spare /opt/ml trees (see _recycle): channel links -> ids of spares in _spare_dir
        self._spare_dir: str | None = None
        self._spares: dict[str, list[int]] = {}
        self._spare_count = 0
        self._spare_max = 2 * (max_parallel_jobs + queue_ahead) + 2
        # Worker pipes belong to this process; a fork of it must not talk to (or dismiss) them.
        self._pid = os.getpid()
        # Shutdown without a reference to self, so it can also run at exit or on garbage collection.
        self._finalizer = weakref.finalize(
            self, _shutdown, self._pid, self.work_dir, self._queue, self._workers
        )
        self._stats = {
            "workers_started": 0,
            "workers_retired": 0,
            "workers_lost": 0,
            "jobs_run": 0,
            "warm_starts": 0,
        }

    # ------------------------------------------------------------------ public API

    @property
    def local_dirs(self) -> list[str]:
        return [self.work_dir]

    @property
    def capacity(self) -> int:
        """Most jobs running at once (``max_parallel_jobs``)."""
        return self.max_parallel_jobs

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this backend object (after processing pending worker messages).

        ``workers_started``/``workers_retired`` (idle keep-alive expiry)/``workers_lost`` (died
        any other way), ``jobs_run`` (handed to a worker), ``warm_starts`` (of those, jobs that
        got an already running, preloaded worker), and the current ``workers_alive``,
        ``workers_busy`` and ``queued``.
        """
        with self._lock:
            self._pump(0)
            return {
                **self._stats,
                "workers_alive": len(self._workers),
                "workers_busy": sum(1 for w in self._workers if w.job is not None),
                "queued": len(self._queue),
            }

    def job_dir(self, name: str) -> str:
        """The directory of job ``name`` (``{work_dir}/{name}``)."""
        return os.path.join(self.work_dir, name)

    def worker_pids(self) -> list[int]:
        """PIDs of this backend's live workers."""
        with self._lock:
            self._pump(0)
            return [w.pid for w in self._workers]

    def prestart(self, count: int | None = None, wait: bool = True, timeout: float = 120.0) -> None:
        """Start idle workers up to ``count`` (default: ``max_parallel_jobs``) ahead of the jobs.

        With ``wait``, block until they have finished preloading (or ``timeout``), so the next
        jobs get warm starts.
        """
        count = self.max_parallel_jobs if count is None else min(count, self.max_parallel_jobs)
        with self._lock:
            self._check_open()
            while len(self._workers) < count:
                self._start_worker()
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            with self._lock:
                if all(w.ready for w in self._workers):
                    return
                self._pump(min(0.2, max(0.0, deadline - time.monotonic())))

    def submit(self, spec: JobSpec) -> None:
        """Create job ``spec.name`` and queue it; returns at once (never waits for a worker).

        Raises :class:`~cvtune.errors.ConfigError` for an invalid name, entry point, channel,
        hyperparameter or metric definition, and :class:`~cvtune.errors.JobExistsError` if
        ``{work_dir}/{name}`` exists (names are never reused, even after the job ended).
        """
        self._check_open()
        entry_point = self._validate(spec)
        job_dir = self.job_dir(spec.name)
        os.makedirs(self.work_dir, exist_ok=True)
        exists = JobExistsError(f"job {spec.name!r} already exists in {self.work_dir}; job names are never reused")
        if os.path.exists(os.path.join(job_dir, z.SPEC)):
            raise exists
        if self._spare_dir is None and self.job_cleanup == "compact":
            _sweep_dead_spares(self.work_dir)
            spare_dir = os.path.join(self.work_dir, f".spare-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.makedirs(spare_dir)
            self._spare_dir = spare_dir
        with self._lock:
            self._pump(0)
            worker = self._reserve(spec.name)
        dispatch = None if worker is None else _dispatch_record(worker)
        # The job appears whole or not at all: its tree is built under a temporary name and renamed
        # into place, which is also the atomic claim of the name against other processes. A crash
        # before the rename leaves only a hidden temporary directory, and the job was never created.
        build_dir = tempfile.mkdtemp(dir=self.work_dir, prefix=f".new-{spec.name}-")
        try:
            payload = self._layout(spec, entry_point, job_dir, build_dir, dispatch)
            _discard_partial(job_dir)
            try:
                os.rename(build_dir, job_dir)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise exists from None
                raise
        except BaseException:
            shutil.rmtree(build_dir, ignore_errors=True)
            if worker is not None:
                with self._lock:
                    if worker.job == spec.name and worker.payload is None:
                        worker.job = None
                    self._assigned.pop(spec.name, None)
            raise
        with self._lock:
            if worker is None or not self._hand(worker, spec.name, payload):
                self._queue.append((spec.name, payload))
            self._pump(0)

    def _reserve(self, name: str) -> _Worker | None:
        """An idle, preloaded worker for job ``name`` while nothing is queued (the common case: a
        slot just freed), so its spec can say where it runs and no dispatch.json is needed."""
        if self._queue or self._closed or os.getpid() != self._pid:
            return None
        idle = [w for w in self._workers if w.job is None and w.ready]
        if not idle:
            return None
        worker = max(idle, key=lambda w: w.idle_since)
        worker.job, worker.payload, worker.job_started = name, None, False
        self._assigned[name] = worker
        return worker

    def _hand(self, worker: _Worker, name: str, payload: dict[str, Any]) -> bool:
        """Hand job ``name`` to the worker reserved for it; ``False`` if that worker is gone (queue it)."""
        if worker not in self._workers or worker.job != name:
            self._assigned.pop(name, None)
            return False
        payload = {**payload, "warm_pool_status": WarmPoolStatus.REUSED}
        worker.payload = payload
        self._stats["jobs_run"] += 1
        self._stats["warm_starts"] += 1
        if not _send(worker.conn, ("run", payload)):
            self._worker_gone(worker)  # requeues the job: it never reached the worker
        return True

    def describe(self, name: str) -> JobDescription:
        """Current state of job ``name``, from its files (see the module docstring for statuses).

        Raises :class:`~cvtune.errors.JobNotFoundError` if no such job exists in ``work_dir``.
        May record a terminal state: ``Failed`` "job process lost" for a job whose process and
        worker are gone without a result, ``Failed`` MaxRuntimeExceeded for an unsupervised job
        past its deadline.
        """
        with self._lock:
            self._pump(0)
            final = self._finals.get(name)
            return JobDescription.from_dict(final) if final is not None else self._describe(name)

    def wait(self, names: list[str], timeout: float) -> list[JobDescription]:
        """Block up to ``timeout`` s until at least one of ``names`` ended; return all that ended.

        Wakes up on worker messages, and at least every 0.2 s to also see jobs run by workers of
        other (possibly dead) processes, which only their files reveal.
        """
        names = list(names)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._pump(0)
                ended = self._ended(names)
            remaining = deadline - time.monotonic()
            if ended or remaining <= 0:
                return ended
            with self._lock:
                self._pump(min(self.poll_interval_s, remaining))

    def _ended(self, names: list[str]) -> list[JobDescription]:
        """Those of ``names`` that ended. This backend's own jobs are known without their files:
        queued, on a worker that has not reported their end, or ended with the final.json the worker
        sent; only other jobs (another process's, a lost worker's) are described from files."""
        queued = {n for n, _ in self._queue}
        now = time.monotonic()
        out = []
        for name in names:
            final = self._finals.get(name)
            if final is not None:
                out.append(JobDescription.from_dict(final))
                continue
            worker = self._assigned.get(name)
            if name in queued or (worker is not None and not self._overdue(worker, now)):
                continue
            d = self._describe(name)
            if d.done:
                out.append(d)
        return out

    def _overdue(self, worker: _Worker, now: float) -> bool:
        """Whether the worker's job is past its deadline without an end reported (a stuck worker):
        then its files are looked at, where the backend ends it itself."""
        payload = worker.payload or {}
        runtime = payload.get("max_runtime_s")
        if not worker.job_started or not isinstance(runtime, (int, float)):
            return False
        return now > worker.started_at + runtime + self.stop_grace_s + _DEADLINE_SLACK_S

    def stop(self, name: str) -> None:
        """Stop job ``name``: ``Stopped`` is recorded, then its process group gets SIGTERM and,
        ``stop_grace_s`` later, SIGKILL. Returns without waiting (the job reports ``Stopping``
        until its process is gone). A queued job is ``Stopped`` without ever running; a job that
        already ended is left as it is.
        """
        with self._lock:
            self._pump(0)
            job_dir = self.job_dir(name)
            if z.read_json(os.path.join(job_dir, z.SPEC)) is None:
                raise JobNotFoundError(f"no job {name!r} in {self.work_dir}")
            for i, (queued, _payload) in enumerate(self._queue):
                if queued == name:
                    del self._queue[i]
                    z.record_end(job_dir, JobStatus.STOPPED, None, recorded_by="backend")
                    return
            if os.path.exists(os.path.join(job_dir, z.FINAL)):
                return
            state = z.read_json(os.path.join(job_dir, z.STATE))
            if not z.record_end(job_dir, JobStatus.STOPPED, None, recorded_by="backend", state=state):
                return  # the job (or someone) recorded its end first; leave it
            # Read state.json again *after* recording: the job child writes state.json and then
            # checks for final.json, so either it sees our Stopped or we see its pid.
            state = state or z.read_json(os.path.join(job_dir, z.STATE))
            if not state or not z.process_alive(state.get("pid"), state.get("create_time")):
                return
            pid, create_time = state["pid"], state.get("create_time")
            z.kill_group(pid, signal.SIGTERM)
            worker = self._assigned.get(name)
            if worker is not None and _send(worker.conn, ("stop", name, self.stop_grace_s)):
                return  # our worker escalates to SIGKILL after the grace
            timer = threading.Timer(self.stop_grace_s, _kill_if_alive, (pid, create_time))
            timer.daemon = True
            timer.start()

    def recorded(self, name: str) -> None:
        """Compact the ended job's directory (``job_cleanup``) in the background; a job not ended
        is left alone. Deleting a job's files costs tens of milliseconds on a busy disk, so it runs
        in a cleanup thread, off the path from one job's end to the next one's launch."""
        with self._lock:
            self._finals.pop(name, None)
            if self.job_cleanup == "keep":
                return
            self._cleanup_queue.append(name)
            if self._cleanup_thread is None or not self._cleanup_thread.is_alive():
                self._cleanup_thread = threading.Thread(target=self._cleanup_loop, name="cvtune-job-cleanup", daemon=True)
                self._cleanup_thread.start()
            self._cleanup_wake.set()

    def _cleanup_loop(self) -> None:
        while True:
            self._cleanup_wake.wait(timeout=0.5)
            self._cleanup_wake.clear()
            later = []
            while self._cleanup_queue:
                name = self._cleanup_queue.popleft()
                with self._lock:
                    busy = name in self._assigned and not self._closed
                if busy:  # its worker has not reported the end yet: its process may still be exiting
                    later.append(name)
                    continue
                try:
                    self._compact(name)
                except Exception:  # noqa: BLE001 - a leftover file costs only disk
                    pass
            self._cleanup_queue.extend(later)
            if self._closed and not self._cleanup_queue:
                return

    def _compact(self, name: str) -> None:
        job_dir = self.job_dir(name)
        final = z.read_json(os.path.join(job_dir, z.FINAL))
        if final is None or final.get("status") not in JOB_ENDED:
            return
        if final.get("status") == JobStatus.COMPLETED:
            self._recycle(job_dir)
        keep = {z.SPEC, z.FINAL}
        if final.get("status") != JobStatus.COMPLETED:
            keep |= {z.LOG, "output"}  # the log and output/failure tell what went wrong
        for entry in os.listdir(job_dir):
            if entry in keep:
                continue
            path = os.path.join(job_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        if final.get("status") != JobStatus.COMPLETED:
            output = os.path.join(job_dir, "output")
            if os.path.isdir(output):
                for entry in os.listdir(output):
                    if entry != "failure":
                        path = os.path.join(output, entry)
                        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)

    def _recycle(self, job_dir: str) -> None:
        """Move the completed job's ``input/``, ``model/`` and ``output/`` to the spares, emptied,
        if its input tree is exactly what the backend laid out (a script may have written into it)."""
        spare_dir = self._spare_dir
        with self._lock:
            if spare_dir is None or sum(map(len, self._spares.values())) >= self._spare_max:
                return
            self._spare_count += 1
            number = self._spare_count
        spec = z.read_json(os.path.join(job_dir, z.SPEC)) or {}
        key = _channels_key(spec.get("channels") or {})
        try:
            if key is None or not _input_as_laid_out(os.path.join(job_dir, "input"), json.loads(key)):
                return
            for sub in ("model", "output"):
                if os.path.islink(os.path.join(job_dir, sub)) or not os.path.isdir(os.path.join(job_dir, sub)):
                    return
            _empty(os.path.join(job_dir, "model"))
            _empty(os.path.join(job_dir, "output"), keep="data")
            if not os.path.isdir(os.path.join(job_dir, "output", "data")) or os.path.islink(
                os.path.join(job_dir, "output", "data")
            ):
                return
            _empty(os.path.join(job_dir, "output", "data"))
            # os.replace, a rename: these moves are not a job's claim and leave nothing to resume
            for sub in _TREE:
                os.replace(os.path.join(job_dir, sub), os.path.join(spare_dir, f"{number}-{sub}"))
        except OSError:
            return
        with self._lock:
            self._spares.setdefault(key, []).append(number)

    def _take_spare(self, key: str | None, build_dir: str) -> bool:
        """Move a spare tree laid out for channels ``key`` into ``build_dir``; ``False`` if there is none."""
        if key is None or self._spare_dir is None:
            return False
        with self._lock:
            numbers = self._spares.get(key)
            if not numbers:
                return False
            number = numbers.pop()
        try:
            for sub in _TREE:
                os.replace(os.path.join(self._spare_dir, f"{number}-{sub}"), os.path.join(build_dir, sub))
        except OSError:  # a spare half moved: build the rest of the tree fresh
            for sub in _TREE:
                shutil.rmtree(os.path.join(build_dir, sub), ignore_errors=True)
            return False
        return True

    def read_log(self, name: str, tail: int | None = None) -> str:
        """The job's log (stdout + stderr), or its last ``tail`` lines."""
        job_dir = self.job_dir(name)
        if not os.path.exists(os.path.join(job_dir, z.SPEC)):
            raise JobNotFoundError(f"no job {name!r} in {self.work_dir}")
        return z.log_tail(os.path.join(job_dir, z.LOG), tail)

    def close(self) -> None:
        """Shut the pool down without stopping running jobs.

        Idle workers are told to exit and joined. Busy workers are detached: they finish their
        current job (which records its own end) and then exit, since their pipe is closed. Jobs
        still queued in this object never run: they are recorded as ``Stopped``. Describing and
        waiting still work afterwards (from the files); submitting does not. The same shutdown
        runs at interpreter exit (an atexit hook, via :func:`weakref.finalize`) or when the object
        is garbage collected, for backends that were not closed; it never waits for running jobs.
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._pump(0)
            except Exception:  # closing must not fail because one worker misbehaved
                pass
            self._closed = True
            self._assigned.clear()
            self._finalizer()
        thread = self._cleanup_thread
        if thread is not None:
            self._cleanup_wake.set()
            thread.join(timeout=30)  # finish compacting what was released
        if self._spare_dir is not None:
            with self._lock:
                self._spares.clear()
            shutil.rmtree(self._spare_dir, ignore_errors=True)

    # ------------------------------------------------------------------ submit helpers

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this LocalBackend is closed; create a new one to submit jobs")
        if os.getpid() != self._pid:
            raise RuntimeError("this LocalBackend belongs to the process that created it; create a new one here")

    def _validate(self, spec: JobSpec) -> str:
        """Check ``spec`` before claiming its name; return the absolute entry point path."""
        if not isinstance(spec.name, str) or not JOB_NAME_RE.match(spec.name):
            raise ConfigError(
                "name", f"invalid job name {spec.name!r}",
                "use 1-63 letters, digits and hyphens, starting with a letter or digit",
            )
        if not isinstance(spec.entry_point, str) or not store.is_local(spec.entry_point):
            raise ConfigError("entry_point", f"{spec.entry_point!r} is not a local path", "the local backend runs local scripts")
        entry_point = os.path.abspath(store.local_path(spec.entry_point))
        if not os.path.isfile(entry_point):
            raise ConfigError("entry_point", f"{entry_point} does not exist or is not a file")
        for key, value in spec.hyperparameters.items():
            # Names become SM_HP_<NAME> variables and --name flags; NUL cannot be in either.
            if not isinstance(key, str) or not key or any(c in key for c in "=\0") or key.split() != [key]:
                raise ConfigError(
                    "hyperparameters", f"invalid hyperparameter name {key!r}",
                    "use a non-empty name without spaces, '=' or NUL",
                )
            if "\0" in _hp_string(value):
                raise ConfigError(f"hyperparameters.{key}", "the value contains a NUL character")
        for channel, uri in spec.channels.items():
            if not isinstance(channel, str) or not _CHANNEL_NAME_RE.match(channel):
                raise ConfigError(f"channels.{channel}", "invalid channel name", "use letters, digits, '.', '_' or '-'")
            if not isinstance(uri, str) or not uri:
                raise ConfigError(f"channels.{channel}", f"expected a directory or URI, got {uri!r}")
            if store.is_local(uri) and not os.path.exists(store.local_path(uri)):
                raise ConfigError(f"channels.{channel}", f"{uri} does not exist")
        validate_metric_definitions(spec.metric_definitions)
        runtime = spec.max_runtime_s
        if not isinstance(runtime, (int, float)) or isinstance(runtime, bool) or not runtime > 0:
            raise ConfigError("max_runtime_s", f"must be a positive number of seconds, got {runtime!r}")
        return entry_point

    def _layout(
        self, spec: JobSpec, entry_point: str, job_dir: str, build_dir: str, dispatch: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Create the /opt/ml-like tree and state files in ``build_dir`` (renamed to ``job_dir`` next);
        return the payload a worker needs (paths under ``job_dir``)."""
        paths = {
            "input": os.path.join(job_dir, "input"),
            "config": os.path.join(job_dir, "input", "config"),
            "data": os.path.join(job_dir, "input", "data"),
            "model": os.path.join(job_dir, "model"),
            "output": os.path.join(job_dir, "output"),
            "output_data": os.path.join(job_dir, "output", "data"),
        }
        key = _channels_key(spec.channels)
        local = {ch: u for ch, u in spec.channels.items() if store.is_local(u)}
        if not self._take_spare(key, build_dir):
            for path in paths.values():
                os.makedirs(build_dir + path[len(job_dir):], exist_ok=True)
            for ch, uri in local.items():
                dest = os.path.join(build_dir, "input", "data", ch)
                os.makedirs(dest)
                z.link_channel(dest, store.local_path(uri))
        config_dir = build_dir + paths["config"][len(job_dir):]
        hp_strings = {k: _hp_string(v) for k, v in spec.hyperparameters.items()}
        resource = {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "network_interface_name": "lo"}
        data_config = {ch: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"} for ch in spec.channels}
        # the tree is private until renamed: written in place (in a recycled tree, over the last job's)
        for file, content in (("hyperparameters.json", hp_strings), ("resourceconfig.json", resource),
                              ("inputdataconfig.json", data_config)):
            _overwrite(os.path.join(config_dir, file), (json.dumps(content, indent=2, default=str) + "\n").encode())
        # the log is created by the job itself; who queued the job (and where it runs, if known) is in its spec
        submitted = {"owner_pid": os.getpid(), "owner_create_time": _own_create_time(), "submit_time": time.time()}
        z.write_new(
            os.path.join(build_dir, z.SPEC),
            {**spec.to_dict(), "submitted": submitted, **({"dispatch": dispatch} if dispatch else {})},
        )

        channel_dirs = {ch: os.path.join(paths["data"], ch) for ch in spec.channels}
        remote = any(not store.is_local(u) for u in [*spec.channels.values(), spec.output_uri or ""])
        argv = [entry_point]
        for key, value in hp_strings.items():
            argv += [f"--{key}", value]
        cpus = str(self.cpus_per_job)
        training_env = {
            "job_name": spec.name,
            "hyperparameters": spec.hyperparameters,
            "channel_input_dirs": channel_dirs,
            "current_host": CURRENT_HOST,
            "hosts": [CURRENT_HOST],
            "model_dir": paths["model"],
            "output_dir": paths["output"],
            "output_data_dir": paths["output_data"],
            "input_dir": paths["input"],
            "input_config_dir": paths["config"],
            "input_data_config": data_config,
            "resource_config": resource,
            "num_cpus": self.cpus_per_job,
            "num_gpus": 0,
            "user_entry_point": os.path.basename(entry_point),
            "module_dir": os.path.dirname(entry_point),
        }
        env = job_environment(os.environ, spec.environment)
        env.update(
            {
                "SM_HPS": json.dumps(spec.hyperparameters, default=str),
                "SM_CHANNELS": json.dumps(sorted(spec.channels)),
                "SM_MODEL_DIR": paths["model"],
                "SM_OUTPUT_DATA_DIR": paths["output_data"],
                "SM_OUTPUT_DIR": paths["output"],
                "SM_INPUT_DIR": paths["input"],
                "SM_INPUT_CONFIG_DIR": paths["config"],
                "SM_INPUT_DATA_CONFIG": json.dumps(data_config),
                "SM_RESOURCE_CONFIG": json.dumps(resource),
                "SM_NUM_CPUS": cpus,
                "SM_NUM_GPUS": "0",
                "SM_HOSTS": json.dumps([CURRENT_HOST]),
                "SM_CURRENT_HOST": CURRENT_HOST,
                "SM_USER_ENTRY_POINT": os.path.basename(entry_point),
                "SM_MODULE_DIR": os.path.dirname(entry_point),
                "SM_USER_ARGS": json.dumps(argv[1:]),
                "SM_TRAINING_ENV": json.dumps(training_env, default=str),
                "TRAINING_JOB_NAME": spec.name,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key, value in hp_strings.items():
            env["SM_HP_" + key.upper()] = value
        for ch, path in channel_dirs.items():
            env["SM_CHANNEL_" + ch.upper()] = path
        for var in _THREAD_ENV:
            env[var] = cpus
        return {
            "name": spec.name,
            "job_dir": job_dir,
            "entry_point": entry_point,
            "argv": argv,
            "env": env,
            # local channels are linked above; the job child downloads the others
            "channels": {ch: u for ch, u in spec.channels.items() if ch not in local},
            "spec": {"name": spec.name, "metric_definitions": spec.metric_definitions, "tags": dict(spec.tags)},
            # Absolute, since the script may chdir before the model is uploaded.
            "output_uri": (
                os.path.abspath(store.local_path(spec.output_uri))
                if spec.output_uri and store.is_local(spec.output_uri)
                else spec.output_uri
            ),
            "max_runtime_s": spec.max_runtime_s,
            "stop_grace_s": self.stop_grace_s,
            # Over the worker's pipe only, never into a file or the job's environment: credentials.
            **({"store": self.store.options()} if remote else {}),
        }

    # ------------------------------------------------------------------ describe helpers

    def _describe(self, name: str) -> JobDescription:
        job_dir = self.job_dir(name)
        spec = z.read_json(os.path.join(job_dir, z.SPEC))
        if spec is None:
            raise JobNotFoundError(f"no job {name!r} in {self.work_dir}")
        final = z.read_json(os.path.join(job_dir, z.FINAL))
        state = z.read_json(os.path.join(job_dir, z.STATE))
        if final is not None:
            desc = JobDescription.from_dict(final)
            if desc.status == JobStatus.STOPPED and state and z.process_alive(state.get("pid"), state.get("create_time")):
                desc.status = JobStatus.STOPPING
            return desc
        if state is not None:
            child_alive = z.process_alive(state.get("pid"), state.get("create_time"))
            # A live worker will record the end of its child itself (it may be reaping it now).
            if child_alive or z.process_alive(state.get("worker_pid"), state.get("worker_create_time")):
                if child_alive and self._past_deadline(state):
                    # Nobody enforced the max runtime (its worker is stuck or gone): do it here.
                    z.record_end(
                        job_dir, JobStatus.FAILED, z.max_runtime_reason(state.get("max_runtime_s")),
                        recorded_by="backend", spec=spec, state=state,
                    )
                    z.kill_group(state["pid"], signal.SIGKILL)
                    return self._read_final(job_dir)
                return self._in_progress(spec, state)
            if not os.path.exists(os.path.join(job_dir, z.FINAL)):
                z.record_end(
                    job_dir, JobStatus.FAILED,
                    f"job process lost (pid {state.get('pid')} and its worker pid {state.get('worker_pid')} "
                    "exited without recording a result)",
                    recorded_by="backend", spec=spec, state=state,
                )
            return self._read_final(job_dir)
        # Not started yet.
        if name in self._assigned or any(queued == name for queued, _ in self._queue):
            return self._in_progress(spec, None)
        submitted = spec.get("submitted") or z.read_json(os.path.join(job_dir, z.SUBMITTED)) or {}
        dispatch = z.read_json(os.path.join(job_dir, z.DISPATCH)) or spec.get("dispatch") or {}
        owner_alive = z.process_alive(submitted.get("owner_pid"), submitted.get("owner_create_time"))
        if owner_alive or z.process_alive(dispatch.get("worker_pid"), dispatch.get("worker_create_time")):
            return self._in_progress(spec, None)
        if os.path.exists(os.path.join(job_dir, z.STATE)):  # it started while we were looking
            return self._describe(name)
        if not os.path.exists(os.path.join(job_dir, z.FINAL)):
            # Never ran, like the queued jobs close() stops: Stopped, so a tuner replaces its trial
            # instead of counting a failure of the training script.
            z.record_end(
                job_dir, JobStatus.STOPPED,
                f"job process lost before it started (the process pid {submitted.get('owner_pid')} that "
                "queued the job exited before a worker started it)",
                recorded_by="backend", spec=spec, state={},
            )
        return self._read_final(job_dir)

    def _past_deadline(self, state: dict[str, Any]) -> bool:
        start, runtime = state.get("start_time"), state.get("max_runtime_s")
        if not isinstance(start, (int, float)) or not isinstance(runtime, (int, float)):
            return False
        grace = float(state.get("stop_grace_s") or 0.0)
        return time.time() > start + runtime + grace + _DEADLINE_SLACK_S

    def _in_progress(self, spec: dict[str, Any], state: dict[str, Any] | None) -> JobDescription:
        state = state or {}
        return JobDescription(
            name=spec["name"],
            status=JobStatus.IN_PROGRESS,
            start_time=state.get("start_time"),
            warm_pool_status=state.get("warm_pool_status"),
            log_uri=os.path.join(self.job_dir(spec["name"]), z.LOG),
            tags=dict(spec.get("tags") or {}),
        )

    def _read_final(self, job_dir: str) -> JobDescription:
        final = z.read_json(os.path.join(job_dir, z.FINAL))
        if final is None:  # pragma: no cover - write_final guarantees it exists by now
            raise RuntimeError(f"{job_dir}: final.json vanished")
        return JobDescription.from_dict(final)

    # ------------------------------------------------------------------ the pool

    def _pump(self, timeout: float) -> None:
        """Handle worker messages and deaths (waiting up to ``timeout`` s for one), then dispatch."""
        from multiprocessing.connection import wait

        if os.getpid() != self._pid:
            return  # a forked copy: only the files are ours to read
        _reap_detached()
        by_conn = {w.conn: w for w in self._workers}
        if by_conn:
            ready = wait(list(by_conn), timeout)
        else:
            if timeout > 0:
                time.sleep(timeout)
            ready = []
        for conn in ready:
            self._drain(by_conn[conn])
        if not self._closed:
            self._dispatch()

    def _drain(self, w: _Worker) -> None:
        while True:
            try:
                if not w.conn.poll():
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                self._worker_gone(w)
                return
            kind = msg[0]
            if kind == "ready":
                w.ready = True
                self._startup_failures = 0
                for module, error in msg[2]:
                    if module not in self._warned:
                        self._warned.add(module)
                        warnings.warn(
                            f"cvtune local backend: preload module {module!r} could not be imported "
                            f"({error}); skipped, jobs will import it themselves",
                            RuntimeWarning,
                            stacklevel=2,
                        )
            elif kind == "started":
                w.job_started = True
                w.started_at = time.monotonic()
            elif kind == "ended":
                if len(msg) > 3 and isinstance(msg[3], dict) and msg[1] == w.job:
                    self._finals[msg[1]] = msg[3]
                if w.job is not None:
                    self._assigned.pop(w.job, None)
                w.job, w.payload, w.job_started = None, None, False
                w.idle_since = time.monotonic()
            elif kind == "retired":
                w.retired = True

    def _worker_gone(self, w: _Worker) -> None:
        """A worker exited (retired, crashed or killed): account for it and for its job."""
        if w in self._workers:
            self._workers.remove(w)
        try:
            w.conn.close()
        except OSError:
            pass
        try:
            returncode = w.popen.wait(timeout=2)
        except subprocess.TimeoutExpired:  # pipe closed but still alive: should not happen
            w.popen.kill()
            returncode = w.popen.wait()
        if w.retired:
            self._stats["workers_retired"] += 1
        else:
            self._stats["workers_lost"] += 1
            if not w.ready:
                self._startup_failures += 1
        if w.job is None:
            return
        name, payload = w.job, w.payload
        self._assigned.pop(name, None)
        if payload is None:
            return  # reserved by a submit still laying the job out: that submit queues it
        job_dir = self.job_dir(name)
        state = z.read_json(os.path.join(job_dir, z.STATE))
        how = f"signal {z.signal_name(-returncode)}" if returncode < 0 else f"exit code {returncode}"
        if w.job_started or state is not None:
            # Record first, then kill: the child must not be left running unsupervised.
            z.record_end(
                job_dir, JobStatus.FAILED,
                f"WorkerError: the worker process (pid {w.pid}) running this job died ({how}); "
                "the job was ended",
                recorded_by="backend", state=state,
            )
            if state and z.process_alive(state.get("pid"), state.get("create_time")):
                z.kill_group(state["pid"], signal.SIGKILL)
        elif self._startup_failures >= _MAX_STARTUP_FAILURES:
            z.record_end(
                job_dir, JobStatus.FAILED,
                f"WorkerError: {self._startup_failures} worker processes in a row exited while starting "
                f"(last: {how}); see the orchestrator's stderr for their error",
                recorded_by="backend", state={},
            )
        elif payload is not None:
            # Never reached the worker (e.g. it retired as we handed the job over): run it again.
            self._stats["jobs_run"] -= 1
            if payload.get("warm_pool_status") == WarmPoolStatus.REUSED:
                self._stats["warm_starts"] -= 1
            self._queue.appendleft((name, payload))

    def _start_worker(self) -> _Worker:
        from multiprocessing.connection import Connection

        import psutil

        ours, theirs = socket.socketpair()
        os.makedirs(self.work_dir, exist_ok=True)
        config = {
            "preload": list(self.preload),
            "keep_alive_s": self.keep_alive_s,
            # Not a valid job name, so it cannot collide with a job directory.
            "worker_log": os.path.join(self.work_dir, WORKER_LOG),
            "sys_path": [os.path.abspath(p) if p else os.getcwd() for p in sys.path],
        }
        # The worker stages channels and models to and from the artifact store, so it keeps AWS_*
        # settings; the rest of this process's environment (Airflow's secrets) stays here.
        env = {**job_environment(os.environ), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
        # BLAS/OpenMP runtimes read these once, when the worker loads them during preload.
        for var in _THREAD_ENV:
            env[var] = str(self.cpus_per_job)
        try:
            # A fresh interpreter, not a fork of this (possibly multi-threaded) process; started
            # directly rather than via multiprocessing's spawn so the caller's __main__ module is
            # never re-imported in the worker (unguarded scripts, Airflow's CLI...).
            popen = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, json.dumps(config), str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
                close_fds=True,
            )
        finally:
            theirs.close()
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:
            create_time = None
        w = _Worker(popen=popen, conn=Connection(ours.detach()), pid=popen.pid, create_time=create_time)
        self._workers.append(w)
        self._stats["workers_started"] += 1
        return w

    def _dispatch(self) -> None:
        """Hand queued jobs to idle workers, growing the pool up to max_parallel_jobs."""
        while self._queue:
            name, payload = self._queue[0]
            job_dir = self.job_dir(name)
            if os.path.exists(os.path.join(job_dir, z.FINAL)) or not os.path.isdir(job_dir):
                self._queue.popleft()  # stopped, or its directory deleted, while queued
                continue
            idle = [w for w in self._workers if w.job is None]
            if idle:
                # Preloaded first, then the most recently busy: the others may retire.
                worker = max(idle, key=lambda w: (w.ready, w.idle_since))
            elif len(self._workers) < self.max_parallel_jobs:
                worker = self._start_worker()
            else:
                return
            self._queue.popleft()
            warm = worker.ready
            payload = {
                **payload,
                "warm_pool_status": WarmPoolStatus.REUSED if warm else WarmPoolStatus.COLD,
            }
            z.write_json(os.path.join(job_dir, z.DISPATCH), _dispatch_record(worker))
            if not _send(worker.conn, ("run", payload)):
                self._queue.appendleft((name, payload))
                self._worker_gone(worker)
                continue
            worker.job, worker.payload, worker.job_started = name, payload, False
            self._assigned[name] = worker
            self._stats["jobs_run"] += 1
            if warm:
                self._stats["warm_starts"] += 1


# ---------------------------------------------------------------------- module helpers


def _sweep_dead_spares(work_dir: str) -> None:
    """Delete the spare trees of orchestrators that died without closing their backend (a killed
    Airflow task): they are named after the owner's pid, and only a live pid may still use its own.
    A live but unrelated process that reused the pid only delays the sweep to a later backend."""
    import psutil

    try:
        entries = os.listdir(work_dir)
    except OSError:
        return
    for entry in entries:
        parts = entry.split("-")
        if len(parts) != 3 or parts[0] != ".spare" or not parts[1].isdigit():
            continue
        if not psutil.pid_exists(int(parts[1])):
            shutil.rmtree(os.path.join(work_dir, entry), ignore_errors=True)


def _discard_partial(job_dir: str) -> None:
    """Move aside a job directory without a spec: left by a crash of a version of this backend that
    created the directory before its files; such a job was never created (nothing ran it)."""
    if os.path.isdir(job_dir) and not os.path.exists(os.path.join(job_dir, z.SPEC)):
        parked = tempfile.mkdtemp(dir=os.path.dirname(job_dir), prefix=f".partial-{os.path.basename(job_dir)}-")
        os.rename(job_dir, os.path.join(parked, "job"))


def _dispatch_record(worker: _Worker) -> dict[str, Any]:
    """Which worker runs a job (pid + create time): a describe elsewhere judges the job by it."""
    return {"worker_pid": worker.pid, "worker_create_time": worker.create_time, "time": time.time()}


def _channels_key(channels: dict[str, str]) -> str | None:
    """What a job's ``input/`` tree holds, as a key of spare trees: each channel's links; ``None``
    when a channel is remote (downloaded by the job) or gone."""
    links = {}
    for channel, uri in sorted(channels.items()):
        if not store.is_local(uri):
            return None
        try:
            links[channel] = z.channel_entries(store.local_path(uri))
        except OSError:
            return None
    return json.dumps(links)


def _input_as_laid_out(input_dir: str, links: dict[str, list[str]]) -> bool:
    """Whether ``input_dir`` holds exactly the config files and channel links the backend made."""
    try:
        if sorted(os.listdir(input_dir)) != ["config", "data"]:
            return False
        config, data = os.path.join(input_dir, "config"), os.path.join(input_dir, "data")
        if os.path.islink(config) or os.path.islink(data) or set(os.listdir(config)) != _CONFIG_FILES:
            return False
        if any(os.path.islink(os.path.join(config, f)) for f in _CONFIG_FILES):
            return False
        if sorted(os.listdir(data)) != sorted(links):
            return False
        for channel, entries in links.items():
            dest = os.path.join(data, channel)
            if os.path.islink(dest) or sorted(os.listdir(dest)) != sorted(os.path.basename(e) for e in entries):
                return False
            if any(os.readlink(os.path.join(dest, os.path.basename(e))) != e for e in entries):
                return False
    except OSError:
        return False
    return True


def _overwrite(path: str, data: bytes) -> None:
    """Write ``data`` as the whole content of ``path``, over an existing file without truncating it to
    zero first: ext4 flushes a file truncated to zero and rewritten when it is closed (its
    ``auto_da_alloc`` heuristic), which costs ~3 ms per file where this costs ~0.01 ms."""
    try:
        with open(path, "r+b") as f:
            f.write(data)
            f.truncate()
    except FileNotFoundError:
        with open(path, "xb") as new:
            new.write(data)


def _empty(directory: str, keep: str | None = None) -> None:
    """Remove what a job wrote into ``directory`` (not following links), but ``keep``."""
    for entry in os.listdir(directory):
        if entry == keep:
            continue
        path = os.path.join(directory, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


def _hp_string(value: Any) -> str:
    """A hyperparameter as SageMaker passes it: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _send(conn: Any, msg: tuple) -> bool:
    try:
        conn.send(msg)
        return True
    except (OSError, EOFError, ValueError):  # ValueError: the connection was closed
        return False


def _kill_if_alive(pid: int, create_time: float | None) -> None:
    if z.process_alive(pid, create_time):
        z.kill_group(pid, signal.SIGKILL)


_create_times: dict[int, float] = {}


def _own_create_time() -> float | None:
    """Create time of this process (cached per pid, so a forked copy computes its own)."""
    pid = os.getpid()
    if pid not in _create_times:
        import psutil

        try:
            _create_times[pid] = psutil.Process(pid).create_time()
        except psutil.Error:
            return None
    return _create_times[pid]


# Busy workers detached by close(): still running their last job; reaped when they exit.
_DETACHED: list[subprocess.Popen] = []


def _reap_detached() -> None:
    _DETACHED[:] = [p for p in _DETACHED if p.poll() is None]


def _shutdown(owner_pid: int, work_dir: str, queue: deque, workers: list[_Worker]) -> None:
    """Record queued jobs as Stopped, dismiss idle workers, detach busy ones (see ``close``)."""
    if os.getpid() != owner_pid:
        return  # a forked copy exiting: the pool and the queue belong to the parent
    while queue:
        name, _payload = queue.popleft()
        z.record_end(
            os.path.join(work_dir, name), JobStatus.STOPPED, "the backend was closed before the job started",
            recorded_by="backend",
        )
    idle = [w for w in workers if w.job is None]
    for w in idle:
        _send(w.conn, ("exit",))
    for w in workers:
        try:
            w.conn.close()
        except OSError:
            pass
        if w.job is not None:
            _DETACHED.append(w.popen)  # keeps the Popen referenced until it exits
    workers.clear()
    for w in idle:
        try:
            w.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            w.popen.kill()
            w.popen.wait()
    _reap_detached()
