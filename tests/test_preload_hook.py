"""The warm worker's optional ``cvtune_preload`` hook (docs/training-script.md) and the generic
script's use of it: parsed fold files kept in the worker, inherited by each forked job child.

Tiny throwaway scripts in tmp_path check the worker side (when the hook is called, that a script
without it is never imported, that a failing hook leaves the job running); the real
``include/training/train.py`` checks the memo (hits, identical scores, a changed file is read
again, the byte bound).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cvtune.backends.base import JobSpec
from cvtune.local.backend import LocalBackend
from cvtune.states import JobStatus
from tests.test_local_backend import wait_done

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "include" / "training" / "train.py"
MEMO = "_cvtune_train_preload"


def write(path: Path, body: str) -> str:
    path.write_text(textwrap.dedent(body))
    return str(path)


def run_jobs(backend: LocalBackend, *jobs: JobSpec) -> dict:
    for job in jobs:
        backend.submit(job)
    return wait_done(backend, *(j.name for j in jobs), timeout=110)  # within the module's 120 s timeout


@pytest.fixture(params=["csv", "parquet"])
def fold(tmp_path, request):
    """A breast-cancer fold (train, validation) as CSV or Parquet files: a Parquet file read in the
    worker must not leave a forked job child with a broken thread pool."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    dirs = {}
    for name, part in (("train", frame.iloc[:450]), ("validation", frame.iloc[450:])):
        d = tmp_path / "fold" / name
        d.mkdir(parents=True)
        if request.param == "csv":
            part.to_csv(d / "data.csv", index=False)
        else:
            part.to_parquet(d / "data.parquet", index=False)
        dirs[name] = str(d)
    return dirs


