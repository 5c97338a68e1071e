"""Script-mode execution, as SageMaker's framework containers (the sagemaker-training toolkit) do it.

Under a temporary ``/opt/ml`` root (:class:`JobRoot`):

1. the platform downloads each channel in File mode to ``input/data/<channel>`` and writes
   ``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``;
2. the code comes from ``sagemaker_submit_directory``: an ``s3://`` ``sourcedir.tar.gz`` the
   container downloads itself, or a path under ``/opt/ml`` — the ``code`` input channel the
   SageMaker SDK uses under network isolation — unpacked to ``code/``. Under
   ``EnableNetworkIsolation`` "containers can't make any outbound network calls, even to other AWS
   services such as Amazon S3" (CreateTrainingJob, EnableNetworkIsolation), so an ``s3://``
   submit directory fails the job;
3. hyperparameters are JSON-decoded and passed as ``--name value`` (``sagemaker_*`` left out) and
   as ``SM_HPS``;
4. the environment is the ``SM_*`` variables plus the request's ``Environment`` and nothing else
   (a few process basics: ``PATH``, ``HOME``, ``LANG``) — no host credentials;
5. the entry point runs with its output captured to the job's log;
6. a non-zero exit or a ``output/failure`` file fails the job with ``AlgorithmError:`` and the
   failure file's text ("the reason is available in FailureReason", Build your own container:
   "write the failure description to /opt/ml/output/failure");
7. ``model/`` is packed to ``model.tar.gz``, ``output/data`` to ``output.tar.gz``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cvtune.emulator import s3io
from cvtune.emulator.launcher import Launcher

CURRENT_HOST = "algo-1"
SUBMIT_DIR = "sagemaker_submit_directory"
PROGRAM = "sagemaker_program"
OPT_ML = "/opt/ml"
# The warm pool's persistent cache: "If you need to run several training jobs using similar
# configurations, you can further reduce latency and billable time by using a dedicated persistent
# cache directory to store and re-use your information in a different job." (developer guide,
# SageMaker AI Managed Warm Pools). Its path, also in SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY:
WARM_POOL_CACHE = f"{OPT_ML}/sagemaker/warmpoolcache"
WARM_POOL_CACHE_ENV = "SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"


class AlgorithmError(Exception):
    """The job's own failure: becomes ``FailureReason: AlgorithmError: …``."""


class ClientError(Exception):
    """A failure caused by the request's inputs: ``FailureReason: ClientError: …``."""


