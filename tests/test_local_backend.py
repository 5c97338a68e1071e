"""The local backend with real processes: tiny throwaway training scripts written into tmp_path.

Most tests use ``preload=()`` so a worker starts in ~50 ms; the warm-pool behaviour itself is
checked with a small preload module of our own (its import has a side effect we can count).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from cvtune.backends import get_backend
from cvtune.backends.base import JobSpec
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError
from cvtune.local.backend import DEFAULT_PRELOAD, LocalBackend
from cvtune.states import JobStatus, WarmPoolStatus

pytestmark = pytest.mark.timeout(60)

WAIT_S = 30.0


def script(tmp_path, body: str, name: str = "train.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def spec(name: str, entry_point: str, **kwargs) -> JobSpec:
    kwargs.setdefault("hyperparameters", {})
    kwargs.setdefault("channels", {})
    return JobSpec(name=name, entry_point=entry_point, **kwargs)


def wait_done(backend: LocalBackend, *names: str, timeout: float = WAIT_S) -> dict:
    """Wait until all ``names`` ended; return their descriptions by name."""
    deadline = time.monotonic() + timeout
    done: dict = {}
    while len(done) < len(names):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; ended so far: {sorted(done)}"
        for d in backend.wait([n for n in names if n not in done], remaining):
            done[d.name] = d
    return done


def run(backend: LocalBackend, job: JobSpec):
    backend.submit(job)
    return wait_done(backend, job.name)[job.name]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --------------------------------------------------------------------------- the contract


def test_job_dir_layout_env_argv_and_hyperparameters(make_backend, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("CVT_INHERITED", "from-parent")
    monkeypatch.setenv("OMP_NUM_THREADS", "99")  # the backend's cpus_per_job wins
    entry = script(
        tmp_path,
        """
        import json, os, sys
        keys = [k for k in os.environ if k.startswith(("SM_", "TRAINING_", "CVT_", "OMP_"))]
        out = {"argv": sys.argv, "cwd": os.getcwd(), "env": {k: os.environ[k] for k in keys},
               "path0": sys.path[0], "files": os.listdir(os.environ["SM_CHANNEL_TRAIN"]),
               "csv": open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv")).read()}
        with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "seen.json"), "w") as f:
            json.dump(out, f)
        """,
    )
    backend = make_backend(cpus_per_job=2)
    hps = {"eta": 0.1, "max_depth": 3, "verbose": True, "objective": "binary:logistic"}
    d = run(backend, spec("layout-1", entry, hyperparameters=hps, channels={"train": str(data)}, tags={"k": "v"}))
    assert d.status == JobStatus.COMPLETED, d.failure_reason

    job_dir = tmp_path / "jobs" / "layout-1"
    for sub in ("input/config", "input/data/train", "model", "output/data"):
        assert (job_dir / sub).is_dir(), sub
    config = job_dir / "input" / "config"
    strings = {"eta": "0.1", "max_depth": "3", "verbose": "true", "objective": "binary:logistic"}
    assert json.loads((config / "hyperparameters.json").read_text()) == strings
    resource = json.loads((config / "resourceconfig.json").read_text())
    assert resource["current_host"] == "algo-1" and resource["hosts"] == ["algo-1"]
    assert JobSpec.from_dict(json.loads((job_dir / "spec.json").read_text())).hyperparameters == hps
    assert (job_dir / "input" / "data" / "train" / "train.csv").is_symlink()

    seen = json.loads((job_dir / "output" / "data" / "seen.json").read_text())
    assert seen["argv"] == [entry, "--eta", "0.1", "--max_depth", "3", "--verbose", "true",
                            "--objective", "binary:logistic"]
    assert seen["cwd"] == str(job_dir)
    assert seen["path0"] == str(tmp_path)
    assert seen["files"] == ["train.csv"] and seen["csv"] == "a,b\n1,2\n"
    env = seen["env"]
    assert json.loads(env["SM_HPS"]) == hps
    assert json.loads(env["SM_CHANNELS"]) == ["train"]
    assert env["SM_CHANNEL_TRAIN"] == str(job_dir / "input" / "data" / "train")
    assert env["SM_MODEL_DIR"] == str(job_dir / "model")
    assert env["SM_OUTPUT_DATA_DIR"] == str(job_dir / "output" / "data")
    assert env["SM_OUTPUT_DIR"] == str(job_dir / "output")
    assert env["SM_INPUT_DIR"] == str(job_dir / "input")
    assert env["SM_INPUT_CONFIG_DIR"] == str(config)
    assert env["SM_NUM_CPUS"] == "2" and env["SM_NUM_GPUS"] == "0" and env["OMP_NUM_THREADS"] == "2"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and env["SM_CURRENT_HOST"] == "algo-1"
    assert env["SM_USER_ENTRY_POINT"] == "train.py"
    assert json.loads(env["SM_TRAINING_ENV"])["job_name"] == "layout-1"
    assert env["TRAINING_JOB_NAME"] == "layout-1"
    assert "CVT_INHERITED" not in env  # only an allowlist of the parent's environment reaches a job

    assert d.log_uri == str(job_dir / "log.txt")
    assert d.tags == {"k": "v"}
    assert d.start_time <= d.end_time and d.billable_seconds == pytest.approx(d.end_time - d.start_time, abs=0.01)


def test_metrics_last_match_wins_model_artifacts_and_output_upload(make_backend, tmp_path):
    entry = script(
        tmp_path,
        """
        import os
        for auc in (0.5, 0.6, 0.75):
            print(f"validation:auc={auc};")
        print("validation:logloss=0.3;")
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
            f.write("{}")
        """,
    )
    metrics = [
        {"Name": "validation:auc", "Regex": r"validation:auc=([0-9.]+);"},
        {"Name": "validation:logloss", "Regex": r"validation:logloss=([0-9.]+);"},
        {"Name": "absent", "Regex": r"absent=([0-9.]+);"},
    ]
    backend = make_backend()
    d = run(backend, spec("metrics-1", entry, metric_definitions=metrics))
    assert d.status == JobStatus.COMPLETED
    assert d.final_metrics == {"validation:auc": 0.75, "validation:logloss": 0.3}
    assert d.model_artifacts == str(tmp_path / "jobs" / "metrics-1" / "model")
    assert os.path.exists(os.path.join(d.model_artifacts, "model.json"))

    out = tmp_path / "artifacts" / "metrics-2"
    d2 = run(backend, spec("metrics-2", entry, metric_definitions=metrics, output_uri=str(out)))
    assert d2.status == JobStatus.COMPLETED and d2.model_artifacts == str(out)
    assert (out / "model.json").read_text() == "{}"


def test_c_level_and_subprocess_output_is_captured(make_backend, tmp_path):
    entry = script(
        tmp_path,
        """
        import ctypes, os, subprocess
        print("from-print")
        os.write(1, b"from-fd1\\n")
        os.write(2, b"from-fd2\\n")
        subprocess.run(["echo", "from-subprocess"], check=True)
        ctypes.CDLL(None).printf(b"from-libc-printf\\n")
        """,
    )
    backend = make_backend()
    assert run(backend, spec("output-1", entry)).status == JobStatus.COMPLETED
    log = backend.read_log("output-1")
    for line in ("from-print", "from-fd1", "from-fd2", "from-subprocess", "from-libc-printf"):
        assert line in log
    assert backend.read_log("output-1", tail=1).strip() in log.splitlines()


def test_job_ends_like_an_interpreter_exit(make_backend, tmp_path):
    # Executor threads are only released by threading's exit callbacks, atexit handlers run:
    # a job must neither hang nor skip them, exactly as `python train.py` would.
    entry = script(
        tmp_path,
        """
        import atexit, time
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(2)  # never shut down explicitly
        future = pool.submit(time.sleep, 0.1)
        atexit.register(lambda: print("atexit ran"))
        """,
    )
    backend = make_backend()
    d = run(backend, spec("exit-1", entry, max_runtime_s=10))
    assert d.status == JobStatus.COMPLETED and d.billable_seconds < 5
    assert "atexit ran" in backend.read_log("exit-1")


# --------------------------------------------------------------------------- failures


def test_exception_fails_with_traceback_tail(make_backend, tmp_path):
    entry = script(
        tmp_path,
        """
        print("starting")
        def load():
            raise ValueError("column 'target' not found")
        load()
        """,
    )
    d = run(make_backend(), spec("raise-1", entry))
    assert d.status == JobStatus.FAILED
    assert "ValueError: column 'target' not found" in d.failure_reason
    assert "Traceback (most recent call last)" in d.failure_reason
    assert "in load" in d.failure_reason  # the traceback tail, not only the message
    assert "runpy" not in d.failure_reason  # our own frames are not shown
    assert d.model_artifacts is None


def test_sys_exit_nonzero_fails_and_zero_completes(make_backend, tmp_path):
    backend = make_backend()
    d = run(backend, spec("exit-3", script(tmp_path, "import sys\nsys.exit(3)\n", "a.py")))
    assert d.status == JobStatus.FAILED and "exit" in d.failure_reason and "3" in d.failure_reason
    d = run(backend, spec("exit-0", script(tmp_path, "import sys\nsys.exit(0)\n", "b.py")))
    assert d.status == JobStatus.COMPLETED


def test_failure_file_is_the_reason(make_backend, tmp_path):
    entry = script(
        tmp_path,
        """
        import os, sys
        with open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w") as f:
            f.write("DataError: only 3 rows after filtering")
        sys.exit(2)
        """,
    )
    d = run(make_backend(), spec("failfile-1", entry))
    assert d.status == JobStatus.FAILED and d.failure_reason.startswith("DataError: only 3 rows after filtering")


def test_hard_crashes_fail_only_the_job_and_the_pool_keeps_running(make_backend, tmp_path):
    backend = make_backend(max_parallel_jobs=1)
    entry = script(tmp_path, "import os\nprint('partial=1;')\nos._exit(1)\n", "exit.py")
    d = run(backend, spec("crash-exit", entry, metric_definitions=[{"Name": "partial", "Regex": "partial=([0-9]+);"}]))
    assert d.status == JobStatus.FAILED and "exit code 1" in d.failure_reason
    assert d.final_metrics == {"partial": 1.0}  # metrics a failed job printed are still reported

    entry = script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "segv.py")
    d = run(backend, spec("crash-segv", entry))
    assert d.status == JobStatus.FAILED and "SIGSEGV" in d.failure_reason
    assert "Fatal Python error" in d.failure_reason  # faulthandler's dump is in the log tail

    d = run(backend, spec("after-crash", script(tmp_path, "print('fine')\n", "ok.py")))
    assert d.status == JobStatus.COMPLETED and d.warm_pool_status == WarmPoolStatus.REUSED
    assert backend.stats["workers_started"] == 1  # the crashes never took the worker down


def test_max_runtime_exceeded(make_backend, tmp_path):
    backend = make_backend(stop_grace_s=1.0)
    entry = script(tmp_path, "import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    t0 = time.monotonic()
    d = run(backend, spec("slow-1", entry, max_runtime_s=1))
    assert time.monotonic() - t0 < 10
    assert d.status == JobStatus.FAILED
    assert "MaxRuntimeExceeded" in d.failure_reason and "max_runtime_s=1" in d.failure_reason
    assert "working" in d.failure_reason


def test_backend_enforces_max_runtime_when_the_worker_does_not(make_backend, tmp_path):
    # A frozen worker cannot enforce the deadline and the script ignores the SIGALRM safety net:
    # wait() itself must notice the deadline (max_runtime + grace + slack) and end the job.
    backend = make_backend(stop_grace_s=0.2)
    entry = script(
        tmp_path,
        "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(60)\n",
    )
    backend.submit(spec("frozen-1", entry, max_runtime_s=1))
    state_file = tmp_path / "jobs" / "frozen-1" / "state.json"
    wait_for(state_file.exists, what="job start")
    state = json.loads(state_file.read_text())
    os.kill(state["worker_pid"], signal.SIGSTOP)
    try:
        d = wait_done(backend, "frozen-1", timeout=15)["frozen-1"]
    finally:
        os.kill(state["worker_pid"], signal.SIGCONT)
    assert d.status == JobStatus.FAILED and "MaxRuntimeExceeded" in d.failure_reason
    wait_for(lambda: process_gone(state["pid"]), what="job process killed")


# --------------------------------------------------------------------------- stop


def test_stop_running_and_queued_jobs(make_backend, tmp_path):
    backend = make_backend(max_parallel_jobs=1, stop_grace_s=2.0)
    entry = script(
        tmp_path,
        """
        import subprocess, time
        helper = subprocess.Popen(["sleep", "60"])
        print(f"helper={helper.pid};", flush=True)
        time.sleep(60)
        """,
    )
    backend.submit(spec("stop-running", entry))
    backend.submit(spec("stop-queued", entry))
    assert backend.describe("stop-queued").status == JobStatus.IN_PROGRESS  # waiting for the only worker
    wait_for(lambda: "helper=" in backend.read_log("stop-running"), what="job start")
    helper = int(backend.read_log("stop-running").split("helper=")[1].split(";")[0])

    backend.stop("stop-queued")
    d = backend.describe("stop-queued")
    assert d.status == JobStatus.STOPPED and d.start_time is None and d.warm_pool_status is None
    backend.stop("stop-running")
    assert backend.describe("stop-running").status in (JobStatus.STOPPING, JobStatus.STOPPED)
    d = wait_done(backend, "stop-running")["stop-running"]
    assert d.status == JobStatus.STOPPED
    wait_for(lambda: process_gone(helper), what="the job's subprocess to be killed too")

    time.sleep(0.3)  # the queued job must never start, even once the worker is free
    assert not (tmp_path / "jobs" / "stop-queued" / "state.json").exists()
    assert backend.describe("stop-queued").status == JobStatus.STOPPED
    assert backend.stats["jobs_run"] == 1


def test_stop_escalates_to_sigkill_after_grace(make_backend, tmp_path):
    backend = make_backend(stop_grace_s=0.5)
    entry = script(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    backend.submit(spec("stubborn-1", entry))
    wait_for(lambda: "ready" in backend.read_log("stubborn-1"), what="job start")
    backend.stop("stubborn-1")
    time.sleep(0.2)
    assert backend.describe("stubborn-1").status == JobStatus.STOPPING  # SIGTERM ignored, grace running
    assert wait_done(backend, "stubborn-1", timeout=10)["stubborn-1"].status == JobStatus.STOPPED


def test_stop_after_completion_keeps_completed(make_backend, tmp_path):
    backend = make_backend()
    run(backend, spec("done-1", script(tmp_path, "print('ok')\n")))
    backend.stop("done-1")
    assert backend.describe("done-1").status == JobStatus.COMPLETED


# --------------------------------------------------------------------------- names


def test_duplicate_invalid_and_unknown_names(make_backend, tmp_path):
    backend = make_backend()
    entry = script(tmp_path, "print('ok')\n")
    run(backend, spec("dup-1", entry))
    with pytest.raises(JobExistsError):
        backend.submit(spec("dup-1", entry))
    for bad in ("", "-leading-hyphen", "under_score", "x" * 64, "has space"):
        with pytest.raises(ConfigError):
            backend.submit(spec(bad, entry))
    with pytest.raises(ConfigError, match="entry_point"):
        backend.submit(spec("no-script", str(tmp_path / "missing.py")))
    with pytest.raises(ConfigError, match="channels.train"):
        backend.submit(spec("no-data", entry, channels={"train": str(tmp_path / "missing")}))
    with pytest.raises(ConfigError):
        backend.submit(spec("bad-metric", entry, metric_definitions=[{"Name": "x", "Regex": "no group"}]))
    with pytest.raises(ConfigError, match="hyperparameter"):
        backend.submit(spec("bad-hp", entry, hyperparameters={"a=b": 1}))
    with pytest.raises(ConfigError, match="max_runtime_s"):
        backend.submit(spec("bad-runtime", entry, max_runtime_s=0))
    assert not (tmp_path / "jobs" / "no-script").exists()  # validation happens before the claim
    for call in (backend.describe, backend.stop, backend.read_log):
        with pytest.raises(JobNotFoundError):
            call("never-submitted")


def test_get_backend_factory(tmp_path):
    with pytest.raises(ConfigError, match="backend.role_arn: is required"):
        get_backend("sagemaker")  # validated before any client is made
    with pytest.raises(ConfigError, match="use one of local, sagemaker"):
        get_backend("kubernetes")
    with pytest.raises(ConfigError, match="accepted options"):
        get_backend("local", work_dir=str(tmp_path), max_workers=2)
    backend = get_backend("local", work_dir=str(tmp_path), max_parallel_jobs=3, preload=())
    try:
        assert isinstance(backend, LocalBackend) and backend.capacity == 3
    finally:
        backend.close()


# --------------------------------------------------------------------------- warm pool


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A preload module that logs every import of itself and holds mutable module state."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "cvt_probe.py").write_text(
        textwrap.dedent(
            """
            import os
            with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as f:
                f.write(f"{os.getpid()}\\n")
            STATE = []
            """
        )
    )
    monkeypatch.syspath_prepend(str(lib))  # workers get the orchestrator's sys.path
    return lib


def test_warm_reuse_imports_preload_once_and_isolates_jobs(make_backend, tmp_path, probe_module):
    backend = make_backend(max_parallel_jobs=1, preload=("cvt_probe", "numpy"))
    dirty = script(
        tmp_path,
        """
        import json, os, sys
        preloaded = "cvt_probe" in sys.modules
        import cvt_probe, numpy
        os.environ["CVT_LEAK"] = "1"
        os.chdir("/")
        cvt_probe.STATE.append("dirty")
        print(json.dumps({"preloaded": preloaded, "ppid": os.getppid(), "rand": numpy.random.rand()}))
        """,
        "dirty.py",
    )
    check = script(
        tmp_path,
        """
        import json, os, sys
        preloaded = "cvt_probe" in sys.modules
        import cvt_probe, numpy
        print(json.dumps({"preloaded": preloaded, "ppid": os.getppid(), "rand": numpy.random.rand(),
                          "leak": os.environ.get("CVT_LEAK"), "cwd": os.getcwd(), "state": cvt_probe.STATE}))
        """,
        "check.py",
    )
    first = run(backend, spec("warm-1", dirty))
    second = run(backend, spec("warm-2", check))
    assert first.status == second.status == JobStatus.COMPLETED
    assert first.warm_pool_status == WarmPoolStatus.COLD and second.warm_pool_status == WarmPoolStatus.REUSED
    seen1 = json.loads(backend.read_log("warm-1", tail=1))
    seen2 = json.loads(backend.read_log("warm-2", tail=1))
    assert seen1["preloaded"] and seen2["preloaded"]
    assert seen1["ppid"] == seen2["ppid"] in backend.worker_pids()  # same warm worker
    assert (probe_module / "imports.log").read_text().split() == [str(seen1["ppid"])]  # imported once
    assert seen2["leak"] is None  # environment of the previous job did not leak
    assert seen2["cwd"] == str(tmp_path / "jobs" / "warm-2")  # cwd is per job
    assert seen2["state"] == []  # module globals mutated by the previous job are pristine
    assert seen1["rand"] != seen2["rand"]  # each fork reseeds numpy's global RNG
    stats = backend.stats
    assert stats["workers_started"] == 1 and stats["jobs_run"] == 2 and stats["warm_starts"] == 1


def test_default_preload_makes_heavy_imports_free(make_backend, tmp_path):
    # The real warm pool: pandas/sklearn/xgboost imported once by the worker, used by forks.
    entry = script(
        tmp_path,
        """
        import sys, time
        preloaded = all(m in sys.modules for m in ("pandas", "sklearn.ensemble", "xgboost"))
        t = time.perf_counter()
        import numpy as np, pandas as pd, xgboost as xgb
        from sklearn.ensemble import RandomForestClassifier
        print(f"import_s={time.perf_counter() - t};preloaded={int(preloaded)};")
        X = pd.DataFrame(np.random.default_rng(0).normal(size=(200, 4)))
        y = (X[0] > 0).astype(int)
        xgb.XGBClassifier(n_estimators=5, n_jobs=2).fit(X, y)
        RandomForestClassifier(n_estimators=5, n_jobs=2).fit(X, y)
        print("fit ok")
        """,
    )
    metrics = [{"Name": "import_s", "Regex": r"import_s=([0-9.eE-]+);"},
               {"Name": "preloaded", "Regex": r"preloaded=([01]);"}]
    backend = make_backend(preload=DEFAULT_PRELOAD, max_parallel_jobs=1)
    for name in ("heavy-1", "heavy-2"):
        d = run(backend, spec(name, entry, metric_definitions=metrics))
        assert d.status == JobStatus.COMPLETED, d.failure_reason
        assert d.final_metrics["preloaded"] == 1 and d.final_metrics["import_s"] < 0.05
        assert "fit ok" in backend.read_log(name)
    assert d.warm_pool_status == WarmPoolStatus.REUSED


def test_idle_worker_retires_and_pool_restarts(make_backend, tmp_path):
    backend = make_backend(keep_alive_s=0.5)
    entry = script(tmp_path, "print('ok')\n")
    assert run(backend, spec("idle-1", entry)).status == JobStatus.COMPLETED
    worker = backend.worker_pids()[0]
    wait_for(lambda: backend.stats["workers_retired"] == 1, what="worker retirement")
    assert backend.stats["workers_alive"] == 0
    wait_for(lambda: process_gone(worker), what="retired worker exit")
    d = run(backend, spec("idle-2", entry))
    assert d.status == JobStatus.COMPLETED and d.warm_pool_status == WarmPoolStatus.COLD
    assert backend.stats["workers_started"] == 2


def test_max_parallel_jobs_bounds_concurrency(make_backend, tmp_path):
    backend = make_backend(max_parallel_jobs=2)
    entry = script(
        tmp_path,
        """
        import time
        print(f"t0={time.time()};", flush=True)
        time.sleep(0.4)
        print(f"t1={time.time()};")
        """,
    )
    metrics = [{"Name": "t0", "Regex": r"t0=([0-9.]+);"}, {"Name": "t1", "Regex": r"t1=([0-9.]+);"}]
    names = [f"par-{i}" for i in range(5)]
    for name in names:
        backend.submit(spec(name, entry, metric_definitions=metrics))  # never blocks
    assert backend.stats["queued"] == 3
    done = wait_done(backend, *names)
    assert all(d.status == JobStatus.COMPLETED for d in done.values())
    events = sorted(
        [(d.final_metrics["t0"], 1) for d in done.values()] + [(d.final_metrics["t1"], -1) for d in done.values()]
    )
    running = peak = 0
    for _t, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2
    assert backend.stats["workers_started"] == 2


def test_missing_preload_module_is_skipped_with_warning(make_backend, tmp_path):
    backend = make_backend(preload=("cvt_no_such_module_xyz",))
    with pytest.warns(RuntimeWarning, match="cvt_no_such_module_xyz"):
        d = run(backend, spec("nopreload-1", script(tmp_path, "print('ok')\n")))
    assert d.status == JobStatus.COMPLETED


def test_prestart_gives_the_first_job_a_warm_start(make_backend, tmp_path):
    backend = make_backend(max_parallel_jobs=2)
    backend.prestart()
    assert backend.stats["workers_alive"] == 2
    d = run(backend, spec("prestarted-1", script(tmp_path, "print('ok')\n")))
    assert d.status == JobStatus.COMPLETED and d.warm_pool_status == WarmPoolStatus.REUSED
    assert backend.stats["workers_started"] == 2


def test_workers_that_cannot_start_fail_the_job_instead_of_looping(make_backend, tmp_path, monkeypatch):
    (tmp_path / "cvt_exit_on_import.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    backend = make_backend(preload=("cvt_exit_on_import",))
    d = run(backend, spec("never-starts", script(tmp_path, "print('ok')\n")))
    assert d.status == JobStatus.FAILED and "exited while starting" in d.failure_reason
    assert backend.stats["workers_started"] == 3


def test_worker_crash_fails_its_job_and_is_replaced(make_backend, tmp_path):
    backend = make_backend(max_parallel_jobs=1)
    backend.submit(spec("orphaned-1", script(tmp_path, "import time\ntime.sleep(60)\n", "sleep.py")))
    state_file = tmp_path / "jobs" / "orphaned-1" / "state.json"
    wait_for(state_file.exists, what="job start")
    state = json.loads(state_file.read_text())
    os.kill(state["worker_pid"], signal.SIGKILL)
    d = wait_done(backend, "orphaned-1")["orphaned-1"]
    assert d.status == JobStatus.FAILED and "worker process" in d.failure_reason and "SIGKILL" in d.failure_reason
    wait_for(lambda: process_gone(state["pid"]), what="the unsupervised job to be killed")
    assert run(backend, spec("after-worker-crash", script(tmp_path, "print('ok')\n"))).status == JobStatus.COMPLETED
    stats = backend.stats
    assert stats["workers_lost"] == 1 and stats["workers_started"] == 2


# --------------------------------------------------------------------------- re-attach


def test_reattach_after_orchestrator_is_killed(tmp_path):
    work_dir = str(tmp_path / "jobs")
    entry = script(tmp_path, "import time\ntime.sleep(1.5)\nprint('validation:auc=0.81;')\n")
    orchestrator = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from cvtune.backends.base import JobSpec
                from cvtune.local.backend import LocalBackend
                backend = LocalBackend(sys.argv[1], max_parallel_jobs=1, preload=())
                backend.submit(JobSpec("reattach-1", sys.argv[2], {}, {}, metric_definitions=[
                    {"Name": "auc", "Regex": "validation:auc=([0-9.]+);"}]))
                while backend.describe("reattach-1").start_time is None:
                    time.sleep(0.01)
                print("started", flush=True)
                time.sleep(600)
                """
            ),
            work_dir,
            entry,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert orchestrator.stdout.readline().strip() == "started"
    finally:
        orchestrator.kill()
        # EOF on its stdout comes at once: the busy worker does not hold the orchestrator's pipes.
        orchestrator.communicate(timeout=5)
    state = json.loads((tmp_path / "jobs" / "reattach-1" / "state.json").read_text())

    with LocalBackend(work_dir, preload=()) as backend:  # a new backend, in a new process
        assert backend.describe("reattach-1").status == JobStatus.IN_PROGRESS
        d = wait_done(backend, "reattach-1")["reattach-1"]
        assert d.status == JobStatus.COMPLETED and d.final_metrics == {"auc": 0.81}
        with pytest.raises(JobExistsError):
            backend.submit(JobSpec("reattach-1", entry, {}, {}))
    # The dead orchestrator's worker exits once its job is done: no orphans.
    wait_for(lambda: process_gone(state["worker_pid"]), what="orphaned worker exit")


