"""Orchestration cost as a run grows: cvtune's local warm pool vs Optuna forking a process per fold.

    python benchmarks/scale.py [--quick] [--sizes 50 200 800 2000] [--folds 3]

The training script is trivial (it prints its metric at once), so what is timed is orchestration:
for each size, a Random-strategy run of N trials x 3 folds through the real ``CVTuner``, ledger
and ``LocalBackend`` (2 workers), and the same N x 3 evaluations through Optuna (in-memory study,
RandomSampler, ``n_jobs=2`` threads, each fold a forked child process that computes the metric and
sends it back over a pipe). Each (size, side) runs in its own fresh process, sizes interleaved
cvtune / Optuna, so peak RSS is that run's. Printed per size:

* per-fold-job time: the run's wall time / fold jobs;
* ledger bytes written (snapshots + journal records) and the ledger's final size;
* poke time: ``CVTuner.resume(ledger)`` (the ledger's snapshot and tail, config, manifest), what a
  deferred poke or sensor step pays before describing the jobs in flight when none has ended (the
  sampler is rebuilt only when the driver asks or tells);
* resume time: the same plus the replay of every trial into the sampler, which a resumed driver
  pays once it asks its next trial;
* peak RSS of the driving process;
* the same evaluations through Optuna with a fork per fold;
* where the CPU goes, per fold job: minor page faults and CPU of the job process (cvtune: the
  worker's forked child, from the worker's /proc/<pid>/stat; Optuna: its forked child), the
  workers' own, and the driving process's CPU.

The job directories go to the temporary directory (``TMPDIR``): creating files there is part of
what is measured.

Targets (issue 14): per-fold-job time at 2,000 trials <= 1.2x that at 50, and <= 1.5x Optuna's.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, quiet  # noqa: E402

SCRIPT = """\
import json, os
hp = json.loads(os.environ["SM_HPS"])
x = float(hp["x"])
fold = int(os.environ.get("CVTUNE_FOLD", "0"))
print(f"validation:score={1 - (x - 0.3) ** 2:.6f};")
"""
TARGET_GROWTH = 1.2
TARGET_VS_OPTUNA = 1.5


def score(x: float) -> float:
    return 1 - (x - 0.3) ** 2


def run_cvtune(trials: int, folds: int, work: str) -> dict:
    quiet()
    from cvtune import ledger as L
    from cvtune.config import load_config
    from cvtune.folds import split_dataset
    from cvtune.local.backend import LocalBackend
    from cvtune.tuner import CVTuner

    script = os.path.join(work, "trivial.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    data = os.path.join(work, "data.csv")
    with open(data, "w") as f:
        f.write("a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    manifest = split_dataset(data, os.path.join(work, "folds"), target="target", folds=folds, seed=0)
    config = load_config({
        "entry_point": script,
        "objective": {"metric": "validation:score", "type": "Maximize"},
        "metric_definitions": [{"Name": "validation:score", "Regex": "validation:score=([-+0-9.eE]+);"}],
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "strategy": "Random", "max_trials": trials, "max_parallel_trials": 2, "seed": 0,
    })
    save_s = [0.0]
    original_save, original_snapshot = L.RunLedger.save, L.RunLedger.snapshot

    def timed(fn):
        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return fn(self, *a, **k)
            finally:
                save_s[0] += time.perf_counter() - t
        return wrapper

    L.RunLedger.save, L.RunLedger.snapshot = timed(original_save), timed(original_snapshot)
    root = os.path.join(work, "art")
    with LocalBackend(os.path.join(work, "jobs"), max_parallel_jobs=2, preload=()) as backend:
        backend.prestart()
        workers = backend.worker_pids()
        children_before = [_children_usage(pid) for pid in workers]
        cpu_before = _cpu_s()
        start = time.perf_counter()
        tuner = CVTuner(config, manifest, backend, run_id="scale", artifact_root=root, poll_s=5.0)
        summary = tuner.run()
        wall = time.perf_counter() - start
        driver_cpu = _cpu_s() - cpu_before
        if backend.worker_pids() != workers:
            raise SystemExit(f"the pool's workers changed during the run ({workers} -> {backend.worker_pids()})")
        children_after = [_children_usage(pid) for pid in workers]
        faults, child_cpu, worker_faults, worker_cpu = (
            sum(after[i] - before[i] for before, after in zip(children_before, children_after, strict=True)) for i in range(4))
        written = tuner.ledger.bytes_written
        snapshots = tuner.ledger.snapshots_written
        L.RunLedger.save, L.RunLedger.snapshot = original_save, original_snapshot
        t = time.perf_counter()
        resumed = CVTuner.resume(tuner.uri, backend)
        poke_s = time.perf_counter() - t
        for trial in resumed.ledger.trials:  # what start() replays into the sampler
            resumed.proposer.observe(trial["params"], trial["mean"], trial["state"], L.running_means(trial["fold_scores"]))
        resume_s = time.perf_counter() - t
    # after close(): the cleanup thread has compacted every released job directory
    job_files = sum(len(files) for _, _, files in os.walk(os.path.join(work, "jobs")))
    assert summary["trials"] == {"Completed": trials}, summary["trials"]
    return {"wall": wall, "jobs": summary["fold_jobs"], "bytes": written, "snapshots": snapshots,
            "size": os.path.getsize(tuner.uri), "save_s": save_s[0], "poke_s": poke_s, "resume_s": resume_s, "job_files": job_files,
            "faults": faults, "child_cpu": child_cpu, "worker_faults": worker_faults, "worker_cpu": worker_cpu,
            "driver_cpu": driver_cpu}


def _children_usage(pid: int) -> tuple[int, float, int, float]:
    """Of worker ``pid`` (/proc/<pid>/stat): minor page faults and CPU seconds of its reaped children,
    its job children (cminflt, cutime + cstime), then its own (minflt, utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[8]), (int(fields[13]) + int(fields[14])) / tick, int(fields[7]),
            (int(fields[11]) + int(fields[12])) / tick)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_optuna(trials: int, folds: int, work: str) -> dict:
    quiet()
    import optuna

    def fold_job(x: float, fold: int) -> float:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the "training script"
            os.close(r)
            os.write(w, json.dumps(score(x)).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            value = json.loads(f.read())
        os.waitpid(pid, 0)
        return value

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        return sum(fold_job(x, k) for k in range(folds)) / folds

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=2)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "jobs": trials * folds, "faults": after.ru_minflt - children.ru_minflt,
            "child_cpu": after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime}


