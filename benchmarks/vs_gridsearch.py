"""cvtune (local warm pool, one job per fold) vs scikit-learn's GridSearchCV on the same grid and folds.

    python benchmarks/vs_gridsearch.py [--quick] [--reps N] [--rows N] [--rounds N]

Both sides evaluate the SAME candidates (an xgboost grid over max_depth x eta, num_round fixed,
in cvtune's Grid order) on the SAME fold rows (GridSearchCV gets ``cv=`` the (train, validation)
row indices recovered from cvtune's fold files, verified row by row), with the same model
(``XGBClassifier(tree_method="hist", n_jobs=1, random_state=0)``) and two fits at a time
(cvtune: ``LocalBackend(max_parallel_jobs=2)``; sklearn: ``GridSearchCV(n_jobs=2)``, loky).

Like for like: cvtune's jobs run with the training script's ``train_metrics: false`` (score the
validation fold only), because GridSearchCV's ``return_train_score`` defaults to False and it
scores only the held-out fold. The script's default (true) also scores the train channel.

Both pools are warmed up before timing (cvtune: ``prestart``; sklearn: an untimed tiny
GridSearchCV that starts the loky workers and imports xgboost there), and the two sides run
interleaved, alternating which goes first, ``--reps`` times; medians are reported. The one-off
fold split (in Airflow its own task) is timed separately and not part of the ratio.

Then the wall time is decomposed: model fitting (both sides), cvtune's in-job extras (CSV reading,
train/validation metrics, model saving: ``total_seconds - fit_seconds`` from each job's
metadata.json), per-job process overhead (job wall - script time: fork, state files), and idle
slot time (2 x wall - busy time), plus micro-measurements of a no-op job and of a fold's CSV read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, median, quiet, remove_jobs, run_tuner, tuning_config, write_csv  # noqa: E402

TARGET_RATIO = 1.10
SCORE_TOLERANCE = 1e-9


def build_data(rows: int, work: str):
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=30, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["target"] = y.astype(np.int64)
    return X, y, write_csv(frame, os.path.join(work, "data", "synthetic.csv"))


def fold_indices(manifest: dict, X, y) -> tuple[list[tuple], bool]:
    """(train, validation) row positions of each cvtune fold, read back from the fold CSVs.

    Each validation row is located in X by its exact bytes; train is the complement. Then both
    files are compared to X[positions] / y[positions] exactly (values and order), and the
    positions to StratifiedKFold(shuffle=True, random_state=seed), which is what cvtune uses.
    """
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold

    where = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(X))}
    if len(where) != len(X):
        raise SystemExit("duplicate rows in X: cannot locate fold rows by value")
    features = [f"f{i}" for i in range(X.shape[1])]
    out = []
    for fold in manifest["folds"]:
        valid = pd.read_csv(os.path.join(fold["validation_uri"], "data.csv"))
        train = pd.read_csv(os.path.join(fold["train_uri"], "data.csv"))
        vx = np.ascontiguousarray(valid[features].to_numpy(dtype="float64"))
        v_idx = np.array([where[row.tobytes()] for row in vx])
        t_idx = np.setdiff1d(np.arange(len(X)), v_idx)
        ok = (
            np.array_equal(train[features].to_numpy(dtype="float64"), X[t_idx])
            and np.array_equal(train["target"].to_numpy(), y[t_idx])
            and np.array_equal(vx, X[v_idx])
            and np.array_equal(valid["target"].to_numpy(), y[v_idx])
            and len(train) == fold["train_rows"]
            and len(valid) == fold["validation_rows"]
        )
        if not ok:
            raise SystemExit(f"fold {fold['fold']}: the fold files do not match the recovered row positions")
        out.append((t_idx, v_idx))
    seed = manifest["split"]["seed"]
    reference = list(StratifiedKFold(len(out), shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    same = all(
        np.array_equal(np.sort(a[1]), b[1]) and np.array_equal(a[0], b[0]) for a, b in zip(out, reference, strict=True)
    )
    return out, same


def sklearn_search(X, y, cv, candidates, rounds: int):
    from sklearn.model_selection import GridSearchCV
    from xgboost import XGBClassifier

    grid = [{"max_depth": [int(c["max_depth"])], "learning_rate": [float(c["eta"])]} for c in candidates]
    search = GridSearchCV(
        XGBClassifier(tree_method="hist", n_jobs=1, random_state=0, n_estimators=rounds),
        param_grid=grid,
        scoring="roc_auc",
        cv=cv,
        n_jobs=2,
        refit=False,
        error_score="raise",
    )
    start = time.perf_counter()
    search.fit(X, y)
    return search, time.perf_counter() - start


def pipeline_search(X, y, cv, candidates, rounds: int):
    """GridSearchCV over the training script's own pipeline (median imputer + model, as
    ``train.py``'s ``build_pipeline`` makes it) on a DataFrame: the script's design without cvtune's
    orchestration, so the two are told apart."""
    import pandas as pd
    from _inprocess import training_script
    from sklearn.model_selection import GridSearchCV

    script = training_script()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    pipeline = script.build_pipeline("xgboost", "classification", list(frame.columns), [],
                                     {"n_estimators": rounds}, 0, 1)
    grid = [{"model__max_depth": [int(c["max_depth"])], "model__learning_rate": [float(c["eta"])]} for c in candidates]
    search = GridSearchCV(pipeline, param_grid=grid, scoring="roc_auc", cv=cv, n_jobs=2, refit=False, error_score="raise")
    start = time.perf_counter()
    search.fit(frame, y)
    return search, time.perf_counter() - start


def job_breakdown(backend, trials) -> dict[str, float]:
    """Sums over a cvtune run's fold jobs: job wall, script total, fit (from metadata.json)."""
    wall = total = fit = 0.0
    n = 0
    for trial in trials:
        for job in trial["fold_jobs"]:
            meta_path = os.path.join(backend.job_dir(job["job_name"]), "model", "metadata.json")
            with open(meta_path) as f:
                meta = json.load(f)
            wall += job["end_time"] - job["start_time"]
            total += meta["total_seconds"]
            fit += meta["fit_seconds"]
            n += 1
    return {"jobs": n, "job_wall": wall, "script": total, "fit": fit}


