"""Warm pool vs a cold process per job: the same N fold jobs of the real training script.

    python benchmarks/warm_pool.py [--quick] [--jobs 40] [--workers 2]

Both sides run `include/training/train.py` on the same breast-cancer folds with the same
hyperparameters, two at a time. "cold" starts `python train.py` per job (what a container per
job looks like without warm capacity: interpreter + pandas/sklearn/xgboost imports every time);
"warm" submits the jobs to the local backend, whose workers imported those libraries once.
Prints both wall times and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "plugins"))

from cvtune.backends.base import JobSpec  # noqa: E402
from cvtune.folds import split_dataset  # noqa: E402
from cvtune.local.backend import LocalBackend  # noqa: E402

SCRIPT = os.path.join(ROOT, "include", "training", "train.py")
HPS = {"model": "xgboost", "task": "classification", "target": "target", "num_round": 100, "eta": 0.1, "max_depth": 4}


def cold(manifest: dict, jobs: int, workers: int, work: str) -> float:
    def one(i: int) -> None:
        fold = manifest["folds"][i % len(manifest["folds"])]
        job = os.path.join(work, f"cold-{i}")
        for sub in ("model", "output/data"):
            os.makedirs(os.path.join(job, sub), exist_ok=True)
        env = dict(os.environ, SM_CHANNEL_TRAIN=fold["train_uri"], SM_CHANNEL_VALIDATION=fold["validation_uri"],
                   SM_MODEL_DIR=os.path.join(job, "model"), SM_OUTPUT_DATA_DIR=os.path.join(job, "output/data"),
                   SM_HPS=json.dumps(HPS), SM_NUM_CPUS=str(max(1, (os.cpu_count() or 1) // workers)),
                   OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // workers)))
        argv = [sys.executable, SCRIPT] + [x for k, v in HPS.items() for x in (f"--{k}", str(v))]
        subprocess.run(argv, env=env, check=True, capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(jobs)))
    return time.perf_counter() - start


def warm(manifest: dict, jobs: int, workers: int, work: str, prestart: bool) -> float:
    backend = LocalBackend(os.path.join(work, "warm" + ("-pre" if prestart else "")), max_parallel_jobs=workers)
    try:
        if prestart:
            backend.prestart(wait=True)  # a pool already warm from an earlier task, like SageMaker's
        start = time.perf_counter()
        names = []
        for i in range(jobs):
            fold = manifest["folds"][i % len(manifest["folds"])]
            name = f"bench-{'p' if prestart else 'w'}-{i}"
            backend.submit(JobSpec(name, SCRIPT, HPS, {"train": fold["train_uri"], "validation": fold["validation_uri"]}))
            names.append(name)
        pending = set(names)
        while pending:
            for d in backend.wait(sorted(pending), timeout=5):
                if d.status != "Completed":
                    raise RuntimeError(f"{d.name}: {d.failure_reason}")
                pending.discard(d.name)
        return time.perf_counter() - start
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 jobs per batch, 2 repetitions")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per batch, default 40, quick 6")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions of the three batches "
                        "(default 3, quick 2); the order rotates every repetition")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    args.jobs = args.jobs or (6 if args.quick else 40)
    reps = args.reps or (2 if args.quick else 3)
    sides = ["cold", "warm", "prewarmed"]
    times: dict[str, list[float]] = {s: [] for s in sides}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        manifest = split_dataset(os.path.join(ROOT, "include", "data", "breast_cancer.csv"), os.path.join(work, "folds"),
                                 target="target", folds=5, seed=0)
        for rep in range(reps):
            order = sides[rep % 3:] + sides[: rep % 3]  # each side goes first once in three repetitions
            for side in order:
                sub = os.path.join(work, f"{side}-{rep}")
                os.makedirs(sub)
                if side == "cold":
                    times[side].append(cold(manifest, args.jobs, args.workers, sub))
                else:
                    times[side].append(warm(manifest, args.jobs, args.workers, sub, prestart=side == "prewarmed"))
            print(f"  rep {rep + 1} ({', '.join(order)}): cold {times['cold'][-1]:.2f} s, warm {times['warm'][-1]:.2f} s "
                  f"(x{times['cold'][-1] / times['warm'][-1]:.1f}), already warm {times['prewarmed'][-1]:.2f} s "
                  f"(x{times['cold'][-1] / times['prewarmed'][-1]:.1f})", flush=True)
    t_cold, t_warm, t_pre = (statistics.median(times[s]) for s in sides)
    ratios = [c / p for c, p in zip(times["cold"], times["prewarmed"], strict=True)]
    print(f"{args.jobs} fold jobs per batch (xgboost, breast cancer), {args.workers} at a time, {os.cpu_count()} CPUs, "
          f"{reps} interleaved repetitions, medians; load average at start {load:.1f}")
    print(f"  cold process per job      : {t_cold:7.2f} s  ({t_cold / args.jobs * 1000:6.0f} ms/job)")
    print(f"  warm pool (incl. startup) : {t_warm:7.2f} s  ({t_warm / args.jobs * 1000:6.0f} ms/job)   "
          f"speed-up x{t_cold / t_warm:.1f}")
    print(f"  warm pool (already warm)  : {t_pre:7.2f} s  ({t_pre / args.jobs * 1000:6.0f} ms/job)   "
          f"speed-up x{t_cold / t_pre:.1f}")
    print(f"  already-warm speed-up per repetition: {', '.join(f'x{r:.1f}' for r in ratios)} "
          f"(target x10: {'PASS' if statistics.median(ratios) >= 10 else 'MISS'})")


if __name__ == "__main__":
    main()