@pytest.fixture
def ts():
    spec = importlib.util.spec_from_file_location("cvtune_train_preload_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(MEMO, None)
    yield module
    sys.modules.pop(MEMO, None)  # no other test's in-process run may read this test's memo


# --------------------------------------------------------------------------- the worker side


def test_hook_runs_in_the_worker_before_each_fork_and_the_child_inherits_what_it_kept(make_backend, tmp_path):
    log = tmp_path / "imports.log"
    entry = write(tmp_path / "hooked.py", f"""
        import json, os, sys
        with open({str(log)!r}, "a") as f:
            f.write(__name__ + " " + str(os.getpid()) + "\\n")

        def cvtune_preload(channels):
            memo = sys.modules.setdefault("hook_memo", type(sys)("hook_memo"))
            memo.calls = getattr(memo, "calls", []) + [
                {{"pid": os.getpid(), "channels": {{c: sorted(os.listdir(d)) for c, d in channels.items()}}}}]

        if __name__ == "__main__":
            memo = sys.modules.get("hook_memo")
            print(json.dumps({{"ppid": os.getppid(), "calls": getattr(memo, "calls", None)}}))
        """)
    data = tmp_path / "data"
    data.mkdir()
    (data / "part.csv").write_text("a,b\n1,2\n")
    backend = make_backend()
    jobs = [JobSpec(name=f"hook-{i}", entry_point=entry, hyperparameters={}, channels={"train": str(data)}) for i in (1, 2)]
    done = run_jobs(backend, *jobs)
    assert all(d.status == JobStatus.COMPLETED for d in done.values())
    seen = [json.loads(backend.read_log(f"hook-{i}", tail=1)) for i in (1, 2)]
    worker = seen[0]["ppid"]
    assert seen[1]["ppid"] == worker
    # the hook ran in the worker, once per job, before the fork, with the job's own channel folder
    assert [c["pid"] for c in seen[0]["calls"]] == [worker]
    assert [c["pid"] for c in seen[1]["calls"]] == [worker, worker]
    assert seen[1]["calls"][1]["channels"] == {"train": ["part.csv"]}
    # imported once by the worker (not as __main__), run as __main__ by each job child
    names = [line.split()[0] for line in log.read_text().splitlines()]
    assert names.count("__cvtune_preload__") == 1 and names.count("__main__") == 2


def test_a_script_without_the_hook_is_never_imported_by_the_worker(make_backend, tmp_path):
    log = tmp_path / "imports.log"
    entry = write(tmp_path / "plain.py", f"""
        import os
        # no __main__ guard: importing this file would train
        with open({str(log)!r}, "a") as f:
            f.write(__name__ + " " + str(os.getppid()) + "\\n")
        def cvtune_preload_not_the_hook(channels):
            pass
        """)
    data = tmp_path / "data"
    data.mkdir()
    (data / "part.csv").write_text("a\n1\n")
    backend = make_backend()
    jobs = [JobSpec(name=f"plain-{i}", entry_point=entry, hyperparameters={}, channels={"train": str(data)}) for i in (1, 2)]
    assert all(d.status == JobStatus.COMPLETED for d in run_jobs(backend, *jobs).values())
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["__main__", "__main__"]


def test_a_failing_hook_or_import_leaves_the_jobs_running(make_backend, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "part.csv").write_text("a\n1\n")
    raising = write(tmp_path / "raising.py", """
        def cvtune_preload(channels):
            raise RuntimeError("hook broke")
        if __name__ == "__main__":
            print("validation:auc=0.5;")
        """)
    broken_import = write(tmp_path / "broken.py", """
        import os
        if __name__ != "__main__":
            raise SystemExit("not importable")
        def cvtune_preload(channels):
            pass
        print("validation:auc=0.75;")
        """)
    backend = make_backend()
    defs = [{"Name": "validation:auc", "Regex": r"validation:auc=([0-9.]+);"}]
    jobs = [JobSpec(name=n, entry_point=e, hyperparameters={}, channels={"train": str(data)}, metric_definitions=defs)
            for n, e in (("raising", raising), ("broken", broken_import))]
    done = run_jobs(backend, *jobs)
    assert done["raising"].status == done["broken"].status == JobStatus.COMPLETED
    assert done["raising"].final_metrics == {"validation:auc": 0.5}
    assert done["broken"].final_metrics == {"validation:auc": 0.75}
    worker_log = (tmp_path / "jobs" / ".workers.log").read_text()
    assert "hook broke" in worker_log and "not importable" in worker_log


# --------------------------------------------------------------------------- the generic script


def test_train_py_jobs_read_their_fold_from_the_worker_memo_with_identical_scores(make_backend, tmp_path, fold, ts):
    hps = {"model": "xgboost", "task": "classification", "target": "target", "num_round": 20, "max_depth": 3}
    # the reference: the same fold trained in this process, nothing preloaded
    env = {"SM_CHANNEL_TRAIN": fold["train"], "SM_CHANNEL_VALIDATION": fold["validation"], "SM_NUM_CPUS": "1",
           "SM_MODEL_DIR": str(tmp_path / "ref" / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "ref" / "out")}
    settings = ts.resolve_hyperparameters({k: str(v) for k, v in hps.items()})
    reference = ts.train(settings, ts.read_environment(env))
    assert json.loads((tmp_path / "ref" / "model" / "metadata.json").read_text())["preloaded_files"] == 0

    entry = tmp_path / "code" / "train.py"  # a copy: tests never write next to include/training/train.py
    entry.parent.mkdir()
    shutil.copy(SCRIPT, entry)
    backend = make_backend(preload=("numpy", "pandas", "sklearn.compose", "sklearn.impute", "sklearn.metrics"))
    jobs = [JobSpec(name=f"fold-{i}", entry_point=str(entry), hyperparameters=hps,
                    channels={"train": fold["train"], "validation": fold["validation"]}) for i in (1, 2)]
    done = run_jobs(backend, *jobs)
    for name, desc in done.items():
        assert desc.status == JobStatus.COMPLETED, desc.failure_reason
        metadata = json.loads((tmp_path / "jobs" / name / "model" / "metadata.json").read_text())
        assert metadata["preloaded_files"] == 2  # train and validation, parsed by the worker
        assert metadata["metrics"] == reference  # bit-identical scores


def test_memo_is_keyed_by_the_file_as_it_is_now_and_bounded_in_bytes(ts, fold, tmp_path):
    ts.cvtune_preload({"train": fold["train"], "validation": fold["validation"]})
    path = os.path.join(fold["train"], os.listdir(fold["train"])[0])
    hit = ts._preloaded(path)
    assert hit is not None
    pd.testing.assert_frame_equal(hit[0], ts._read_file(path)[0])
    # a job's channel is a symlink to the fold file: the same memo entry
    link = tmp_path / "job" / os.path.basename(path)
    link.parent.mkdir()
    link.symlink_to(path)
    assert ts._preloaded(str(link)) is not None
    # a rewritten file is read again, never served stale
    frame = ts._read_file(path)[0]
    frame.iloc[0, 0] = 12345.0
    frame.to_csv(path, index=False) if path.endswith(".csv") else frame.to_parquet(path, index=False)
    assert ts._preloaded(path) is None

    memo = sys.modules[MEMO]
    largest, smallest = max(memo.sizes.values()), min(memo.sizes.values())
    ts.PRELOAD_MAX_BYTES = largest + smallest - 1  # room for the train file, not for it and another
    ts.cvtune_preload({"train": fold["train"]})
    assert memo.bytes <= ts.PRELOAD_MAX_BYTES and len(memo.frames) == 1
    assert ts._preloaded(path) is not None  # the most recent one stayed
    assert ts._preloaded(os.path.join(fold["validation"], os.listdir(fold["validation"])[0])) is None  # the older one left
