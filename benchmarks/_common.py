"""Helpers shared by the benchmark scripts (not a benchmark itself).

The benchmarks run the real cvtune core (``plugins/cvtune``) with the real training script
``include/training/train.py``, on the local warm-pool backend or, where thousands of fold jobs are
needed, on ``_inprocess.InProcessBackend``; this module only builds datasets and tuning configs,
runs a tuner, and formats figures.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
import statistics
import sys
import time
import warnings
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, "plugins")
if PLUGINS not in sys.path:
    sys.path.insert(0, PLUGINS)

TRAIN_SCRIPT = os.path.join(ROOT, "include", "training", "train.py")
BREAST_CANCER_CSV = os.path.join(ROOT, "include", "data", "breast_cancer.csv")

CLASSIFICATION_METRICS = ("auc", "logloss", "accuracy", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")

# The example config's xgboost space (include/configs/breast_cancer_xgboost.yaml).
XGB_RANGES: dict[str, list[dict[str, str]]] = {
    "ContinuousParameterRanges": [
        {"Name": "eta", "MinValue": "0.01", "MaxValue": "0.5", "ScalingType": "Logarithmic"},
        {"Name": "min_child_weight", "MinValue": "0.5", "MaxValue": "10", "ScalingType": "Logarithmic"},
        {"Name": "subsample", "MinValue": "0.5", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "colsample_bytree", "MinValue": "0.3", "MaxValue": "1.0", "ScalingType": "Linear"},
        {"Name": "lambda", "MinValue": "0.01", "MaxValue": "10", "ScalingType": "Logarithmic"},
    ],
    "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "8", "ScalingType": "Linear"}],
}


def quiet() -> None:
    """Keep benchmark output to the figures: no per-trial log lines, no library warnings."""
    logging.basicConfig(level=logging.WARNING)
    for name in ("cvtune", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


def begin(name: str) -> None:
    """Start a tuning benchmark: :func:`quiet`, one OpenMP thread per process (a fold job gets one
    core on the local backend, and worker processes must not oversubscribe the machine), and the
    header line naming the benchmark, the date and the machine."""
    quiet()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"{name}: {datetime.date.today()}, {machine()}")


def metric_definitions(task: str) -> list[dict[str, str]]:
    names = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    return [
        {"Name": f"{channel}:{m}", "Regex": f"{channel}:{m}=([-+0-9.eE]+);"}
        for channel in ("validation", "train")
        for m in names
    ]


def tuning_config(
    *,
    task: str,
    metric: str,
    direction: str,
    static: dict[str, Any],
    ranges: dict[str, Any] | None = None,
    **settings: Any,
):
    """A validated :class:`cvtune.config.TuningConfig` for the generic training script."""
    from cvtune.config import load_config

    data = {
        "entry_point": TRAIN_SCRIPT,
        "static_hyperparameters": {"task": task, "target": "target", **static},
        "objective": {"metric": metric, "type": direction},
        "metric_definitions": metric_definitions(task),
        "parameter_ranges": ranges or XGB_RANGES,
        "max_runtime_s": 900,
        **settings,
    }
    return load_config(data)


def write_csv(frame, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def run_tuner(config, manifest: dict, backend, run_id: str, artifact_root: str, proposer=None, poll_s: float = 2.0):
    """Run one tuning run to the end; returns (summary, ledger trials, wall seconds)."""
    from cvtune.tuner import CVTuner

    start = time.perf_counter()
    tuner = CVTuner(
        config, manifest, backend, run_id=run_id, artifact_root=artifact_root, proposer=proposer, poll_s=poll_s
    )
    summary = tuner.run()
    return summary, tuner.ledger.trials, time.perf_counter() - start


def remove_jobs(backend, run_id: str) -> None:
    """Delete a finished run's job directories (models, logs): long benchmarks run thousands of jobs.

    A run ends when its last result is read, which can be a moment before that job's worker has
    reported the end; wait for the pool to be idle so no worker is still writing into a directory."""
    deadline = time.monotonic() + 30
    while backend.stats["workers_busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    prefix = run_id + "-t"
    for name in os.listdir(backend.work_dir):
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(backend.work_dir, name), ignore_errors=True)


# The datasets of the benchmarks that tune: name -> (task, objective metric, direction).
DATASETS: dict[str, tuple[str, str, str]] = {
    "breast_cancer": ("classification", "validation:auc", "Maximize"),
    "classification": ("classification", "validation:auc", "Maximize"),
    "regression": ("regression", "validation:r2", "Maximize"),
}


def make_dataset(name: str, rows: int, work: str) -> str:
    """CSV of a benchmark dataset: scikit-learn's breast cancer (the repo's copy, 569 rows) or a
    synthetic ``make_classification`` / ``make_regression`` set of ``rows`` rows."""
    if name == "breast_cancer":
        return BREAST_CANCER_CSV
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification, make_regression

    if name == "classification":
        X, y = make_classification(n_samples=rows, n_features=12, n_informative=6, n_redundant=2,
                                   flip_y=0.05, class_sep=0.8, random_state=0)
        y = y.astype(np.int64)
    elif name == "regression":
        X, y = make_regression(n_samples=rows, n_features=12, n_informative=8, noise=30.0, random_state=0)
        # a curved target, so tree depth and learning rate matter as they do on real data
        y = y + 0.02 * y**2 / np.std(y)
    else:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["target"] = y
    return write_csv(frame, os.path.join(work, "data", name, "data.csv"))


def dataset_config(name: str, *, num_round: int = 100, **settings: Any):
    """The example config's xgboost space and settings (include/configs/breast_cancer_xgboost.yaml)
    with the dataset's task and objective."""
    task, metric, direction = DATASETS[name]
    return tuning_config(task=task, metric=metric, direction=direction,
                         static={"model": "xgboost", "num_round": num_round, "seed": 0}, **settings)


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def mean(values) -> float:
    values = list(values)
    return statistics.fmean(values) if values else float("nan")


def machine() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )
