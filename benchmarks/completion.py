"""Run-level completion criteria: trials saved and best-score loss against spending the full budget.

    python benchmarks/completion.py [--quick] [--seeds 5] [--trials 100] [--rows 5000]
                                    [--criteria NAME ...] [--datasets ...] [--workers 2]

For each dataset (breast cancer, synthetic classification and regression with ``--rows`` rows) and
seed, one Bayesian run of ``--trials`` trials with no completion criterion (the full budget), then
one run per criterion with the same seed. Criteria: ``target`` (``target_value`` = the full run's
best minus 0.002, i.e. a user who knows what is reachable; an upper bound on what a target saves),
``not_improving`` (``max_trials_not_improving: 10``, AMT's 1 % rule), ``not_improving_0``
(the same with ``min_improvement: 0``: any improvement resets the count), ``noise`` (the
noise-aware ``convergence: noise`` with its defaults) and ``noise:SETTING=VALUE`` variants.

Same machinery as benchmarks/early_stopping.py (benchmarks/_inprocess.py): the real CVTuner,
proposer and criteria decide every trial; fold jobs run the real training script in-process on
a virtual clock, memoized per (hyperparameters, fold), so a criterion's run re-trains nothing
the full run trained (a stopped run's trials are the full run's first ones: same seed, same
scheduling). Trials saved = 1 - trials run / trials of the full run. Loss = full run's best mean
CV score - the criterion's (>= 0; in the objective's direction).

Target (issue 14): the noise-aware rule saves >= 30 % of trials at a worst (over datasets) mean
(over seeds) loss <= 0.002.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import DATASETS, begin, dataset_config, make_dataset, mean, quiet  # noqa: E402

TARGET_SAVED = 0.30
TARGET_LOSS = 0.002
QUICK_CRITERIA = ["not_improving", "noise"]
FULL_CRITERIA = ["target", "not_improving", "not_improving_0", "noise", "noise:scale=0.5", "noise:beta=4"]


def criterion_settings(name: str, full_best: float, maximize: bool) -> dict:
    base, *pairs = name.split(":")
    extra = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        extra[key] = float(value) if "." in value else int(value)
    if base == "target":
        return {"target_value": full_best - TARGET_LOSS if maximize else full_best + TARGET_LOSS}
    if base == "not_improving":
        return {"max_trials_not_improving": 10}
    if base == "not_improving_0":
        return {"max_trials_not_improving": 10, "min_improvement": 0.0}
    if base == "noise":
        return {"convergence": {"rule": "noise", **extra}}
    raise SystemExit(f"unknown criterion {name!r}")


def run_unit(dataset: str, csv: str, seed: int, criteria: list[str], trials: int) -> list[dict]:
    quiet()
    from _common import run_tuner
    from _inprocess import InProcessBackend

    from cvtune.folds import split_dataset

    out = []
    cache: dict = {}
    with tempfile.TemporaryDirectory(prefix="cvtune-cc-") as work:
        manifest = split_dataset(csv, os.path.join(work, "folds"), target="target", folds=5, seed=0)
        full_best = None
        maximize = DATASETS[dataset][2] == "Maximize"
        for criterion in ["full"] + criteria:
            settings = {} if criterion == "full" else criterion_settings(criterion, full_best, maximize)
            config = dataset_config(dataset, max_trials=trials, max_parallel_trials=2, max_parallel_jobs=2,
                                    seed=seed, **settings)
            backend = InProcessBackend(os.path.join(work, "jobs"), slots=2, cache=cache)
            run_id = "cc-" + "".join(c if c.isalnum() else "-" for c in criterion)
            t = time.perf_counter()
            summary, ledger_trials, _ = run_tuner(config, manifest, backend, run_id, os.path.join(work, "art"), poll_s=0)
            best = summary["best"]["mean"]
            if criterion == "full":
                full_best = best
            out.append({
                "dataset": dataset, "seed": seed, "criterion": criterion, "trials": len(ledger_trials),
                "best": best, "maximize": maximize, "stop": (summary.get("stop_reason") or {}).get("criterion"),
                "seconds": time.perf_counter() - t,
            })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 25 trials, 1,000-row sets, 2 datasets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per dataset (default 5, quick 1)")
    parser.add_argument("--trials", type=int, default=None, help="the budget, max_trials (default 100, quick 25)")
    parser.add_argument("--rows", type=int, default=None, help="rows of the synthetic sets (default 5000, quick 1000)")
    parser.add_argument("--criteria", nargs="+", default=None,
                        help=f"default: {' '.join(FULL_CRITERIA)} (quick: {' '.join(QUICK_CRITERIA)})")
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(DATASETS))
    parser.add_argument("--workers", type=int, default=2, help="processes running (dataset, seed) units")
    args = parser.parse_args()
    seeds = args.seeds or (1 if args.quick else 5)
    trials = args.trials or (25 if args.quick else 100)
    rows = args.rows or (1000 if args.quick else 5000)
    criteria = args.criteria or (QUICK_CRITERIA if args.quick else FULL_CRITERIA)
    datasets = args.datasets or (["breast_cancer", "classification"] if args.quick else list(DATASETS))
    begin("completion")
    print(f"{len(datasets)} datasets x {seeds} seeds; Bayesian, budget {trials} trials, 5 folds, 2 trials in "
          f"flight; synthetic sets {rows} rows; criteria: {', '.join(criteria)}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cvtune-cc-data-") as work:
        csvs = {name: make_dataset(name, rows, work) for name in datasets}
        units = sorted(((d, s) for d in datasets for s in range(seeds)), key=lambda u: u[0] == "breast_cancer")
        results: list[dict] = []
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            for f in [pool.submit(run_unit, d, csvs[d], s, criteria, trials) for d, s in units]:
                results.extend(f.result())
    wall = time.perf_counter() - start

    def cell(dataset, criterion):
        return sorted((r for r in results if r["dataset"] == dataset and r["criterion"] == criterion),
                      key=lambda r: r["seed"])

    print()
    print(f"{'dataset':15s}{'criterion':20s}{'trials':>8s}{'saved':>8s}{'best (mean)':>13s}{'mean loss':>11s}"
          f"{'worst seed':>12s}  stopped by")
    saved_all: dict[str, list[float]] = {c: [] for c in criteria}
    worst_loss = {c: 0.0 for c in criteria}
    for dataset in datasets:
        full = cell(dataset, "full")
        print(f"{dataset:15s}{'full budget':20s}{mean(r['trials'] for r in full):8.1f}{'':8s}"
              f"{mean(r['best'] for r in full):13.5f}")
        for criterion in criteria:
            rows_ = cell(dataset, criterion)
            losses = [(f["best"] - r["best"]) * (1 if r["maximize"] else -1) for r, f in zip(rows_, full, strict=True)]
            saved = 1 - sum(r["trials"] for r in rows_) / sum(f["trials"] for f in full)
            saved_all[criterion].append(saved)
            worst_loss[criterion] = max(worst_loss[criterion], mean(losses))
            stops = sorted({str(r["stop"]) for r in rows_})
            print(f"{'':15s}{criterion:20s}{mean(r['trials'] for r in rows_):8.1f}{saved * 100:7.1f}%"
                  f"{mean(r['best'] for r in rows_):13.5f}{mean(losses):+11.5f}{max(losses):+12.5f}  {', '.join(stops)}")
    print()
    print(f"all datasets: {'criterion':20s}{'saved':>8s}{'worst mean loss':>17s}   target")
    for criterion in criteria:
        saved = mean(saved_all[criterion])
        verdict = ""
        if criterion == "noise":
            verdict = "PASS" if saved >= TARGET_SAVED and worst_loss[criterion] <= TARGET_LOSS else "MISS"
        print(f"{'':14s}{criterion:20s}{saved * 100:7.1f}%{worst_loss[criterion]:+17.5f}   {verdict}")
    print(f"(target for noise: >= {TARGET_SAVED:.0%} of trials saved, mean loss over seeds <= {TARGET_LOSS} on "
          f"every dataset; saved = mean over datasets)")
    print(f"wall {wall:.0f} s with {args.workers} processes")


if __name__ == "__main__":
    main()
