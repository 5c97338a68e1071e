"""Worker-process side of the local backend, plus the on-disk job-state helpers it shares.

A *worker* ("zygote") is a fresh interpreter started by :class:`cvtune.local.backend.LocalBackend`.
It imports the preload modules once, then loops on its pipe: for each job it ``os.fork()``\\ s a
child that runs the training script under the SageMaker script-mode contract, supervises that
child (max runtime, stop escalation), records how it ended if the child could not, and reports
back. The child is a copy-on-write image of the warm worker, so heavy imports are already done and
every job is still a separate process with its own environment, cwd, argv and globals.

Messages on the pipe (tuples, pickled by :class:`multiprocessing.connection.Connection`)::

    backend -> worker   ("run", payload)   ("stop", name, grace_s)   ("exit",)
    worker -> backend   ("ready", pid, failed_imports, preload_s)    ("started", name, child_pid)
                        ("ended", name, status, final_json)           ("retired",)

Files in a job directory that record state (all JSON, all written atomically)::

    spec.json       the JobSpec; its existence means the job exists. Also who queued the job
                    (``submitted``: owner pid + create time) and, when a worker was idle at submit,
                    which worker it is handed to (``dispatch``)
    submitted.json  who queued the job (written by earlier versions; still read)
    dispatch.json   which worker the job was handed to, when that was decided after the submit
    state.json      written by the job child when it starts: pid, create time, start time...
    final.json      the terminal JobDescription, written once: first writer wins (os.link)

This module must stay light: it is imported by every worker before the preload list, so it only
imports the standard library, psutil and the small cvtune modules.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from typing import Any

from cvtune.metrics import extract_metrics
from cvtune.states import JobStatus
from cvtune.store import ArtifactStore

SUBMITTED = "submitted.json"
SPEC = "spec.json"
DISPATCH = "dispatch.json"
STATE = "state.json"
FINAL = "final.json"
LOG = "log.txt"

TAIL_LINES = 20
_TAIL_BYTES = 64 * 1024
_MAX_REASON_CHARS = 8000

# Exit codes of the job child (the real outcome is in final.json; these only help debugging).
_EXIT_OK = 0
_EXIT_FAILED = 1
_EXIT_INTERNAL = 70


# --------------------------------------------------------------------------------------------
# On-disk state, shared by the job child, its worker and the backend
# --------------------------------------------------------------------------------------------


def read_json(path: str) -> Any | None:
    """The JSON document at ``path``, or ``None`` if it does not exist (or is unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # Writers are atomic, so a parse error means a foreign/corrupt file: treat as absent.
        return None


def _json(obj: Any) -> str:
    # one line, by json's C encoder (an indent makes it fall back to the pure-Python one)
    return json.dumps(obj, default=str) + "\n"


def _temp_sibling(directory: str, prefix: str) -> tuple[int, str]:
    """A new temporary file in ``directory``, named after this process and thread.

    Not ``tempfile.mkstemp``: in a freshly forked job child its first call seeds a new
    ``random.Random`` from 2.5 kB of ``os.urandom`` and runs through ``tempfile``'s code, which copies
    pages of the worker (copy-on-write faults are most of a trivial job's cost). A pid + thread id
    name is unique among live writers; a leftover of a dead process with the same pid falls back
    to mkstemp.
    """
    import threading

    tmp = os.path.join(directory, f"{prefix}{os.getpid()}-{threading.get_ident()}")
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
    except FileExistsError:
        return tempfile.mkstemp(dir=directory, prefix=prefix)


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically (temporary sibling, then rename)."""
    fd, tmp = _temp_sibling(os.path.dirname(path), f".tmp-{os.path.basename(path)}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_json(obj))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_new(path: str, obj: Any) -> None:
    """Write ``obj`` to a file that must not exist yet, in a directory no reader sees yet (a job's
    tree before it is renamed into place): no temporary sibling needed, one inode fewer."""
    with open(path, "x", encoding="utf-8") as f:
        f.write(_json(obj))


def write_final(job_dir: str, desc: dict[str, Any]) -> bool:
    """Record the terminal description of a job, unless one was recorded already.

    ``os.link`` refuses to replace an existing file, so of all the writers (the job itself, its
    worker, a ``stop``, a backend noticing a lost process) exactly one wins, atomically, also
    across processes. Returns whether this call won; a job whose directory was deleted (a user or
    a benchmark removing ended jobs while their worker is still finishing) has nothing left to
    record into, and the call loses: a missing directory must not bring down the worker or the
    orchestrator noticing the end.
    """
    try:
        fd, tmp = _temp_sibling(job_dir, ".final-")
    except FileNotFoundError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_json(desc))
        os.link(tmp, os.path.join(job_dir, FINAL))
        return True
    except FileExistsError:
        return False
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def process_alive(pid: Any, create_time: Any) -> bool:
    """Whether process ``pid`` is running and is the one created at ``create_time``.

    The create time guards against PID reuse: a recycled PID belongs to a younger process. A
    zombie (exited, not yet reaped) counts as dead.
    """
    if not isinstance(pid, int) or pid <= 0:
        return False
    import psutil

    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError, TypeError):
        return False


def kill_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid`` (a job child is its own group leader); ignore if gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(path: str, lines: int | None = TAIL_LINES) -> str:
    """The last ``lines`` lines of the log at ``path`` (all of it if ``lines`` is None)."""
    if lines is not None and lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            if lines is None:
                return f.read().decode("utf-8", errors="replace")
            size = f.seek(0, os.SEEK_END)
            window = _TAIL_BYTES
            while True:  # read a growing window from the end until it holds enough lines
                f.seek(max(0, size - window))
                data = f.read()
                if window >= size or data.count(b"\n") > lines:
                    break
                window *= 4
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def exit_description(wait_status: int) -> str:
    """Human wording of a ``waitpid`` status: ``exit code 3`` / ``signal SIGSEGV``."""
    if os.WIFSIGNALED(wait_status):
        return f"signal {signal_name(os.WTERMSIG(wait_status))}"
    if os.WIFEXITED(wait_status):
        return f"exit code {os.WEXITSTATUS(wait_status)}"
    return f"wait status {wait_status}"


def record_end(
    job_dir: str,
    status: str,
    reason: str | None,
    *,
    recorded_by: str,
    spec: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    model_artifacts: str | None = None,
    exit_code: int | None = None,
) -> bool:
    """Build the terminal description of a job from its files and record it (first writer wins).

    Final metrics are extracted from the log whatever the status (as SageMaker reports the metrics
    a failed job emitted). For ``Failed`` the last :data:`TAIL_LINES` lines of the log are appended
    to ``reason`` so the real error is visible without opening the log.
    """
    if spec is None:
        spec = read_json(os.path.join(job_dir, SPEC)) or {}
    if state is None:
        state = read_json(os.path.join(job_dir, STATE)) or {}
    log_path = os.path.join(job_dir, LOG)
    metrics: dict[str, float] = {}
    if spec.get("metric_definitions") and os.path.exists(log_path):
        try:
            metrics = extract_metrics(log_tail(log_path, None), spec["metric_definitions"])
        except Exception:  # a bad regex must not prevent recording the end of the job
            metrics = {}
    if status == JobStatus.FAILED and reason is not None:
        tail = log_tail(log_path)
        if tail.strip():
            reason = f"{reason}\n--- last {TAIL_LINES} lines of {log_path} ---\n{tail}"
        if len(reason) > _MAX_REASON_CHARS:
            reason = reason[:1000] + "\n[...]\n" + reason[-(_MAX_REASON_CHARS - 1010) :]
    start = state.get("start_time")
    end = time.time()
    desc = {
        "name": spec.get("name") or os.path.basename(job_dir.rstrip(os.sep)),
        "status": status,
        "failure_reason": reason,
        "final_metrics": metrics,
        "model_artifacts": model_artifacts if status == JobStatus.COMPLETED else None,
        "start_time": start,
        "end_time": end,
        "billable_seconds": round(end - start, 3) if isinstance(start, (int, float)) else None,
        "warm_pool_status": state.get("warm_pool_status"),
        "log_uri": log_path,
        "tags": dict(spec.get("tags") or {}),
        # Extra fields (ignored by JobDescription.from_dict), kept for debugging.
        "recorded_by": recorded_by,
        "exit_code": exit_code,
        "pid": state.get("pid"),
        "worker_pid": state.get("worker_pid"),
    }
    return write_final(job_dir, desc)


def max_runtime_reason(max_runtime_s: Any) -> str:
    return f"MaxRuntimeExceeded: the job exceeded max_runtime_s={max_runtime_s} and was stopped"


# --------------------------------------------------------------------------------------------
# Worker (zygote) main loop
# --------------------------------------------------------------------------------------------


def worker_main(config: dict[str, Any], fd: int) -> None:
    """Entry point of a worker process (see the module docstring). Never returns."""
    import gc
    import importlib
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    # Ctrl-C in a terminal signals the whole foreground group; the orchestrator decides what to
    # do (close the backend, stop jobs), the worker must not die mid-supervision because of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    t0 = time.monotonic()
    failed: list[tuple[str, str]] = []
    for module in config.get("preload", ()):
        try:
            importlib.import_module(module)
        except BaseException as exc:  # a broken module may raise anything, even SystemExit
            failed.append((module, f"{type(exc).__name__}: {exc}"))
    import ctypes  # noqa: F401 - used by every job child to flush C stdio before os._exit
    import runpy  # noqa: F401 - used by every job child

    import psutil  # process create times; imported once here so job children do not pay for it

    own_create_time = psutil.Process().create_time()
    global _BOOT_TIME
    _BOOT_TIME = psutil.boot_time()
    preload_s = time.monotonic() - t0
    # Move everything imported so far out of the collector's reach: a child's GC then never
    # touches (and so never copies) the pages holding the preloaded modules' objects.
    gc.freeze()
    keep_alive = float(config.get("keep_alive_s", 300.0))
    # Sends are best effort: if the orchestrator already exited, a job it handed over is still
    # in the pipe and must run (it was created, like a SageMaker job whose client went away).
    _send(conn, ("ready", os.getpid(), failed, preload_s))
    # Stop holding the orchestrator's stdout/stderr: whoever reads them (Airflow's supervisor,
    # `subprocess.run(capture_output=True)`) would otherwise wait for this worker to exit. Errors
    # of the worker itself (not of jobs, which have their own logs) go to a file from now on.
    _redirect_std(config.get("worker_log"))
    jobs = 0
    try:
        while True:
            idle_deadline = time.monotonic() + keep_alive
            msg = None
            while msg is None:
                remaining = None if math.isinf(keep_alive) else idle_deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                if not conn.poll(remaining):
                    break
                msg = conn.recv()  # EOFError once the orchestrator closed the pipe or died
                if msg[0] == "stop":  # a stop for a job that already ended: nothing to do
                    msg = None
            if msg is None:
                # Idle for keep_alive_s: retire, like a SageMaker warm pool that expires. A "run"
                # racing with this is requeued by the backend (it sees no "started").
                _send(conn, ("retired",))
                break
            if msg[0] == "exit":
                break
            if msg[0] == "run":
                orphaned = _run_job(conn, msg[1], jobs, own_create_time)
                jobs += 1
                if orphaned:
                    break  # the orchestrator is gone: nobody will send more work
    except (EOFError, OSError):
        pass  # the orchestrator closed the pipe or died, and no job is running here: exit
    _flush_std()
    os._exit(0)


def _redirect_std(path: str | None) -> None:
    _flush_std()
    try:
        fd = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except Exception:
        pass


def _run_job(conn: Any, payload: dict[str, Any], index: int, own_create_time: float) -> bool:
    """Fork a child for one job, supervise it, report. Returns True if the orchestrator is gone."""
    name = payload["name"]
    job_dir = payload["job_dir"]
    if os.path.exists(os.path.join(job_dir, FINAL)):
        # Stopped while queued or in the pipe: never start it.
        return not _send(conn, _ended(name, job_dir))
    _precompile(payload["entry_point"])
    _preload(payload)
    if os.path.exists(os.path.join(job_dir, FINAL)):
        return not _send(conn, _ended(name, job_dir))  # stopped while its files were preloaded
    for definition in (payload.get("spec") or {}).get("metric_definitions") or ():
        try:  # compiled here once, the job child finds it in re's cache (it inherits the worker's memory)
            re.compile(definition["Regex"])
        except (re.error, KeyError, TypeError):
            pass
    payload["env_bytes"] = _encoded_environ(payload["env"])  # the job's, ready for the child to switch to
    _flush_std()  # or the child would inherit (and write to its log) our buffered output
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through files
        code = _EXIT_INTERNAL
        try:
            code = _child_main(payload, conn.fileno(), index, own_create_time)
        except BaseException:
            try:
                traceback.print_exc()
            except BaseException:
                pass
        finally:
            os._exit(code)
    connected = _send(conn, ("started", name, pid))
    wait_status, deadline_hit, connected = _supervise(conn, connected, pid, payload, started)
    if not os.path.exists(os.path.join(job_dir, FINAL)):
        # The child died without recording its end (os._exit, a signal, a native crash...).
        elapsed = time.monotonic() - started
        killed_by = os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status) else None
        if deadline_hit or (killed_by == signal.SIGALRM and elapsed >= payload["max_runtime_s"]):
            reason = max_runtime_reason(payload["max_runtime_s"])
        elif killed_by is not None:
            reason = f"AlgorithmError: the job process was killed by {exit_description(wait_status)}"
        else:
            reason = (
                f"AlgorithmError: the job process ended with {exit_description(wait_status)} without "
                "recording a result (os._exit() or a crash in native code?)"
            )
        code = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else -(killed_by or 0)
        record_end(job_dir, JobStatus.FAILED, reason, recorded_by="worker", exit_code=code)
    # Like SageMaker tearing down the container: nothing the job started outlives it.
    kill_group(pid, signal.SIGKILL)
    if connected:
        connected = _send(conn, _ended(name, job_dir))
    return not connected


def _send(conn: Any, msg: tuple) -> bool:
    try:
        conn.send(msg)
        return True
    except (OSError, EOFError):
        return False


def _ended(name: str, job_dir: str) -> tuple:
    """The "ended" message: with the job's recorded end (final.json, immutable once written), so
    the backend describes it without reading the job's files again."""
    final = read_json(os.path.join(job_dir, FINAL))
    final = final if isinstance(final, dict) else None
    return ("ended", name, final.get("status") if final else None, final)


def _supervise(
    conn: Any, connected: bool, pid: int, payload: dict[str, Any], started: float
) -> tuple[int, bool, bool]:
    """Wait for the child, enforcing max runtime and stop escalation.

    Returns ``(wait_status, deadline_hit, still_connected)``. Keeps running after the orchestrator
    disappears (EOF on the pipe) so the job still gets its max runtime and its end recorded.
    """
    from multiprocessing.connection import wait

    job_dir = payload["job_dir"]
    grace = float(payload["stop_grace_s"])
    deadline = started + float(payload["max_runtime_s"])
    deadline_hit = False
    kill_at: float | None = None
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # old kernel: poll waitpid instead
    try:
        while True:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return wait_status, deadline_hit, connected
            now = time.monotonic()
            if not deadline_hit and now >= deadline:
                deadline_hit = True
                # Record the reason before killing, so the kill is not reported as a crash.
                record_end(
                    job_dir, JobStatus.FAILED, max_runtime_reason(payload["max_runtime_s"]), recorded_by="worker"
                )
                kill_group(pid, signal.SIGTERM)
                kill_at = now + grace
            if kill_at is not None and now >= kill_at:
                kill_group(pid, signal.SIGKILL)
                kill_at = math.inf
            timeout = 1.0 if pidfd is not None else 0.05
            if not deadline_hit:
                timeout = min(timeout, max(0.0, deadline - now))
            if kill_at is not None and not math.isinf(kill_at):
                timeout = min(timeout, max(0.0, kill_at - now))
            waitables: list[Any] = [pidfd] if pidfd is not None else []
            if connected:
                waitables.append(conn)
            if not waitables:
                time.sleep(timeout)
                continue
            ready = wait(waitables, timeout)
            if connected and conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    connected = False  # orchestrator gone: finish this job, then exit
                    continue
                if msg[0] == "stop" and msg[1] == payload["name"]:
                    # The backend recorded Stopped and sent SIGTERM; escalate after the grace.
                    kill_group(pid, signal.SIGTERM)
                    kill_at = min(kill_at if kill_at is not None else math.inf, time.monotonic() + float(msg[2]))
    finally:
        if pidfd is not None:
            os.close(pidfd)


# --------------------------------------------------------------------------------------------
# Job child: runs one training script
# --------------------------------------------------------------------------------------------


def _encoded_environ(env: dict[str, str]) -> dict[bytes, bytes] | None:
    """``env`` as ``os.environ`` stores it (``os.environ._data``), or ``None`` where it is not that."""
    data = getattr(os.environ, "_data", None)
    if not isinstance(data, dict) or not all(isinstance(k, bytes) for k in data):
        return None
    return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}  # os.environ's own encoding on POSIX