def time_ledger_saves() -> list[float]:
    """Record the duration of every RunLedger.save in this process (the tuner saves after each change)."""
    from cvtune.ledger import RunLedger

    saves: list[float] = []
    original = RunLedger.save

    def timed(self, **kwargs) -> None:
        t = time.perf_counter()
        original(self, **kwargs)
        saves.append(time.perf_counter() - t)

    RunLedger.save = timed
    return saves


def noop_jobs(backend, work: str, count: int) -> float:
    """Seconds per job (2 at a time) of a script that only prints a metric, through the warm pool."""
    from cvtune.backends.base import JobSpec

    script = os.path.join(work, "noop.py")
    with open(script, "w") as f:
        f.write('print("validation:auc=0.5;")\n')
    channel = os.path.join(work, "noop-data")
    os.makedirs(channel, exist_ok=True)
    names = [f"noop-{time.monotonic_ns()}-{i}" for i in range(count)]
    start = time.perf_counter()
    for name in names:
        backend.submit(JobSpec(name, script, {}, {"train": channel}))
    pending = set(names)
    while pending:
        for d in backend.wait(sorted(pending), timeout=5):
            pending.discard(d.name)
    return (time.perf_counter() - start) / count


def micro(manifest: dict, repeats: int = 5) -> dict[str, float]:
    """Median seconds of what train.py does besides fitting, on fold 0."""
    import pandas as pd
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
    from xgboost import XGBClassifier

    fold = manifest["folds"][0]
    train_csv = os.path.join(fold["train_uri"], "data.csv")
    valid_csv = os.path.join(fold["validation_uri"], "data.csv")
    read, metrics = [], []
    train = None
    for _ in range(repeats):
        t = time.perf_counter()
        train, _ = pd.read_csv(train_csv), pd.read_csv(valid_csv)
        read.append(time.perf_counter() - t)
    x, yt = train.drop(columns=["target"]).to_numpy(), train["target"].to_numpy()
    model = XGBClassifier(tree_method="hist", n_jobs=1, random_state=0, n_estimators=100, max_depth=4).fit(x, yt)
    for _ in range(repeats):
        t = time.perf_counter()
        proba = model.predict_proba(x).astype("float64")
        proba = proba / proba.sum(axis=1, keepdims=True)
        roc_auc_score(yt, proba[:, 1])
        log_loss(yt, proba, labels=[0, 1])
        predicted = proba.argmax(axis=1)
        accuracy_score(yt, predicted)
        f1_score(yt, predicted)
        metrics.append(time.perf_counter() - t)
    return {"csv_read": median(read), "train_metrics": median(metrics), "train_rows": len(train)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 candidates, 5,000 rows, 2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 3, quick 2)")
    parser.add_argument("--rows", type=int, default=None, help="default 20000, quick 5000")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--queue-ahead", type=int, default=0,
                        help="the local backend's queue_ahead (default 0, its default): jobs queued beyond the "
                             "2 slots, so a freed worker starts the next job before the tuner recorded the last")
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 3)
    rows = args.rows or (5000 if args.quick else 20000)
    depths = (3, 4) if args.quick else (3, 4, 5)
    etas = ["0.1", "0.3"] if args.quick else ["0.05", "0.1", "0.2", "0.3"]
    quiet()

    from cvtune.folds import split_dataset
    from cvtune.local.backend import LocalBackend

    print(f"vs_gridsearch: {datetime.date.today()}, {machine()}")
    with tempfile.TemporaryDirectory(prefix="cvtune-bench-") as work:
        X, y, csv = build_data(rows, work)
        t = time.perf_counter()
        manifest = split_dataset(csv, os.path.join(work, "folds"), target="target", folds=5, seed=0)
        t_split = time.perf_counter() - t
        cv, same_as_sklearn = fold_indices(manifest, X, y)
        print(f"data: make_classification({rows} rows, 30 features), 5 stratified folds, split {t_split:.2f} s "
              f"(one-off, not in the ratio)")
        print(f"fold rows: fold files == X[train] / X[validation] exactly for all folds; "
              f"== StratifiedKFold(shuffle, seed 0): {same_as_sklearn}")

        ranges = {
            "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": str(depths[0]), "MaxValue": str(depths[-1])}],
            "ContinuousParameterRanges": [
                {"Name": "eta", "MinValue": etas[0], "MaxValue": etas[-1], "GridValues": [float(e) for e in etas]}
            ],
        }
        config = tuning_config(
            task="classification", metric="validation:auc", direction="Maximize",
            static={"model": "xgboost", "num_round": args.rounds, "seed": 0, "train_metrics": False}, ranges=ranges,
            strategy="Grid", max_parallel_trials=2, max_parallel_jobs=2, seed=0,
        )
        candidates = config.space.grid(config.seed)  # the order cvtune's Grid proposer uses
        print(f"candidates: {len(candidates)} (max_depth {list(depths)} x eta {etas}), num_round {args.rounds}, "
              f"{len(candidates) * 5} fits per side, 2 at a time; {reps} interleaved repetitions")
        print("like for like: cvtune train_metrics=false (validation fold only), "
              "as GridSearchCV's return_train_score=False")

        saves = time_ledger_saves()
        backend = LocalBackend(os.path.join(work, "jobs"), max_parallel_jobs=2, job_cleanup="keep",  # breakdown reads metadata.json
                               queue_ahead=args.queue_ahead)
        print(f"local backend: max_parallel_jobs 2, queue_ahead {args.queue_ahead}")
        try:
            t = time.perf_counter()
            backend.prestart(wait=True)
            t_prestart = time.perf_counter() - t
            t = time.perf_counter()
            sklearn_search(X[:2000], y[:2000], 2, candidates[:2], 5)  # start loky workers, import xgboost there
            t_loky = time.perf_counter() - t

            cv_times, sk_times, pipe_times, breakdowns, sk_busy, orchestrator = [], [], [], [], [], []
            summary = trials = search = None
            for rep in range(reps):
                sides = ["cvtune", "sklearn", "pipeline"]
                order = sides[rep % 3:] + sides[: rep % 3]  # each side goes first in turn
                for side in order:
                    if side == "cvtune":
                        run_id = f"grid-{rep}"
                        saves.clear()
                        cpu = time.process_time()
                        summary, trials, wall = run_tuner(
                            config, manifest, backend, run_id, os.path.join(work, "artifacts"), poll_s=1.0
                        )
                        orchestrator.append((time.process_time() - cpu, len(saves), sum(saves)))
                        breakdowns.append(job_breakdown(backend, trials))
                        remove_jobs(backend, run_id)
                        cv_times.append(wall)
                    elif side == "pipeline":
                        pipe_search, wall = pipeline_search(X, y, cv, candidates, args.rounds)
                        pipe_times.append(wall)
                    else:
                        search, wall = sklearn_search(X, y, cv, candidates, args.rounds)
                        r = search.cv_results_
                        sk_busy.append(
                            (sum(r["mean_fit_time"]) * 5, sum(r["mean_score_time"]) * 5)
                        )
                        sk_times.append(wall)
                print(f"  rep {rep + 1}: cvtune {cv_times[-1]:6.2f} s   sklearn {sk_times[-1]:6.2f} s   "
                      f"sklearn pipeline {pipe_times[-1]:6.2f} s   ratio {cv_times[-1] / sk_times[-1]:.3f} "
                      f"(vs pipeline {cv_times[-1] / pipe_times[-1]:.3f}; load {os.getloadavg()[0]:.1f})", flush=True)

            # correctness: same candidates, same fold scores, same best
            r = search.cv_results_
            max_diff = 0.0
            for i, trial in enumerate(sorted(trials, key=lambda t: t["number"])):
                assert float(trial["params"]["eta"]) == r["params"][i]["learning_rate"]
                assert int(trial["params"]["max_depth"]) == r["params"][i]["max_depth"]
                for k in range(5):
                    max_diff = max(max_diff, abs(trial["fold_scores"][k] - r[f"split{k}_test_score"][i]))
            best_sk = r["params"][int(r["rank_test_score"].argmin())]
            best_cv = summary["best"]["params"]
            same_best = float(best_cv["eta"]) == best_sk["learning_rate"] and int(best_cv["max_depth"]) == best_sk["max_depth"]

            noop = noop_jobs(backend, work, 20)
        finally:
            backend.close()
        m = micro(manifest)

    t_cv, t_sk, t_pipe = median(cv_times), median(sk_times), median(pipe_times)
    ratio = t_cv / t_sk
    pipe_diff = max(abs(a - b) for k in range(5)
                    for a, b in zip(pipe_search.cv_results_[f"split{k}_test_score"], search.cv_results_[f"split{k}_test_score"],
                                    strict=True))
    n_jobs = len(candidates) * 5
    b = {k: median(d[k] for d in breakdowns) for k in ("job_wall", "script", "fit")}
    sk_fit, sk_score = median(f for f, _ in sk_busy), median(s for _, s in sk_busy)
    print()
    print(f"wall time, median of {reps}: cvtune {t_cv:.2f} s, GridSearchCV(n_jobs=2) {t_sk:.2f} s")
    print(f"ratio cvtune/sklearn: {ratio:.3f}   (target <= {TARGET_RATIO:.2f}: {'PASS' if ratio <= TARGET_RATIO else 'MISS'})")
    print(f"third column: GridSearchCV on the script's imputer + model pipeline {t_pipe:.2f} s: "
          f"pipeline/bare {t_pipe / t_sk:.3f} (the script's design), cvtune/pipeline {t_cv / t_pipe:.3f} "
          f"(orchestration and per-job I/O); its fold scores vs the bare model's: max |difference| {pipe_diff:.3g}")
    print(f"pool warm-up before timing (not in the ratio): cvtune prestart {t_prestart:.2f} s, loky first call {t_loky:.2f} s")
    print(f"best candidate: cvtune {{max_depth: {best_cv['max_depth']}, eta: {best_cv['eta']}}} "
          f"mean AUC {summary['best']['mean']:.6f}; sklearn {best_sk}; same: {same_best}")
    print(f"fold scores: max |cvtune - sklearn| over {n_jobs} (candidate, fold) pairs = {max_diff:.3g} "
          f"(tolerance {SCORE_TOLERANCE:g}: {'PASS' if max_diff <= SCORE_TOLERANCE and same_best else 'MISS'})")
    print()
    print(f"where the time goes ({n_jobs} fits per side, per-run sums in seconds, medians over repetitions):")
    print(f"  {'':34s}{'cvtune':>10s}{'sklearn':>10s}")
    print(f"  {'model fit':34s}{b['fit']:10.2f}{sk_fit:10.2f}")
    print(f"  {'in-job extras (cvtune: CSV read,':34s}{b['script'] - b['fit']:10.2f}{sk_score:10.2f}   "
          f"(sklearn: scoring the validation fold)")
    print(f"  {'  valid metrics, model save)':34s}")
    print(f"  {'per-job process overhead':34s}{b['job_wall'] - b['script']:10.2f}{'':>10s}   "
          f"(fork, runpy, state files: job wall - script time)")
    idle_cv = 2 * t_cv - b["job_wall"]
    idle_sk = 2 * t_sk - sk_fit - sk_score
    print(f"  {'idle slot time (2 x wall - busy)':34s}{idle_cv:10.2f}{idle_sk:10.2f}   "
          f"(scheduling, polling, ledger writes, the last wave's tail)")
    print(f"  per fit: cvtune job {b['job_wall'] / n_jobs * 1000:.0f} ms (fit {b['fit'] / n_jobs * 1000:.0f} ms), "
          f"sklearn {(sk_fit + sk_score) / n_jobs * 1000:.0f} ms (fit {sk_fit / n_jobs * 1000:.0f} ms)")
    cpu, n_saves, t_saves = (median(o[i] for o in orchestrator) for i in range(3))
    print(f"  orchestrator CPU (tuner + backend, this process): {cpu:.2f} s = {cpu / n_jobs * 1000:.0f} ms per fold job; "
          f"ledger saves: {n_saves:.0f} taking {t_saves:.2f} s")
    print("micro-measurements:")
    print(f"  no-op job through the warm pool, 2 at a time: {noop * 1000:.0f} ms/job")
    print(f"  pandas.read_csv of one fold (train {m['train_rows']} rows + validation): {m['csv_read'] * 1000:.0f} ms")
    print(f"  train-channel metrics (predict_proba on {m['train_rows']} rows, auc, logloss, accuracy, f1; "
          f"skipped here by train_metrics=false): {m['train_metrics'] * 1000:.0f} ms")
    if ratio > TARGET_RATIO:
        extra = b["script"] - b["fit"] - sk_score
        print()
        print(f"MISS by {(ratio - TARGET_RATIO) * 100:.1f} points: cvtune's extra busy time is "
              f"{extra:.1f} s of job-internal work (CSV read ~{m['csv_read'] * n_jobs:.1f} s over {n_jobs} jobs, "
              f"validation metrics, model save) + "
              f"{b['job_wall'] - b['script']:.1f} s process overhead, spread over 2 slots; "
              f"fit-time difference {b['fit'] - sk_fit:+.1f} s.")


if __name__ == "__main__":
    main()
