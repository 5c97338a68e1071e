"""cvtune (local warm pool) vs Optuna + cross_val_score(n_jobs=2) on Optuna's own TPE candidates.

    python benchmarks/vs_optuna.py [--quick] [--trials 30] [--rows 20000] [--reps 1]

Optuna's TPESampler (seed 0, the example config's xgboost space: eta, min_child_weight, subsample,
colsample_bytree, lambda, max_depth; num_round 100) proposes 30 candidates, each scored by
``cross_val_score(XGBClassifier(tree_method="hist", n_jobs=1, random_state=0, ...), cv=<cvtune's
5 folds as row indices>, scoring="roc_auc", n_jobs=2)``. cvtune then evaluates exactly those
candidates (a ``FixedProposer`` over Optuna's list, so the work is identical) on the same fold
rows through the local warm pool (2 fold jobs at a time, the training script with
``train_metrics: false``), once with ``early_stopping: off`` and once with ``wilcoxon``. The sides
run interleaved, alternating which goes first, ``--reps`` times; medians are reported. Fold scores
of the ``off`` run are compared with Optuna's per candidate.

Target (issue 14): cvtune / Optuna <= 1.0 (with early stopping off); the wilcoxon run is reported
beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import XGB_RANGES, begin, median, remove_jobs, run_tuner, tuning_config  # noqa: E402
from vs_gridsearch import build_data, fold_indices  # noqa: E402

TARGET_RATIO = 1.0


def optuna_side(X, y, cv, trials: int, rounds: int, space) -> tuple[list[dict], list[float], float]:
    """(candidates in cvtune's parameter names, their mean CV AUC, wall seconds)."""
    import optuna
    from _inprocess import training_script
    from sklearn.model_selection import cross_val_score
    from xgboost import XGBClassifier

    script = training_script()
    distributions = space.distributions()

    def objective(trial):
        internal = {name: trial._suggest(name, d) for name, d in distributions.items()}
        params = space.from_internal(internal)
        settings = script.resolve_hyperparameters(
            {"model": "xgboost", "task": "classification", "target": "target", "num_round": rounds, "seed": 0, **params}
        )
        model = XGBClassifier(tree_method="hist", n_jobs=1, random_state=0, **settings["estimator_params"])
        trial.set_user_attr("params", params)
        return float(cross_val_score(model, X, y, cv=cv, scoring="roc_auc", n_jobs=2).mean())

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    return [t.user_attrs["params"] for t in study.trials], [t.value for t in study.trials], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 trials, 2,000 rows, 10 rounds")
    parser.add_argument("--trials", type=int, default=None, help="default 30, quick 4")
    parser.add_argument("--rows", type=int, default=None, help="default 20000, quick 2000")
    parser.add_argument("--rounds", type=int, default=None, help="num_round, default 100, quick 10")
    parser.add_argument("--reps", type=int, default=1, help="interleaved repetitions")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 30)
    rows = args.rows or (2000 if args.quick else 20000)
    rounds = args.rounds or (10 if args.quick else 100)
    begin("vs_optuna")

    from cvtune.folds import split_dataset
    from cvtune.local.backend import LocalBackend
    from cvtune.proposers import FixedProposer

    with tempfile.TemporaryDirectory(prefix="cvtune-vsopt-") as work:
        X, y, csv = build_data(rows, work)
        manifest = split_dataset(csv, os.path.join(work, "folds"), target="target", folds=5, seed=0)
        cv, _ = fold_indices(manifest, X, y)
        static = {"model": "xgboost", "num_round": rounds, "seed": 0, "train_metrics": False}
        configs = {
            rule: tuning_config(task="classification", metric="validation:auc", direction="Maximize", static=static,
                                ranges=XGB_RANGES, max_parallel_trials=2, max_parallel_jobs=2, seed=0, max_trials=trials,
                                early_stopping={"rule": rule})
            for rule in ("off", "wilcoxon")
        }
        space = configs["off"].space
        print(f"data: make_classification({rows} rows, 30 features), 5 stratified folds (the same rows on both sides); "
              f"{trials} TPE trials, num_round {rounds}; 2 fits at a time; {args.reps} interleaved repetition(s)")
        backend = LocalBackend(os.path.join(work, "jobs"), max_parallel_jobs=2)
        times: dict[str, list[float]] = {"optuna": [], "off": [], "wilcoxon": []}
        jobs: dict[str, int] = {}
        best: dict[str, float] = {}
        try:
            backend.prestart(wait=True)
            from sklearn.model_selection import cross_val_score
            from xgboost import XGBClassifier

            cross_val_score(XGBClassifier(n_estimators=2, n_jobs=1), X[:500], y[:500], cv=2, n_jobs=2)  # loky warm-up
            candidates = values = None
            for rep in range(args.reps):
                order = ["optuna", "off", "wilcoxon"] if rep % 2 == 0 else ["off", "wilcoxon", "optuna"]
                if candidates is None:
                    order = ["optuna"] + [s for s in order if s != "optuna"]  # cvtune needs Optuna's candidates
                for side in order:
                    if side == "optuna":
                        candidates, values, wall = optuna_side(X, y, cv, trials, rounds, space)
                        best["optuna"] = max(values)
                    else:
                        run_id = f"vsopt-{side}-{rep}"
                        summary, ledger_trials, wall = run_tuner(
                            configs[side], manifest, backend, run_id, os.path.join(work, "art"),
                            proposer=FixedProposer(candidates, source="optuna"), poll_s=1.0,
                        )
                        jobs[side] = summary["fold_jobs"]
                        best[side] = summary["best"]["mean"]
                        if side == "off":
                            by_number = sorted(ledger_trials, key=lambda t: t["number"])
                            max_diff = max(abs(t["mean"] - v) for t, v in zip(by_number, values, strict=True))
                        remove_jobs(backend, run_id)
                    times[side].append(wall)
                print(f"  rep {rep + 1}: optuna {times['optuna'][-1]:.2f} s, cvtune {times['off'][-1]:.2f} s, "
                      f"cvtune+wilcoxon {times['wilcoxon'][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        finally:
            backend.close()
    t_opt, t_off, t_wil = median(times["optuna"]), median(times["off"]), median(times["wilcoxon"])
    print()
    print(f"{'':34s}{'wall (median)':>14s}{'vs Optuna':>10s}{'fold jobs':>10s}{'best mean AUC':>15s}")
    print(f"{'Optuna + cross_val_score(n_jobs=2)':34s}{t_opt:13.2f}s{1.0:10.3f}{trials * 5:10d}{best['optuna']:15.6f}")
    print(f"{'cvtune, early_stopping off':34s}{t_off:13.2f}s{t_off / t_opt:10.3f}{jobs['off']:10d}{best['off']:15.6f}")
    print(f"{'cvtune, early_stopping wilcoxon':34s}{t_wil:13.2f}s{t_wil / t_opt:10.3f}{jobs['wilcoxon']:10d}"
          f"{best['wilcoxon']:15.6f}")
    print(f"mean CV AUC per candidate, cvtune (off) vs Optuna: max |difference| {max_diff:.3g}")
    ratio = t_off / t_opt
    print(f"ratio cvtune/Optuna: {ratio:.3f} (target <= {TARGET_RATIO}: {'PASS' if ratio <= TARGET_RATIO else 'MISS'}); "
          f"with wilcoxon: {t_wil / t_opt:.3f}")


if __name__ == "__main__":
    main()