def _set_environ(env: dict[str, str], encoded: dict[bytes, bytes] | None = None) -> None:
    """Make ``env`` the whole process environment.

    ``os.environ.clear()`` pops one variable at a time through the generic ``MutableMapping``
    code (each pop lists the remaining keys); in a job child that Python-level work also copies
    pages of the worker. With ``encoded`` (:func:`_encoded_environ`, built by the worker before
    the fork) only the variables that differ go through ``unsetenv``/``putenv``.
    """
    data = getattr(os.environ, "_data", None)
    if encoded is None or not isinstance(data, dict):
        os.environ.clear()
        os.environ.update(env)
        return
    for key in data:
        if key not in encoded:
            os.unsetenv(key)
    for key, value in encoded.items():
        if data.get(key) != value:
            os.putenv(key, value)
    data.clear()
    data.update(encoded)


#: psutil.boot_time(), read once by the worker (see _create_time)
_BOOT_TIME: float | None = None


def _create_time(pid: int) -> float:
    """``psutil.Process(pid).create_time()``, the way psutil computes it on Linux (the start time in
    clock ticks after boot, plus the boot time) with the boot time the worker read once: constructing
    a ``psutil.Process`` in every job child runs through psutil's code and copies its pages."""
    if _BOOT_TIME is not None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
            return ticks / os.sysconf("SC_CLK_TCK") + _BOOT_TIME
        except (OSError, IndexError, ValueError):
            pass
    import psutil

    return psutil.Process(pid).create_time()