def test_job_handed_to_a_worker_runs_even_if_the_orchestrator_dies_first(tmp_path):
    # The orchestrator dies (no atexit) right after submit, before the new worker has even
    # finished starting: the job is in the worker's pipe, so it still runs and records itself.
    work_dir = str(tmp_path / "jobs")
    entry = script(tmp_path, "print('validation:auc=0.5;')\n")
    code = textwrap.dedent(
        """
        import os, sys
        from cvtune.backends.base import JobSpec
        from cvtune.local.backend import LocalBackend
        backend = LocalBackend(sys.argv[1], max_parallel_jobs=1, preload=())
        backend.submit(JobSpec("handed-over", sys.argv[2], {}, {}, metric_definitions=[
            {"Name": "auc", "Regex": "validation:auc=([0-9.]+);"}]))
        backend.submit(JobSpec("still-queued", sys.argv[2], {}, {}))
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code, work_dir, entry], check=True)
    with LocalBackend(work_dir, preload=()) as backend:
        d = wait_done(backend, "handed-over")["handed-over"]
        assert d.status == JobStatus.COMPLETED and d.final_metrics == {"auc": 0.5}
        d = backend.describe("still-queued")  # only its dead submitter knew about it: it never ran
        assert d.status == JobStatus.STOPPED and "job process lost before it started" in d.failure_reason


def test_describe_of_dead_jobs_reports_lost(make_backend, tmp_path):
    backend = make_backend()
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, files in {
        "lost-running": {"state.json": {"pid": dead.pid, "create_time": 1.0, "start_time": time.time() - 5,
                                        "worker_pid": dead.pid, "worker_create_time": 1.0,
                                        "max_runtime_s": 3600}},
        "lost-queued": {"submitted.json": {"owner_pid": dead.pid, "owner_create_time": 1.0}},
    }.items():
        job_dir = tmp_path / "jobs" / name
        job_dir.mkdir(parents=True)
        (job_dir / "spec.json").write_text(json.dumps(spec(name, "/x/train.py").to_dict()))
        (job_dir / "log.txt").write_text("last words before the crash\n")
        for file, content in files.items():
            (job_dir / file).write_text(json.dumps(content))
    d = backend.describe("lost-running")
    assert d.status == JobStatus.FAILED and "job process lost" in d.failure_reason
    assert "last words before the crash" in d.failure_reason
    assert backend.describe("lost-running") == d  # recorded once, stable afterwards
    d = backend.describe("lost-queued")
    assert d.status == JobStatus.STOPPED and "job process lost before it started" in d.failure_reason


def test_close_leaves_running_jobs_alone_and_stops_queued_ones(tmp_path):
    entry = script(tmp_path, "import time\nprint('begun', flush=True)\ntime.sleep(0.8)\nprint('done')\n")
    backend = LocalBackend(str(tmp_path / "jobs"), max_parallel_jobs=1, preload=())
    backend.submit(spec("close-running", entry))
    backend.submit(spec("close-queued", entry))
    wait_for(lambda: "begun" in backend.read_log("close-running"), what="job start")
    worker = backend.worker_pids()[0]
    backend.close()
    d = backend.describe("close-queued")
    assert d.status == JobStatus.STOPPED and "closed" in d.failure_reason
    d = wait_done(backend, "close-running")["close-running"]  # still works from the files
    assert d.status == JobStatus.COMPLETED
    wait_for(lambda: process_gone(worker), what="detached worker exit")
    with pytest.raises(RuntimeError):
        backend.submit(spec("after-close", entry))


def test_recorded_compacts_ended_jobs_and_keeps_failed_logs(make_backend, tmp_path):
    ok = script(tmp_path, """
        import os
        open(os.path.join(os.environ["SM_MODEL_DIR"], "model.bin"), "w").write("x")
        print("validation:score=0.5;")
    """)
    bad = script(tmp_path, "raise SystemExit('boom')\n", name="bad.py")
    backend = make_backend()
    run(backend, spec("done-1", ok))
    run(backend, spec("failed-1", bad))
    backend.recorded("done-1")
    backend.recorded("failed-1")
    backend.close()  # joins the cleanup thread
    assert sorted(os.listdir(backend.job_dir("done-1"))) == ["final.json", "spec.json"]
    failed = sorted(os.listdir(backend.job_dir("failed-1")))
    assert "log.txt" in failed and "model" not in failed and "input" not in failed
    # the names stay taken, and described as before
    assert backend.describe("done-1").status == JobStatus.COMPLETED and backend.describe("failed-1").status == JobStatus.FAILED
    kept = make_backend(job_cleanup="keep")
    run(kept, spec("kept-1", ok))
    kept.recorded("kept-1")
    kept.close()
    assert "model" in os.listdir(kept.job_dir("kept-1"))
    with pytest.raises(ConfigError, match="job_cleanup"):
        make_backend(job_cleanup="delete")


def test_a_recorded_job_tree_is_recycled_clean_and_a_tampered_one_is_not(make_backend, tmp_path):
    # what each job sees of its tree, written outside it; then it dirties the tree as scripts do
    probe = script(tmp_path, """
        import json, os, sys
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        config = os.path.join(os.environ["SM_INPUT_CONFIG_DIR"], "hyperparameters.json")
        seen = {"model": os.listdir(os.environ["SM_MODEL_DIR"]), "output": sorted(os.listdir(os.environ["SM_OUTPUT_DIR"])),
                "data": os.listdir(os.environ["SM_OUTPUT_DATA_DIR"]), "train": os.listdir(os.environ["SM_CHANNEL_TRAIN"]),
                "hps": json.load(open(config))}
        with open(args["--out"], "w") as f:
            json.dump(seen, f)
        open(os.path.join(os.environ["SM_MODEL_DIR"], "model.bin"), "w").write("x")
        open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "extra.csv"), "w").write("x")
        open(os.path.join(os.environ["SM_OUTPUT_DIR"], "failure"), "w").write("not a failure")
        if args["--tamper"] == "1":
            open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "planted.csv"), "w").write("x")
            open(config, "w").write("{}")
    """)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a\n1\n")
    backend = make_backend()

    def job(name, tamper):
        hps = {"out": str(tmp_path / f"{name}.json"), "tamper": tamper}
        d = run(backend, spec(name, probe, hyperparameters=hps, channels={"train": str(data)}))
        assert d.status == JobStatus.COMPLETED, d.failure_reason
        seen = json.loads((tmp_path / f"{name}.json").read_text())
        inode = os.stat(os.path.join(backend.job_dir(name), "input")).st_ino
        backend.recorded(name)
        wait_for(lambda: sorted(os.listdir(backend.job_dir(name))) == ["final.json", "spec.json"], what="compaction")
        return seen, inode

    clean = {"model": [], "output": ["data"], "data": [], "train": ["train.csv"]}
    first, first_inode = job("tree-1", "0")
    assert {k: v for k, v in first.items() if k != "hps"} == clean
    second, second_inode = job("tree-2", "1")
    assert second_inode == first_inode  # the first job's tree, moved into the second one
    assert {k: v for k, v in second.items() if k != "hps"} == clean  # emptied of what the first wrote
    assert second["hps"] == {"out": str(tmp_path / "tree-2.json"), "tamper": "1"}  # its own
    third, third_inode = job("tree-3", "0")
    assert third_inode != second_inode  # the second job wrote into its channel and config: not reused
    assert {k: v for k, v in third.items() if k != "hps"} == clean
    assert third["hps"]["out"] == str(tmp_path / "tree-3.json")
    assert not (data / "planted.csv").exists()  # the channel's source directory was never written


def test_queued_jobs_start_as_soon_as_a_slot_frees(make_backend, tmp_path):
    quick = script(tmp_path, "print('validation:score=0.5;')\n")
    assert make_backend().queue_ahead == 0  # off: queued jobs die with the driving process
    backend = make_backend(max_parallel_jobs=1, queue_ahead=1)
    backend.submit(spec("q-1", quick))
    backend.submit(spec("q-2", quick))  # queued ahead: starts when q-1 ends, without a new submit
    done = wait_done(backend, "q-1", "q-2")
    assert done["q-2"].start_time >= done["q-1"].end_time - 0.05


def test_a_job_directory_deleted_under_a_running_job_leaves_the_pool_working(make_backend, tmp_path):
    # A user (or a benchmark cleaning up ended runs) may delete a job's directory while its worker
    # is still finishing: the worker must not die of it, and the orchestrator must not fail.
    backend = make_backend(max_parallel_jobs=1)
    backend.prestart()
    backend.submit(spec("deleted-1", script(tmp_path, "import time\ntime.sleep(1)\n", "sleep1.py")))
    job_dir = tmp_path / "jobs" / "deleted-1"
    wait_for((job_dir / "state.json").exists, what="job start")
    import shutil

    shutil.rmtree(job_dir)
    wait_for(lambda: backend.stats["workers_busy"] == 0, what="the worker to report the end")
    with pytest.raises(JobNotFoundError):
        backend.read_log("deleted-1")
    d = run(backend, spec("after-deleted", script(tmp_path, "print('ok')\n")))
    assert d.status == JobStatus.COMPLETED and d.warm_pool_status == WarmPoolStatus.REUSED
    assert backend.stats["workers_lost"] == 0


def test_spare_trees_of_a_dead_orchestrator_are_swept(make_backend, tmp_path):
    # A killed orchestrator leaves its recycled /opt/ml trees behind; the next backend on the same
    # work dir deletes them, and leaves those of a live one alone.
    jobs = tmp_path / "jobs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = jobs / f".spare-{dead.pid}-0123abcd"
    live = jobs / f".spare-{os.getppid()}-4567ef01"
    for tree in (orphan, live):
        (tree / "1-model").mkdir(parents=True)
    backend = make_backend(max_parallel_jobs=1)
    assert run(backend, spec("after-orphan", script(tmp_path, "print('ok')\n"))).status == JobStatus.COMPLETED
    assert not orphan.exists() and live.exists()