def one(side: str, trials: int, folds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cvtune-scale-") as work:
        result = (run_cvtune if side == "cvtune" else run_optuna)(trials, folds, work)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 and 30 trials")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="trial counts (default 50 200 800 2000)")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]), args.folds)
        return
    sizes = args.sizes or ([10, 30] if args.quick else [50, 200, 800, 2000])
    print(f"scale: {datetime.date.today()}, {machine()}")
    print(f"trivial script, Random, {args.folds} folds, 2 fold jobs at a time; each (size, side) in a fresh process")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    rows = {}
    for trials in sizes:
        for side in ("cvtune", "optuna"):
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, __file__, "--one", side, str(trials), "--folds", str(args.folds)],
                                 capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise SystemExit(f"{side} at {trials} trials failed:\n{out.stderr[-3000:]}")
            rows[(trials, side)] = {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load}
    print()
    print(f"{'trials':>7s}{'fold jobs':>10s}{'cvtune/job':>12s}{'optuna/job':>12s}{'ratio':>7s}{'ledger written':>16s}"
          f"{'per job':>9s}{'final':>9s}{'snapshots':>10s}{'ledger s':>9s}{'poke':>9s}{'resume':>9s}{'RSS cvtune':>11s}"
          f"{'RSS optuna':>11s}{'job files':>10s}{'load':>6s}")
    usage = []
    per_job = {}
    for trials in sizes:
        c, o = rows[(trials, "cvtune")], rows[(trials, "optuna")]
        cj, oj = c["wall"] / c["jobs"] * 1000, o["wall"] / o["jobs"] * 1000
        per_job[trials] = (cj, oj)
        print(f"{trials:7d}{c['jobs']:10d}{cj:10.1f}ms{oj:10.1f}ms{cj / oj:7.2f}{c['bytes'] / 1e6:14.2f}MB"
              f"{c['bytes'] / c['jobs'] / 1000:7.2f}kB{c['size'] / 1e6:7.2f}MB{c['snapshots']:10d}{c['save_s']:8.2f}s"
              f"{c['poke_s'] * 1000:7.0f}ms{c['resume_s'] * 1000:7.0f}ms{c['rss_mb']:9.0f}MB{o['rss_mb']:9.0f}MB{c['job_files']:10d}"
              f"{c['load']:6.1f}")
        usage.append(f"{trials:7d}{c['faults'] / c['jobs']:12.0f}{o['faults'] / o['jobs']:12.0f}"
                     f"{c['child_cpu'] / c['jobs'] * 1000:12.2f}ms{o['child_cpu'] / o['jobs'] * 1000:12.2f}ms"
                     f"{c['worker_faults'] / c['jobs']:14.0f}{c['worker_cpu'] / c['jobs'] * 1000:14.2f}ms"
                     f"{c['driver_cpu'] / c['jobs'] * 1000:14.2f}ms")
    print()
    print("per fold job: minor page faults and CPU of the job process (cvtune: the worker's forked child; Optuna: "
          "its forked child); cvtune's workers' own faults and CPU (fork, supervision), and its driving process's CPU")
    print(f"{'trials':>7s}{'faults cvt':>12s}{'faults opt':>12s}{'child CPU cvt':>14s}{'child CPU opt':>14s}"
          f"{'worker faults':>14s}{'worker CPU':>14s}{'driver CPU':>16s}")
    print("\n".join(usage))
    first, last = sizes[0], sizes[-1]
    growth = per_job[last][0] / per_job[first][0]
    vs = per_job[last][0] / per_job[last][1]
    print()
    print(f"per-fold-job time at {last} trials / at {first}: {growth:.2f} (target <= {TARGET_GROWTH}: "
          f"{'PASS' if growth <= TARGET_GROWTH else 'MISS'})")
    print(f"cvtune / Optuna-with-fork at {last} trials: {vs:.2f} (target <= {TARGET_VS_OPTUNA}: "
          f"{'PASS' if vs <= TARGET_VS_OPTUNA else 'MISS'})")


if __name__ == "__main__":
    main()
