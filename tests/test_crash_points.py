"""Crash injection: a driver killed at any write of submit or resume leaves a run that resumes.

Every file write the driving process makes — ledger saves (``store.write_bytes``), the local
backend's job files (``_zygote.write_json``, ``write_new``), its directories, renames and config files — is a write
point. A first run on the real local backend counts them; then, for each point in turn, a fresh
run crashes right there (an exception no code catches, like a kill: nothing after it runs in that
process) and a new driver resumes it. Each resume must complete the run, and no fold job may run
twice (the training script appends its job name to a file at every execution).
"""

from __future__ import annotations

import os
import shutil

import pytest

from cvtune.config import parse_config
from cvtune.ledger import RunLedger
from cvtune.local.backend import LocalBackend
from cvtune.tuner import CVTuner

FOLDS = 2
SCRIPT = """\
import sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(args["--runs_log"], "a") as f:
    f.write(__import__("os").environ["TRAINING_JOB_NAME"] + "\\n")
x = float(args["--x"])
print(f"score={1 - (x - 0.3) ** 2:.6f}")
"""


class Crash(BaseException):
    """The process dies here (BaseException: no ``except Exception`` in cvtune stops it)."""


class Faults:
    """Counts write points; raises :class:`Crash` at the ``crash_at``-th (1-based)."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.crash_at = crash_at
        self.points: list[str] = []
        self.dead = False

    def hit(self, label: str) -> None:
        if self.dead:
            return
        self.points.append(label)
        if len(self.points) == self.crash_at:
            self.dead = True
            raise Crash(label)


def install(monkeypatch, faults: Faults) -> None:
    import tempfile

    from cvtune.local import _zygote as z
    from cvtune.local import backend as b
    from cvtune.store import ArtifactStore

    def wrap(name, fn):
        def hooked(*args, **kwargs):
            first = args[0] if args else kwargs.get("prefix", "")
            faults.hit(f"{name} {os.path.basename(str(first)).split('-')[0] or first}")
            return fn(*args, **kwargs)
        return hooked

    write_bytes = ArtifactStore.write_bytes

    def hooked_write(self, uri, *args, **kwargs):  # every store's writes, whoever holds the store
        faults.hit(f"store.write_bytes {os.path.basename(str(uri)).split('-')[0] or uri}")
        return write_bytes(self, uri, *args, **kwargs)

    monkeypatch.setattr(ArtifactStore, "write_bytes", hooked_write)
    monkeypatch.setattr(z, "write_json", wrap("write_json", z.write_json))
    monkeypatch.setattr(z, "write_new", wrap("write_new", z.write_new))

    class OS:
        def __getattr__(self, attr):
            return getattr(os, attr)

        rename = staticmethod(wrap("os.rename", os.rename))
        makedirs = staticmethod(wrap("os.makedirs", os.makedirs))
        mkdir = staticmethod(wrap("os.mkdir", os.mkdir))

    class TempFile:
        def __getattr__(self, attr):
            return getattr(tempfile, attr)

        mkdtemp = staticmethod(wrap("tempfile.mkdtemp", tempfile.mkdtemp))

    monkeypatch.setattr(b, "os", OS())
    # after the crash this driver counts as dead, as a killed process would: jobs it queued and no
    # worker took are judged by it (owner pid + process start time), so it gets a start time of its own
    monkeypatch.setattr(b, "_own_create_time", lambda: 1.0)
    monkeypatch.setattr(b, "tempfile", TempFile())
    monkeypatch.setattr(b, "open", wrap("open", open), raising=False)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    script = base / "train.py"
    script.write_text(SCRIPT)
    folds = []
    for f in range(FOLDS):
        for part in ("train", "val"):
            (base / "data" / f"{f}" / part).mkdir(parents=True)
            (base / "data" / f"{f}" / part / "x.csv").write_text("a\n1\n")
        folds.append({"fold": f, "train_uri": str(base / "data" / f"{f}" / "train"),
                      "validation_uri": str(base / "data" / f"{f}" / "val")})
    manifest = {"manifest_uri": str(base / "manifest.json"), "fingerprint": "c" * 64, "folds": folds}
    return base, script, manifest


def drive(root, setup, faults: Faults | None, monkeypatch) -> bool:
    """One driver; ``True`` if it ran to the end, ``False`` if it crashed (its pool closed like a dead process's)."""
    base, script, manifest = setup
    config = parse_config({
        "entry_point": str(script),
        "static_hyperparameters": {"runs_log": "../../executions.log"},  # from the job's directory (its cwd)
        "objective": {"metric": "score", "type": "Maximize"},
        "metric_definitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "max_trials": 1, "max_parallel_trials": 1, "max_parallel_jobs": 2, "max_failed_trials": 5, "seed": 1,
    }, base_dir=None)
    backend = LocalBackend(str(root / "jobs"), max_parallel_jobs=2, preload=())
    with monkeypatch.context() as m:
        if faults is not None:
            install(m, faults)
        try:
            CVTuner(config, manifest, backend, run_id="crash", artifact_root=str(root / "art"), poll_s=0.05).run()
            return True
        except Crash:
            return False
        finally:
            if faults is not None:
                faults.dead = True
            backend.close()


def check(root) -> RunLedger:
    ledger = RunLedger.load(str(root / "art" / "runs" / "crash" / "ledger.json"))
    assert ledger.status == "Completed" and ledger.summary()["best"] is not None, ledger.counts()
    runs = (root / "executions.log").read_text().split()
    assert len(runs) == len(set(runs)), f"a fold job ran twice: {sorted(runs)}"
    for trial in ledger.trials:  # each completed fold's score is its own trial's
        for job in trial["fold_jobs"]:
            if job["state"] == "Completed":
                assert trial["fold_scores"][job["fold"]] == pytest.approx(1 - (trial["params"]["x"] - 0.3) ** 2, abs=1e-5)
    names = [n for n in os.listdir(root / "jobs") if not n.startswith(".")]
    assert all(os.path.exists(root / "jobs" / n / "spec.json") for n in names)
    return ledger


def distinct(points: list[str]) -> list[int]:
    """The 1-based indices worth a crash: each write point in each context (the write before it);
    repeats of the same sequence for the next job or the next save add no new state to recover from."""
    seen: set[tuple[str, str]] = set()
    out = []
    for k, point in enumerate(points, 1):
        key = (points[k - 2] if k > 1 else "", point)
        if key not in seen:
            seen.add(key)
            out.append(k)
    return out


@pytest.mark.timeout(900)
def test_a_crash_at_every_write_point_of_submit_and_resume_resumes(tmp_path, setup, monkeypatch):
    counting = Faults()
    assert drive(tmp_path / "count", setup, counting, monkeypatch)
    check(tmp_path / "count")
    fresh = counting.points
    assert {"store.write_bytes ledger.json", "write_new spec.json", "os.rename .new", "tempfile.mkdtemp .new",
            "open hyperparameters.json"} <= set(fresh), fresh

    # 1. a crash at each write point of a fresh run (every submit), then a resume
    crashed_at: set[str] = set()
    for k in distinct(fresh):
        root = tmp_path / f"f{k}"
        faults = Faults(crash_at=k)
        if not drive(root, setup, faults, monkeypatch):
            crashed_at.add(faults.points[-1])
        assert drive(root, setup, None, monkeypatch), k
        check(root)
    assert crashed_at == set(fresh)

    # 2. a crash at each write point of a resume (after a crash half-way), then a second resume
    middle = len(fresh) // 2
    seed_root = tmp_path / "r0"
    assert not drive(seed_root, setup, Faults(crash_at=middle), monkeypatch)
    counting = Faults()
    probe = tmp_path / "probe"
    shutil.copytree(seed_root, probe, symlinks=True)
    assert drive(probe, setup, counting, monkeypatch)
    resumed = counting.points
    crashed_at = set()
    for k in distinct(resumed):
        root = tmp_path / f"r{k}"
        assert not drive(root, setup, Faults(crash_at=middle), monkeypatch)
        faults = Faults(crash_at=k)
        if not drive(root, setup, faults, monkeypatch):
            crashed_at.add(faults.points[-1])
        assert drive(root, setup, None, monkeypatch), k
        check(root)
    assert crashed_at >= set(resumed) - {"open log.txt"}, (crashed_at, resumed)
    print(f"write points: {len(fresh)} in a fresh run ({len(distinct(fresh))} distinct), "
          f"{len(resumed)} in a resume ({len(distinct(resumed))} distinct)")
