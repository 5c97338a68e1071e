"""Bayesian vs Random: trials needed to reach 99.5 % of the best score of 100 random trials.

    python benchmarks/bayes_vs_random.py [--quick] [--seeds 5] [--trials 100] [--dataset classification]
                                         [--rows 3000] [--thresholds 0.995 0.999] [--workers 2]

Per seed: a Random run of ``--trials`` trials over the example config's xgboost space
(include/configs/breast_cancer_xgboost.yaml: 6 parameters, num_round 100, 5 folds, 2 trials at a
time, early stopping off) sets the target, ``threshold x`` its best mean CV score. Then
"trials needed" for each strategy is the smallest n such that one of its first n trials (in the
order they were asked) reached the target: for Random, in that same run; for Bayesian (Optuna's
multivariate TPE with the constant liar, cvtune's default), in a run with the same seed that ends
as soon as the answer is known, or after ``--trials`` trials (then "not reached": > trials).
Medians over seeds, and their ratio, are printed. TPE's first 10 trials are its random startup,
which with the same seed are the Random run's first 10 candidates: the two strategies can only
differ from trial 11 on, so a target Random reaches within 10 trials gives both the same count.

The default dataset is a synthetic make_classification set (3,000 rows, 12 features, 5 % label
noise): on scikit-learn's breast cancer (``--dataset breast_cancer``) almost any candidate is
within 0.5 % of the best AUC, so both strategies need a trial or two and nothing is compared.

What is real (see benchmarks/_inprocess.py): the real CVTuner and Optuna proposers choose every
candidate, and every fold score is the real training script's (its functions run in-process on
the fold files); only the process machinery is left out and time is virtual.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import DATASETS, begin, dataset_config, make_dataset, quiet  # noqa: E402


def reached(value: float, target: float, maximize: bool) -> bool:
    return value >= target if maximize else value <= target


def trials_to_reach(trials: list[dict], target: float, maximize: bool) -> int | None:
    """Smallest n whose first n trials (by number) hold one reaching ``target``; ``None`` while
    that is not known yet (an earlier trial still running) or not reached."""
    for trial in sorted(trials, key=lambda t: t["number"]):
        if trial["state"] == "Running":
            return None
        if trial["state"] == "Completed" and reached(trial["mean"], target, maximize):
            return trial["number"] + 1
    return None


def run_seed(dataset: str, csv: str, seed: int, trials: int, thresholds: list[float]) -> dict:
    quiet()
    from _common import run_tuner
    from _inprocess import InProcessBackend

    from cvtune.folds import split_dataset
    from cvtune.tuner import CVTuner

    with tempfile.TemporaryDirectory(prefix="cvtune-bvr-") as work:
        manifest = split_dataset(csv, os.path.join(work, "folds"), target="target", folds=5, seed=0)
        cache: dict = {}
        settings = {"max_trials": trials, "max_parallel_trials": 2, "max_parallel_jobs": 2, "seed": seed}

        t = time.perf_counter()
        config = dataset_config(dataset, strategy="Random", **settings)
        backend = InProcessBackend(os.path.join(work, "jobs"), slots=2, cache=cache)
        summary, random_trials, _ = run_tuner(config, manifest, backend, "random", os.path.join(work, "art"), poll_s=0)
        maximize = summary["objective"]["type"] == "Maximize"
        best = summary["best"]["mean"]
        # "99.5 % of the best": best x 0.995 when maximizing, best / 0.995 when minimizing
        targets = [best * th if maximize else best / th for th in thresholds]
        random_n = [trials_to_reach(random_trials, target, maximize) for target in targets]
        random_s = time.perf_counter() - t

        t = time.perf_counter()
        config = dataset_config(dataset, strategy="Bayesian", **settings)
        backend = InProcessBackend(os.path.join(work, "jobs"), slots=2, cache=cache)
        tuner = CVTuner(config, manifest, backend, run_id="bayesian", artifact_root=os.path.join(work, "art"), poll_s=0)
        inflight = tuner.start()
        bayes_n: list[int | None] = [None] * len(targets)
        while inflight:
            inflight = tuner.advance(backend.wait(inflight, timeout=0))
            bayes_n = [trials_to_reach(tuner.ledger.trials, target, maximize) for target in targets]
            if all(n is not None for n in bayes_n):
                break
        bayes_best = tuner.ledger.best_trial()["mean"]
        asked = len(tuner.ledger.trials)
        return {
            "seed": seed, "best": best, "targets": targets, "random": random_n, "bayes": bayes_n,
            "bayes_asked": asked, "bayes_best": bayes_best, "maximize": maximize,
            "seconds": (random_s, time.perf_counter() - t),
        }


def fmt(n: float, trials: int) -> str:
    return f">{trials}" if n is None or math.isinf(n) else (f"{n:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 12 trials, 600 rows")
    parser.add_argument("--seeds", type=int, default=None, help="default 5, quick 2")
    parser.add_argument("--trials", type=int, default=None, help="random trials setting the target (default 100, quick 12)")
    parser.add_argument("--dataset", default="classification", choices=list(DATASETS))
    parser.add_argument("--rows", type=int, default=None, help="rows of a synthetic dataset (default 3000, quick 600)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.995, 0.999])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = args.seeds or (2 if args.quick else 5)
    trials = args.trials or (12 if args.quick else 100)
    rows = args.rows or (600 if args.quick else 3000)
    begin("bayes_vs_random")
    size = "569 rows" if args.dataset == "breast_cancer" else f"{rows} rows"
    print(f"dataset {args.dataset} ({size}, {DATASETS[args.dataset][1]}), {seeds} seeds, {trials} random trials "
          f"per seed set the target; 5 folds, 2 trials at a time")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cvtune-bvr-data-") as work:
        csv = make_dataset(args.dataset, rows, work)
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_seed, *zip(*[(args.dataset, csv, s, trials, args.thresholds)
                                                       for s in range(seeds)], strict=True)))
    wall = time.perf_counter() - start

    print()
    head = "".join(f"{'random':>9s}{'bayesian':>10s}" for _ in args.thresholds)
    print(f"{'seed':>4s}{'best of random':>16s}" + head + f"{'bayesian best':>15s}")
    print(f"{'':20s}" + "".join(f"{f'trials to {th * 100:g} %':>19s}" for th in args.thresholds)
          + f"{'(when stopped)':>15s}")
    for r in results:
        cells = "".join(f"{fmt(a, trials):>9s}{fmt(b, trials):>10s}" for a, b in zip(r["random"], r["bayes"], strict=True))
        print(f"{r['seed']:4d}{r['best']:16.5f}{cells}{r['bayes_best']:15.5f}")
    print()
    for i, th in enumerate(args.thresholds):
        rand = statistics.median([math.inf if r["random"][i] is None else r["random"][i] for r in results])
        bayes = statistics.median([math.inf if r["bayes"][i] is None else r["bayes"][i] for r in results])
        ratio = rand / bayes if math.isfinite(rand) and math.isfinite(bayes) else float("nan")
        print(f"median trials to reach {th * 100:g} % of random's best: Random {fmt(rand, trials)}, "
              f"Bayesian {fmt(bayes, trials)}   ratio random/bayesian {ratio:.2f}")
    print(f"wall {wall:.0f} s")


if __name__ == "__main__":
    main()