def decode(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class JobRoot:
    """A job's private ``/opt/ml``."""

    path: str

    @classmethod
    def make(cls, name: str) -> JobRoot:
        return cls(tempfile.mkdtemp(prefix=f"sm-emu-{name[:40]}-"))

    def __call__(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def map(self, container_path: str) -> str:
        """A container path under ``/opt/ml`` as a path under this root."""
        if container_path == OPT_ML or container_path.startswith(OPT_ML + "/"):
            return self.path + container_path[len(OPT_ML):]
        raise ClientError(f"{container_path} is not under {OPT_ML}")

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Inputs:
    """The channel data a job received: ``File`` channels are downloaded before the script starts
    (all their bytes), ``FastFile`` ones are fetched as the script reads them: ``streamed`` holds
    each file's (path, bytes, the access time it was given), so :meth:`bytes_downloaded` can tell
    afterwards which ones the script read."""

    file_bytes: int = 0
    streamed: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def streamed_total(self) -> int:
        return sum(size for _, size, _ in self.streamed)

    def streamed_read(self) -> int:
        """Bytes of the FastFile files the script read (all of them where access times are not kept)."""
        if not atime_tracks_reads():
            return self.streamed_total
        read = 0
        for path, size, given in self.streamed:
            try:
                if os.stat(path).st_atime > given:
                    read += size
            except OSError:  # the script deleted it: it was there to read
                read += size
        return read

    def bytes_downloaded(self) -> int:
        return self.file_bytes + self.streamed_read()


@lru_cache(maxsize=1)
def atime_tracks_reads() -> bool:
    """Whether this host's temporary file system updates access times on read (``relatime`` does
    once the access time is older than the modification time; ``noatime`` never does)."""
    fd, path = tempfile.mkstemp(prefix="sm-emu-atime-")
    try:
        os.write(fd, b"x")
        os.close(fd)
        st = os.stat(path)
        os.utime(path, (st.st_mtime - 60, st.st_mtime))
        with open(path, "rb") as f:
            f.read()
        return os.stat(path).st_atime > st.st_mtime - 60
    finally:
        os.remove(path)


def input_mode(request: dict[str, Any], channel: dict[str, Any]) -> str:
    return channel.get("InputMode") or request["AlgorithmSpecification"].get("TrainingInputMode") or "File"


def download_channels(
    root: JobRoot, request: dict[str, Any], s3: Any, cache: s3io.ObjectCache | None = None
) -> tuple[dict[str, str], Inputs]:
    """Every channel's objects under ``input/data/<channel>``: name → local dir, and what was received.

    ``File``: "SageMaker downloads the training data from S3 to the provisioned ML storage volume";
    ``FastFile``: "SageMaker streams data directly from S3 to the container with no code changes,
    and provides file system access to the data" (AlgorithmSpecification, TrainingInputMode). The
    emulator places the files either way; a FastFile file counts as downloaded once the script
    reads it (its access time moves past the one given here).
    """
    def fetch(channel: dict[str, Any]) -> tuple[str, str, str, list[tuple[str, int]]]:
        name = channel["ChannelName"]
        source = channel["DataSource"].get("S3DataSource")
        if source is None:
            raise ClientError(f"channel {name}: only S3DataSource is emulated")
        mode = input_mode(request, channel)
        if mode not in ("File", "FastFile"):
            raise ClientError(f"channel {name}: {mode} input mode is not emulated (File and FastFile are)")
        target = root("input", "data", name)
        os.makedirs(target, exist_ok=True)
        files = s3io.download_prefix(s3, source["S3Uri"], target, cache)
        if not files:
            raise ClientError(f"Data download failed:No S3 objects found under S3 URL \"{source['S3Uri']}\" given in input data source.")
        return name, target, mode, files

    channels = request.get("InputDataConfig") or []
    # the channels side by side: each is a listing and copies, waiting on S3, not on this process
    with ThreadPoolExecutor(max(1, len(channels))) as pool:
        fetched = list(pool.map(fetch, channels))  # the first channel's error first, as one by one
    dirs: dict[str, str] = {}
    inputs = Inputs()
    for name, target, mode, files in fetched:
        if mode == "File":
            inputs.file_bytes += sum(size for _, size in files)
        else:
            for path, size in files:
                st = os.stat(path)
                os.utime(path, (st.st_mtime - 60, st.st_mtime))
                inputs.streamed.append((path, size, os.stat(path).st_atime))
        dirs[name] = target
    return dirs, inputs


def install_code(root: JobRoot, hyperparameters: dict[str, Any], s3: Any, isolated: bool) -> tuple[str, str]:
    """Unpack the submit directory to ``code/``; (code dir, entry point path)."""
    program, submit = hyperparameters.get(PROGRAM), hyperparameters.get(SUBMIT_DIR)
    if not program or not submit:
        raise ClientError(f"not a script-mode job: hyperparameters {PROGRAM} and {SUBMIT_DIR} are required")
    if str(submit).startswith("s3://"):
        if isolated:
            raise AlgorithmError(
                f"ExecuteUserScriptError: could not download {submit}: the container has no network access "
                "(EnableNetworkIsolation); ship the code as an input channel"
            )
        data = s3io.read(s3, submit)
    else:
        local = root.map(str(submit))
        if not os.path.isfile(local):
            raise AlgorithmError(f"ExecuteUserScriptError: {submit} does not exist in the container")
        with open(local, "rb") as f:
            data = f.read()
    code = root("code")
    s3io.extract(data, code)
    entry = os.path.join(code, program)
    if not os.path.isfile(entry):
        raise AlgorithmError(f"ExecuteUserScriptError: entry point {program} is not in {submit}")
    return code, entry


def environment(
    root: JobRoot, request: dict[str, Any], hyperparameters: dict[str, Any], channels: dict[str, str], code: str, entry: str
) -> dict[str, str]:
    user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    resources = {"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST], "network_interface_name": "eth0"}
    data_config = {c["ChannelName"]: {"TrainingInputMode": input_mode(request, c), "S3DistributionType": "FullyReplicated",
                                      "RecordWrapperType": "None"} for c in request.get("InputDataConfig") or []}
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
        "HOME": root.path,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SM_HPS": json.dumps(user),
        "SM_HOSTS": json.dumps([CURRENT_HOST]),
        "SM_CURRENT_HOST": CURRENT_HOST,
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODEL_DIR": root("model"),
        "SM_OUTPUT_DIR": root("output"),
        "SM_OUTPUT_DATA_DIR": root("output", "data"),
        "SM_INPUT_DIR": root("input"),
        "SM_INPUT_CONFIG_DIR": root("input", "config"),
        "SM_INPUT_DATA_CONFIG": json.dumps(data_config),
        "SM_RESOURCE_CONFIG": json.dumps(resources),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_USER_ENTRY_POINT": os.path.basename(entry),
        "SM_MODULE_DIR": code,
        "SM_USER_ARGS": json.dumps([a for k, v in user.items() for a in (f"--{k}", _arg(v))]),
        "SM_TRAINING_ENV": json.dumps({"job_name": request["TrainingJobName"], "hyperparameters": user,
                                       "channel_input_dirs": channels, "model_dir": root("model")}),
    }
    for key, value in user.items():
        env["SM_HP_" + key.upper()] = _arg(value)
    for name, path in channels.items():
        env["SM_CHANNEL_" + name.upper()] = path
    cache = root.map(WARM_POOL_CACHE)
    if os.path.isdir(cache):
        env[WARM_POOL_CACHE_ENV] = cache
    env.update(request.get("Environment") or {})
    return env


def prepare(
    root: JobRoot, request: dict[str, Any], s3: Any, *, cache: s3io.ObjectCache | None = None,
    warm_pool_cache: str | None = None,
) -> tuple[list[str], dict[str, str], str, Inputs]:
    """Download, unpack and configure; (argv, env, cwd) of the entry point and the inputs received.

    ``warm_pool_cache``: the host directory of the pool's persistent cache (it moves with the pool
    from job to job), linked at ``/opt/ml/sagemaker/warmpoolcache``.
    """
    for sub in (("model",), ("output", "data"), ("input", "config")):
        os.makedirs(root(*sub), exist_ok=True)
    if warm_pool_cache:
        link = root.map(WARM_POOL_CACHE)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(warm_pool_cache, link)
    raw = request.get("HyperParameters") or {}
    hyperparameters = {k: decode(v) for k, v in raw.items()}
    with open(root("input", "config", "hyperparameters.json"), "w") as f:
        json.dump(raw, f)
    with open(root("input", "config", "resourceconfig.json"), "w") as f:
        json.dump({"current_host": CURRENT_HOST, "hosts": [CURRENT_HOST]}, f)
    with open(root("input", "config", "inputdataconfig.json"), "w") as f:
        json.dump({c["ChannelName"]: {"TrainingInputMode": input_mode(request, c)} for c in request.get("InputDataConfig") or []}, f)
    isolated = bool(request.get("EnableNetworkIsolation"))
    if str(hyperparameters.get(SUBMIT_DIR, "")).startswith("s3://"):
        # the container fetches its code while the platform fetches the channels (a code channel,
        # under network isolation, has to be there first)
        with ThreadPoolExecutor(1) as pool:
            code_fetch = pool.submit(install_code, root, hyperparameters, s3, isolated)
            channels, inputs = download_channels(root, request, s3, cache)
            code, entry = code_fetch.result()
    else:
        channels, inputs = download_channels(root, request, s3, cache)
        code, entry = install_code(root, hyperparameters, s3, isolated)
    user = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    argv = [sys.executable, entry] + [a for k, v in user.items() for a in (f"--{k}", _arg(v))]
    return argv, environment(root, request, hyperparameters, channels, code, entry), code, inputs


class Process:
    """The running entry point: its own process group, output to ``log_path``; stoppable."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, log_path: str, launcher: Launcher | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc: Any
        if launcher is not None:  # a fork of a running interpreter (see cvtune.emulator.launcher)
            self.proc = launcher.spawn(argv, env, cwd, log_path)
        else:
            self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self._lock = threading.Lock()
        # a thread blocked in waitpid marks the exit the moment it happens: polling every 50 ms
        # would add 25 ms to every job on average (5 s emulated at a 1/200 time scale)
        self._exited = threading.Event()
        threading.Thread(target=self._reap, name=f"reap-{self.proc.pid}", daemon=True).start()

    def _reap(self) -> None:
        self.proc.wait()
        self._exited.set()

    def wait(self, timeout: float | None, stop: threading.Event) -> tuple[int | None, str | None]:
        """(exit code, why it was cut short: "stopped" | "max_runtime" | None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic()))
            if self._exited.wait(left):
                self._log.close()
                return self.proc.returncode, None
            if stop.is_set():
                return self.kill(), "stopped"
            if deadline is not None and time.monotonic() >= deadline:
                return self.kill(), "max_runtime"

    def kill(self, grace_s: float = 2.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s`` (SageMaker waits 120 s; scaled by the caller)."""
        with self._lock:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(grace_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
            self._log.close()
            return self.proc.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


def failure_reason(root: JobRoot, exit_code: int | None, log_tail: str) -> str | None:
    """``AlgorithmError: …`` from the failure file or the exit code; None if the script succeeded."""
    failure = root("output", "failure")
    text = ""
    if os.path.isfile(failure):
        with open(failure, encoding="utf-8", errors="replace") as f:
            text = f.read().strip()
    if exit_code == 0 and not text:
        return None
    if text:
        return f"AlgorithmError: {text[:1000]}"
    return f"AlgorithmError: ExecuteUserScriptError: Command \"{root('code')}\" exited with code {exit_code}. {log_tail[-800:]}"
