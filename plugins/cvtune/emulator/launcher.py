"""A fork server for training scripts: one interpreter started once, a fork of it per job.

At a scaled clock every 10 ms of real time is a second of emulated time at 1/100, so starting a
fresh Python interpreter for each job (30–55 ms on this machine) would add seconds to every job's
``Training`` phase that a real instance does not spend. With ``Timing.scaled_script`` (a
benchmark's sleep-based script, whose real seconds are billed as emulated ones) the emulator
starts scripts through this launcher instead: a child of one pre-started interpreter that has
imported only the standard library, with the job's argv, environment (replaced, as for a new
process), working directory, own session and output file — what
:class:`cvtune.emulator.runner.Process` gives a script otherwise, minus the interpreter start.

Protocol on the launcher's pipes, one JSON object per line: ``{"id", "argv", "env", "cwd", "log"}``
in; ``{"id", "pid"}`` once forked and ``{"id", "status"}`` when that child has ended (a negative
status: killed by that signal, as ``Popen.returncode``). Each child is waited for by a thread of
its own that knows its id: a pid can be reused the moment its child is reaped, an id cannot.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from typing import Any

_SERVER = r'''
import json, os, runpy, signal, sys, threading, traceback
lock = threading.Lock()
out = os.fdopen(os.dup(1), "w", buffering=1)

def say(obj):
    with lock:
        out.write(json.dumps(obj) + "\n")

def reap(job_id, pid):
    _, status = os.waitpid(pid, 0)
    say({"id": job_id, "status": -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)})

for line in sys.stdin:
    job = json.loads(line)
    with lock:  # not while another thread writes: the child gets no half-held lock
        pid = os.fork()
    if pid:
        say({"id": job["id"], "pid": pid})  # before its status: the waiter starts after
        threading.Thread(target=reap, args=(job["id"], pid), daemon=True).start()
        continue
    code = 1
    try:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.chdir(job["cwd"])
        os.environ.clear()
        os.environ.update(job["env"])
        entry = job["argv"][1]
        sys.argv = job["argv"][1:]
        sys.path[0] = os.path.dirname(entry)
        try:
            runpy.run_path(entry, run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
'''


class Forked:
    """A script the launcher forked: the part of ``subprocess.Popen`` the runner uses."""

    def __init__(self) -> None:
        self.pid = 0
        self.returncode: int | None = None
        self._started = threading.Event()
        self._ended = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired("forked script", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class Launcher:
    """The fork server of one emulator (started on first use, stopped with the emulator)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._children: dict[int, Forked] = {}
        self._ids = itertools.count()

    def _server(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1)
            threading.Thread(target=self._read, args=(self._proc,), name="launcher-reader", daemon=True).start()
        return self._proc

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            msg: dict[str, Any] = json.loads(line)
            with self._lock:
                child = self._children[msg["id"]]
                if "status" in msg:
                    del self._children[msg["id"]]
            if "pid" in msg:
                child.pid = msg["pid"]
                child._started.set()
            else:
                child.returncode = msg["status"]
                child._ended.set()

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str, timeout: float = 60.0) -> Forked:
        child = Forked()
        with self._lock:
            job_id = next(self._ids)
            self._children[job_id] = child  # before the request: its answers may come at once
            proc = self._server()
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"id": job_id, "argv": argv, "env": env, "cwd": cwd, "log": log_path}) + "\n")
            proc.stdin.flush()
        if not child._started.wait(timeout):
            raise RuntimeError("the script launcher did not answer")
        return child

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