def _child_main(payload: dict[str, Any], conn_fd: int, index: int, worker_create_time: float) -> int:
    """Run one job in this freshly forked process; returns the process exit code."""
    import faulthandler
    import io

    # Own session and process group: stop/kill reach everything the script spawns, and the job
    # survives the orchestrator's process group being killed (as a SageMaker job survives Airflow).
    os.setsid()
    try:
        os.close(conn_fd)  # or the backend would not see EOF when the worker dies
    except OSError:
        pass
    for sig in (signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    job_dir = payload["job_dir"]
    log_path = os.path.join(job_dir, LOG)
    # dup2 onto fds 1 and 2 so output from C code and subprocesses lands in the log too.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    # Fresh line-buffered streams: prints reach the log even if the script later dies abruptly.
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(  # type: ignore[misc]
        open(1, "wb", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(  # type: ignore[misc]
        open(2, "wb", closefd=False), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.stdin = sys.__stdin__ = open(os.devnull, encoding="utf-8")  # type: ignore[misc]
    faulthandler.enable(file=sys.stderr, all_threads=True)  # Python stack on SIGSEGV & co.
    np = sys.modules.get("numpy")
    if np is not None:
        # Every fork inherits the zygote's numpy global RNG state; reseed from OS entropy as a
        # fresh interpreter would. (The stdlib ``random`` reseeds itself after fork.)
        np.random.seed()

    start = time.time()
    me = os.getpid()
    state = {
        "status": JobStatus.IN_PROGRESS,
        "pid": me,
        "create_time": _create_time(me),
        "start_time": start,
        "worker_pid": os.getppid(),
        "worker_create_time": worker_create_time,
        "worker_job_index": index,
        "warm_pool_status": payload["warm_pool_status"],
        "max_runtime_s": payload["max_runtime_s"],
        "stop_grace_s": payload["stop_grace_s"],
    }
    write_json(os.path.join(job_dir, STATE), state)
    # Checked after state.json exists: a stop() writes final.json first and then looks for
    # state.json, so one of the two always sees the other.
    if os.path.exists(os.path.join(job_dir, FINAL)):
        return _EXIT_OK
    # Safety net if nobody supervises us any more: die after the runtime plus the stop grace (the
    # worker normally ends the job at max_runtime_s with SIGTERM first).
    signal.alarm(int(math.ceil(float(payload["max_runtime_s"]) + float(payload["stop_grace_s"]))) + 1)

    spec = payload.get("spec") or read_json(os.path.join(job_dir, SPEC)) or {}
    # the backend's store (its connection's credentials) for remote channels and the model upload
    store = ArtifactStore.from_options(payload.pop("store", None))
    try:
        _prepare_channels(job_dir, payload["channels"], store)
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        record_end(
            job_dir, JobStatus.FAILED, f"ClientError: could not prepare the input channels: {exc}",
            recorded_by="job", spec=spec, state=state, exit_code=_EXIT_FAILED,
        )
        return _EXIT_FAILED

    worker_env = dict(os.environ)  # the worker's, for the model upload after the script
    _set_environ(payload["env"], payload.get("env_bytes"))
    os.chdir(job_dir)
    entry_point = payload["entry_point"]
    sys.argv = list(payload["argv"])
    sys.path.insert(0, os.path.dirname(entry_point))  # as `python train.py` would

    exit_code, reason = _run_script(entry_point)
    _flush_std()
    _flush_c_stdio()  # exit() would flush C-level printf buffers; os._exit() does not

    status = JobStatus.COMPLETED if exit_code == 0 else JobStatus.FAILED
    model_dir = os.path.join(job_dir, "model")
    artifacts = payload["output_uri"] or model_dir
    if status == JobStatus.COMPLETED and payload["output_uri"]:
        try:
            _set_environ(worker_env)
            store.upload_dir(model_dir, payload["output_uri"])
        except Exception as exc:
            traceback.print_exc()
            _flush_std()
            status, reason = JobStatus.FAILED, f"ClientError: could not upload the model to {payload['output_uri']}: {exc}"
    if status == JobStatus.FAILED:
        failure_file = os.path.join(job_dir, "output", "failure")
        try:
            with open(failure_file, encoding="utf-8", errors="replace") as f:
                written = f.read().strip()
            if written:
                reason = written[:1024]  # SageMaker's contract: the script's own failure reason
        except OSError:
            pass
    record_end(
        job_dir, status, reason, recorded_by="job", spec=spec, state=state,
        model_artifacts=artifacts, exit_code=exit_code,
    )
    return _EXIT_OK if status == JobStatus.COMPLETED else _EXIT_FAILED


# Entry points compiled by this worker: path -> ((size, mtime_ns, inode), code object). Compiling a
# 1,000-line script takes 25-50 ms; done here once, every forked job child inherits the result
# instead of recompiling the same file (runpy.run_path never writes or reads a .pyc).
_CODE_CACHE: dict[str, tuple[tuple[int, int, int], Any]] = {}


def _file_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _precompile(entry_point: str) -> None:
    """Compile a plain ``.py`` entry point in the worker, unless it is cached and unchanged."""
    key = _file_key(entry_point)
    if key is None or not entry_point.endswith(".py") or not os.path.isfile(entry_point):
        return
    cached = _CODE_CACHE.get(entry_point)
    if cached is not None and cached[0] == key:
        return
    _CODE_CACHE.pop(entry_point, None)
    try:
        import io

        with io.open_code(entry_point) as f:
            source = f.read()
        _CODE_CACHE[entry_point] = (key, compile(source, entry_point, "exec", dont_inherit=True))
    except Exception:  # a syntax error: the job child's run_path reports it in the job's log
        pass


# The optional hook a training script may define (docs/training-script.md): the worker imports the
# script once per version (as a module, not as __main__) and calls it before forking each job.
PRELOAD_HOOK = "cvtune_preload"
# entry point -> ((size, mtime_ns, inode), hook or None)
_HOOKS: dict[str, tuple[tuple[int, int, int], Any]] = {}


def _defines_hook(code: Any) -> bool:
    """Whether the compiled script defines ``PRELOAD_HOOK`` at its top level. Only such a script
    is imported by the worker: defining the hook declares that importing the file trains nothing
    (its job runs under ``if __name__ == "__main__":``); any other script is only ever run as
    ``__main__`` in a job child."""
    import types

    return any(isinstance(c, types.CodeType) and c.co_name == PRELOAD_HOOK for c in code.co_consts)


def _preload_hook(entry_point: str) -> Any | None:
    """The script's ``cvtune_preload`` from a module the worker imported once per file version."""
    key = _file_key(entry_point)
    cached = _HOOKS.get(entry_point)
    if cached is not None and cached[0] == key:
        return cached[1]
    hook = None
    code = _compiled(entry_point)
    if key is not None and code is not None and _defines_hook(code):
        import types

        module = types.ModuleType("__cvtune_preload__")
        module.__file__ = entry_point
        folder = os.path.dirname(entry_point)
        sys.path.insert(0, folder)  # its own imports resolve as they do in a job (`python train.py`)
        sys.modules[module.__name__] = module  # dataclasses, pickle and typing look their module up
        try:
            exec(code, module.__dict__)
            hook = getattr(module, PRELOAD_HOOK, None)
            hook = hook if callable(hook) else None
        except BaseException:  # a script that cannot be imported still runs as a job, which reports it
            print(f"cvtune worker: importing {entry_point} for {PRELOAD_HOOK} failed; its jobs run without it",
                  file=sys.stderr)
            traceback.print_exc()
            _flush_std()
        finally:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass
    _HOOKS[entry_point] = (key, hook) if key is not None else ((0, 0, 0), None)
    return hook


def _preload(payload: dict[str, Any]) -> None:
    """Let the script prepare in the worker what its job child then inherits (parsed channel files):
    ``cvtune_preload({channel: the job's channel directory})``. An error here is the worker's
    (logged to its log); the job still runs and reads its channels itself."""
    hook = _preload_hook(payload["entry_point"])  # cached per file version: no listing for scripts without one
    if hook is None:
        return
    data = os.path.join(payload["job_dir"], "input", "data")
    try:  # the local channels, linked when the backend laid the job out (remote ones come later)
        directories = {ch: os.path.join(data, ch) for ch in sorted(os.listdir(data))}
    except OSError:
        return
    if not directories:
        return
    try:
        hook(directories)
    except BaseException:
        print(f"cvtune worker: {PRELOAD_HOOK} of {payload['entry_point']} failed", file=sys.stderr)
        traceback.print_exc()
    _flush_std()


def _compiled(entry_point: str) -> Any | None:
    """The worker's code object for ``entry_point`` if the file is still the one compiled."""
    cached = _CODE_CACHE.get(entry_point)
    if cached is None or cached[0] != _file_key(entry_point):
        return None
    return cached[1]


def _run_script(entry_point: str) -> tuple[int, str | None]:
    """Run the script as ``__main__``; return ``(exit_code, failure_reason_or_None)``."""
    import atexit
    import runpy
    import threading

    summary: str | None = None
    try:
        compiled = _compiled(entry_point)
        run_code = getattr(runpy, "_run_module_code", None)
        if compiled is not None and run_code is not None:
            # What run_path does for a .py file after compiling it, minus the compiling.
            run_code(compiled, None, "__main__", pkg_name="", script_name=entry_point)
        else:
            runpy.run_path(entry_point, run_name="__main__")
        code = 0
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:  # sys.exit("message"): Python prints it and exits with 1
            print(exc.code, file=sys.stderr)
            code, summary = 1, str(exc.code)
    except BaseException as exc:
        _print_user_traceback(exc, entry_point)
        code, summary = 1, f"{type(exc).__name__}: {exc}"
    # What interpreter shutdown does before the process exits (we leave with os._exit): run the
    # threading atexit callbacks and join non-daemon threads (joblib/loky and concurrent.futures
    # executors need the callbacks, or their threads never end), then the atexit handlers.
    try:
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
        else:  # pragma: no cover - every CPython we support has it
            for thread in threading.enumerate():
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
    except BaseException:
        traceback.print_exc()
    try:
        atexit._run_exitfuncs()
    except BaseException:
        pass
    if code == 0:
        return 0, None
    if summary is None:
        return code, f"AlgorithmError: the training script exited with code {code}"
    return code, f"AlgorithmError: {summary} (exit code {code})"


def _print_user_traceback(exc: BaseException, entry_point: str) -> None:
    """Print the traceback starting at the user's script (dropping our runpy frames)."""
    tb = exc.__traceback__
    entry = os.path.realpath(entry_point)
    walker = tb
    while walker is not None:
        if os.path.realpath(walker.tb_frame.f_code.co_filename) == entry:
            tb = walker
            break
        walker = walker.tb_next
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()


def _prepare_channels(job_dir: str, channels: dict[str, str], store: ArtifactStore) -> None:
    """Fill ``input/data/<channel>/``: symlinks to local files, downloads for remote URIs (through ``store``).

    The backend links local channels itself when it lays the job out (``local_channels``), so
    a job child normally only downloads."""
    for channel, uri in channels.items():
        dest = os.path.join(job_dir, "input", "data", channel)
        os.makedirs(dest, exist_ok=True)
        if store.is_local(uri):
            link_channel(dest, store.local_path(uri))
        else:
            store.download_dir(uri, dest)


def link_channel(dest: str, source: str) -> None:
    """Symlink each entry of the local ``source`` (a directory, or one file) into ``dest``."""
    # Link each entry rather than the directory itself, so files a script writes into its
    # channel do not land in the shared source directory.
    for entry in channel_entries(source):
        os.symlink(entry, os.path.join(dest, os.path.basename(entry)))


def channel_entries(source: str) -> list[str]:
    """What a local channel's directory links to: each entry of ``source``, or the file itself."""
    src = os.path.abspath(source)
    return [os.path.join(src, e) for e in sorted(os.listdir(src))] if os.path.isdir(src) else [src]
