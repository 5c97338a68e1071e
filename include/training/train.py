"""Generic cvtune training script under the SageMaker script-mode contract.

The same file runs, unchanged, in two places:

* cvtune's local warm-pool backend, which executes it with
  ``runpy.run_path(path, run_name="__main__")`` in a forked worker after setting ``sys.argv`` and
  the ``SM_*`` environment variables;
* the SageMaker XGBoost framework container in script mode. Target image:
  ``sagemaker-xgboost:1.7-1`` (Python 3.8, xgboost 1.7.x; the container repository's
  requirements pin scikit-learn 0.24.1, pandas 1.2.4 and scipy 1.6.2, with pyarrow 1.0).

So this file imports nothing that image lacks: the standard library, numpy, pandas, scikit-learn,
joblib, and xgboost (only when the xgboost model is used); pyarrow is reached lazily through
``pandas.read_parquet``. It avoids APIs whose spelling changed between scikit-learn 0.24 and 1.9
or xgboost 1.7 and 3.x, and Python syntax newer than 3.8 outside annotations. The tests pass on
scikit-learn 1.1 / xgboost 1.7 / pandas 1.5 / numpy 1.23 as well as on the project's current stack.

Training
    Hyperparameters arrive as ``--name value`` arguments and as the JSON object ``SM_HPS``
    (argv wins per name). ``sagemaker_*`` names are ignored; any other unknown name is an error.
    Static: ``model``, ``task`` (required), ``target`` (required), ``seed``, ``train_metrics``
    (default true: also score the train channel; false skips that prediction, as GridSearchCV's
    ``return_train_score=False`` does; validation and test are always scored). Tuned: see
    ``HYPERPARAMETERS``. Data: every ``.csv``/``.parquet`` file (with a header) under the channel
    directories ``SM_CHANNEL_TRAIN`` (required), ``SM_CHANNEL_VALIDATION`` and ``SM_CHANNEL_TEST``
    (optional). Metrics are printed one per line as ``{channel}:{metric}={value!r};``.
    ``SM_MODEL_DIR`` receives ``model.joblib`` and ``metadata.json``; ``SM_OUTPUT_DATA_DIR``
    receives ``metrics.json``. On a user error the message goes to stderr, to
    ``{SM_OUTPUT_DATA_DIR}/../failure`` (SageMaker's ``/opt/ml/output/failure``) and the process
    exits non-zero.

Warm-worker preload (cvtune's local backend only)
    ``cvtune_preload(channels)`` is called by a warm worker before it forks each job: it parses
    the job's channel files into a bounded memo that the forked job inherits (keyed by file
    fingerprint), and warms up pandas/scikit-learn's first calls once per worker.

Inference (SageMaker framework-container handler functions; importing this module trains nothing)
    ``model_fn(model_dir)``, ``input_fn(body, content_type)`` for ``text/csv`` (headerless rows in
    feature order, or a header row naming the columns), ``application/json`` and
    ``application/jsonlines``; ``predict_fn(data, model)`` returns the positive-class probability
    (binary), the class-probability matrix (multiclass) or the predicted values (regression);
    ``output_fn(prediction, accept)`` writes ``text/csv`` (one line per record) or
    ``application/json`` (``{"predictions": [...]}``).
"""

from __future__ import annotations

import difflib
import io
import json
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, OrdinalEncoder, StandardScaler

BUNDLE_FORMAT = 1
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
# Missing categorical values become their own category, so "missing" can carry signal and the
# encoders never see NaN (old OrdinalEncoder versions reject it).
MISSING_CATEGORY = "__missing__"

MODELS = ("xgboost", "hist_gradient_boosting", "random_forest", "logistic_regression", "ridge")
TASKS = ("classification", "regression")
LINEAR_MODELS = ("logistic_regression", "ridge")
STATIC_HYPERPARAMETERS = ("model", "task", "target", "seed", "train_metrics", "exclude_columns")
DATA_SUFFIXES = (".csv", ".parquet")
JSONLINES_TYPES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")


class TrainingError(Exception):
    """A problem with the job's input (hyperparameters, data) that the user must fix."""


# ---------------------------------------------------------------------------------------------
# Hyperparameter values
# ---------------------------------------------------------------------------------------------

_INT_RE = re.compile(r"^[-+]?\d+$")


def coerce_value(value: Any) -> Any:
    """Turn a hyperparameter string into int, float or bool when it spells one.

    SageMaker hands every hyperparameter over as a string; values that already have a JSON type
    (from ``SM_HPS`` or a local caller) pass through unchanged.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    # A value JSON-encoded twice (as some SageMaker clients send strings) arrives quoted.
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, str):
            text = decoded.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INT_RE.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but "true" is never a sensible tree depth.
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _as_int(value: Any, minimum: int | None, maximum: int | None = None) -> int:
    value = coerce_value(value)
    # Tuners that format integer ranges as floats send "6.0"; accept it when it is integral.
    if _is_number(value) and float(value).is_integer():
        result = int(value)
    else:
        raise ValueError(f"expected an integer, got {value!r}")
    if minimum is not None and result < minimum:
        raise ValueError(f"must be >= {minimum}, got {result}")
    if maximum is not None and result > maximum:
        raise ValueError(f"must be <= {maximum}, got {result}")
    return result


def _as_float(value: Any, low: float | None, high: float | None, low_open: bool) -> float:
    value = coerce_value(value)
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValueError(f"expected a finite number, got {value!r}")
    result = float(value)
    if low is not None and (result <= low if low_open else result < low):
        raise ValueError(f"must be {'>' if low_open else '>='} {low}, got {result}")
    if high is not None and result > high:
        raise ValueError(f"must be <= {high}, got {result}")
    return result


def _int(minimum: int, maximum: int | None = None, none_ok: bool = False) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if none_ok and _is_none(value):
            return None
        return _as_int(value, minimum, maximum)

    return check


def _float(
    low: float | None = None, high: float | None = None, low_open: bool = False
) -> Callable[[Any], Any]:
    return lambda value: _as_float(value, low, high, low_open)


def _int_or_fraction(minimum: int) -> Callable[[Any], Any]:
    # scikit-learn reads an int as a count and a float in (0, 1] as a fraction of the samples.
    def check(value: Any) -> Any:
        value = coerce_value(value)
        if isinstance(value, float) and 0.0 < value < 1.0:
            return value
        return _as_int(value, minimum)

    return check


def _max_features(value: Any) -> Any:
    if _is_none(value):
        return None
    value = coerce_value(value)
    if isinstance(value, str) and value in ("sqrt", "log2"):
        return value
    if isinstance(value, float):
        return _as_float(value, 0.0, 1.0, low_open=True)
    if _is_number(value):
        return _as_int(value, 1)
    raise ValueError(f'expected "sqrt", "log2", a fraction in (0, 1] or a feature count, got {value!r}')


# name -> (estimator keyword, validator, default or None for the library default).
# Names follow SageMaker's built-in XGBoost for xgboost and scikit-learn elsewhere, so a tuning
# config written for one reads naturally.
HYPERPARAMETERS: dict[str, dict[str, tuple[str, Callable[[Any], Any], Any]]] = {
    "xgboost": {
        "num_round": ("n_estimators", _int(1), 100),
        "eta": ("learning_rate", _float(0.0, 1.0, low_open=True), None),
        "max_depth": ("max_depth", _int(0), None),
        "min_child_weight": ("min_child_weight", _float(0.0), None),
        "subsample": ("subsample", _float(0.0, 1.0, low_open=True), None),
        "colsample_bytree": ("colsample_bytree", _float(0.0, 1.0, low_open=True), None),
        "lambda": ("reg_lambda", _float(0.0), None),
        "alpha": ("reg_alpha", _float(0.0), None),
        "gamma": ("gamma", _float(0.0), None),
        "max_bin": ("max_bin", _int(2), None),
    },
    "hist_gradient_boosting": {
        "learning_rate": ("learning_rate", _float(0.0, low_open=True), None),
        "max_iter": ("max_iter", _int(1), None),
        "max_leaf_nodes": ("max_leaf_nodes", _int(2, none_ok=True), None),
        "max_depth": ("max_depth", _int(1, none_ok=True), None),
        "min_samples_leaf": ("min_samples_leaf", _int(1), None),
        "l2_regularization": ("l2_regularization", _float(0.0), None),
        "max_bins": ("max_bins", _int(2, 255), None),
    },
    "random_forest": {
        "n_estimators": ("n_estimators", _int(1), None),
        "max_depth": ("max_depth", _int(1, none_ok=True), None),
        "min_samples_leaf": ("min_samples_leaf", _int_or_fraction(1), None),
        "min_samples_split": ("min_samples_split", _int_or_fraction(2), None),
        "max_features": ("max_features", _max_features, None),
    },
    "logistic_regression": {
        "C": ("C", _float(0.0, low_open=True), None),
        # The library default (100) can stop lbfgs before convergence on wider one-hot data, and
        # then scores track the iteration cap instead of C.
        "max_iter": ("max_iter", _int(1), 1000),
    },
    "ridge": {
        "alpha": ("alpha", _float(0.0), None),
    },
}

TASKS_OF_MODEL = {
    "xgboost": TASKS,
    "hist_gradient_boosting": TASKS,
    "random_forest": TASKS,
    "logistic_regression": ("classification",),
    "ridge": ("regression",),
}


def parse_argv(argv: Sequence[str]) -> dict[str, str]:
    """``--name value`` / ``--name=value`` pairs, as SageMaker passes hyperparameters."""
    parsed: dict[str, str] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise TrainingError(
                f"unexpected command-line argument {token!r}: hyperparameters are passed as --name value"
            )
        if "=" in token:
            name, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
                raise TrainingError(f"hyperparameter {token} has no value: pass it as {token} VALUE")
            name, value = token[2:], tokens[i + 1]
            i += 2
        parsed[name] = value
    return parsed


def read_hyperparameters(argv: Sequence[str], environ: dict[str, str]) -> dict[str, Any]:
    """Raw hyperparameters: ``SM_HPS`` overlaid by the command line (which is what SageMaker runs)."""
    merged: dict[str, Any] = {}
    raw = environ.get("SM_HPS", "").strip()
    if raw:
        try:
            from_env = json.loads(raw)
        except ValueError as exc:
            raise TrainingError(f"SM_HPS is not valid JSON ({exc}): {raw[:200]!r}") from None
        if not isinstance(from_env, dict):
            raise TrainingError(f"SM_HPS must be a JSON object, got {type(from_env).__name__}")
        merged.update(from_env)
    merged.update(parse_argv(argv))
    return merged


def parse_column_list(value: Any) -> list[str]:
    """``exclude_columns``: a JSON list or comma-separated names (hyperparameters arrive as strings)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise TrainingError(f"bad value for hyperparameter 'exclude_columns': {text!r} is not a JSON list") from None
        else:
            value = [part.strip() for part in text.split(",")]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise TrainingError(
            f"bad value for hyperparameter 'exclude_columns': expected column names (\"id,day\" or a JSON list), got {value!r}"
        )
    return list(dict.fromkeys(value))


def resolve_hyperparameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate raw hyperparameters into a settings dict (static values, estimator kwargs, ...)."""
    ignored = sorted(name for name in raw if name.startswith("sagemaker_"))
    given = {name: value for name, value in raw.items() if not name.startswith("sagemaker_")}

    model = coerce_value(given.get("model", "xgboost"))
    if model not in MODELS:
        raise TrainingError(
            f"hyperparameter model={model!r} is not supported; choose one of: {', '.join(MODELS)}"
        )
    table = HYPERPARAMETERS[model]
    accepted = list(STATIC_HYPERPARAMETERS) + sorted(table)

    unknown = [name for name in given if name not in accepted]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, accepted, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TrainingError(
            f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(hints)} for model {model!r}; "
            f"accepted: {', '.join(accepted)}"
        )

    task = coerce_value(given.get("task"))
    if task is None:
        raise TrainingError(f"hyperparameter 'task' is required: one of {', '.join(TASKS)}")
    if task not in TASKS:
        raise TrainingError(
            f"hyperparameter task={task!r} is not supported; choose one of: {', '.join(TASKS)}"
        )
    if task not in TASKS_OF_MODEL[model]:
        raise TrainingError(
            f"model {model!r} does not support task {task!r}; it supports: {', '.join(TASKS_OF_MODEL[model])}"
        )

    target = given.get("target")
    # The column name is taken verbatim: coercing would turn a column called "1" into an int.
    if target is None or str(target).strip() == "":
        raise TrainingError("hyperparameter 'target' is required: the name of the label column")
    target = str(target).strip()

    try:
        seed = _as_int(given.get("seed", 0), 0, 2**32 - 1)
    except ValueError as exc:
        raise TrainingError(f"bad value for hyperparameter 'seed': {exc}") from None

    train_metrics = coerce_value(given.get("train_metrics", True))
    if not isinstance(train_metrics, (bool, np.bool_)):
        raise TrainingError(
            f"bad value for hyperparameter 'train_metrics': expected true or false, got {train_metrics!r}"
        )

    exclude_columns = parse_column_list(given.get("exclude_columns"))
    if target in exclude_columns:
        raise TrainingError(f"hyperparameter 'exclude_columns' names the target {target!r}; the target is never a feature")

    tuned: dict[str, Any] = {}
    estimator_params: dict[str, Any] = {}
    for name, (keyword, validate, default) in table.items():
        if name in given:
            try:
                value = validate(given[name])
            except ValueError as exc:
                raise TrainingError(
                    f"bad value for hyperparameter {name!r} of model {model!r}: {exc}"
                ) from None
        elif default is not None:
            value = default
        else:
            continue
        tuned[name] = value
        estimator_params[keyword] = value

    return {
        "model": model,
        "task": task,
        "target": target,
        "seed": seed,
        "train_metrics": bool(train_metrics),
        "exclude_columns": exclude_columns,
        "tuned": tuned,
        "estimator_params": estimator_params,
        "ignored": ignored,
    }


# ---------------------------------------------------------------------------------------------
# Environment and data
# ---------------------------------------------------------------------------------------------


def read_environment(environ: dict[str, str]) -> dict[str, Any]:
    """The ``SM_*`` variables this script uses, with SageMaker's paths as defaults."""

    def get(name: str, default: str | None = None) -> str | None:
        value = environ.get(name, "").strip()
        return value or default

    def optional_channel(name: str) -> str | None:
        value = get(f"SM_CHANNEL_{name.upper()}")
        if value:
            return value
        # Without the toolkit's variables, fall back to the /opt/ml layout only if it is there.
        default = f"/opt/ml/input/data/{name}"
        return default if os.path.isdir(default) else None

    try:
        num_cpus = max(1, int(get("SM_NUM_CPUS") or os.cpu_count() or 1))
    except ValueError:
        num_cpus = os.cpu_count() or 1
    try:
        hosts = json.loads(get("SM_HOSTS") or "[]")
    except ValueError:
        hosts = []
    channels = {
        "train": get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"),
        "validation": optional_channel("validation"),
        "test": optional_channel("test"),
    }
    return {
        "model_dir": get("SM_MODEL_DIR", "/opt/ml/model"),
        "output_data_dir": get("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"),
        "channels": {name: warm_pool_copy(name, d, environ) if d else d for name, d in channels.items()},
        "num_cpus": num_cpus,
        "hosts": hosts if isinstance(hosts, list) else [],
        "current_host": get("SM_CURRENT_HOST", platform.node()),
    }


def warm_pool_copy(name: str, directory: str, environ: dict[str, str]) -> str:
    """The channel's directory, or its copy in the warm pool's persistent cache.

    On a SageMaker warm pool ``SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY`` is a directory that
    stays on the instances from job to job, and cvtune names each channel's content in
    ``CVTUNE_CHANNEL_DIGEST_<NAME>``. The first job on a pool copies the channel there under that
    id (with ``input_mode: FastFile`` this is what fetches it from S3); every later job on the
    pool with the same content reads the copy and fetches nothing. Without either variable (a
    cold job, the local backend) the channel is read where it is.
    """
    import shutil

    cache, digest = environ.get("SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"), environ.get(f"CVTUNE_CHANNEL_DIGEST_{name.upper()}")
    if not cache or not digest or not os.path.isdir(cache) or not re.fullmatch(r"[0-9a-f]{16,128}", digest):
        return directory
    copy = os.path.join(cache, "cvtune-channels", digest)
    if os.path.isdir(copy):
        return copy
    partial = f"{copy}.partial-{os.getpid()}"
    try:
        shutil.copytree(directory, partial)
        os.replace(partial, copy)  # whole or absent: a job killed mid-copy leaves no half channel
    except OSError:  # a full volume or a race: the channel itself is as good
        shutil.rmtree(partial, ignore_errors=True)
        return directory
    return copy


def _data_files(directory: str) -> tuple[list[str], list[str]]:
    files, skipped = [], []
    for root, dirs, names in os.walk(directory):
        # Hidden and underscore entries are bookkeeping (.ipynb_checkpoints, Spark's _SUCCESS).
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in names:
            path = os.path.join(root, name)
            if name.startswith((".", "_")):
                continue
            if name.lower().endswith(DATA_SUFFIXES):
                files.append(path)
            else:
                skipped.append(path)
    files.sort(key=lambda p: os.path.relpath(p, directory))
    return files, skipped


def _file_header(path: str) -> list[str] | None:
    """Column names as the file spells them: pandas renames a repeated CSV name ``y`` to ``y.1``."""
    if path.lower().endswith(".parquet"):
        try:
            import pyarrow.parquet as pq

            return [str(n) for n in pq.read_schema(path).names]
        except Exception:  # noqa: BLE001 - no pyarrow schema: pandas' names will do
            return None
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), None)


def _read_file(path: str) -> tuple[pd.DataFrame, list[str]]:
    """One data file as pandas reads it, and its column names as the file spells them."""
    frame = pd.read_parquet(path) if path.lower().endswith(".parquet") else pd.read_csv(path)
    return frame, _file_header(path) or [str(c) for c in frame.columns]


# ---------------------------------------------------------------------------------------------
# Warm-worker preload (cvtune's local backend; see docs/training-script.md)
# ---------------------------------------------------------------------------------------------

# Parsed files kept by a warm worker, at most this many bytes (pandas' deep memory usage) and at
# most 1/8 of the machine's memory (every worker keeps its own), least recently used first out. A
# fold of 16,000 rows x 31 float columns is about 4 MB.
PRELOAD_MAX_BYTES = 512 * 2**20
# The memo lives in sys.modules, not in this file's globals: the worker calls cvtune_preload on an
# imported copy of this file, and the job child runs the file again as __main__ with fresh
# globals; both find the same entry, which the child inherits from the worker's memory by fork.
_MEMO_MODULE = "_cvtune_train_preload"
_PRELOAD_HITS = [0]  # files this process took from the memo (metadata.json's preloaded_files)


def _script_version() -> tuple[str, int, int, int] | None:
    # Parsed files are only valid for the code that parsed them: an edited script starts afresh.
    return _fingerprint(__file__)


def _memo() -> Any:
    holder = sys.modules.get(_MEMO_MODULE)
    if holder is None or holder.script != _script_version():
        import collections
        import types

        holder = types.ModuleType(_MEMO_MODULE)
        holder.frames = collections.OrderedDict()  # type: ignore[attr-defined]
        holder.sizes = {}  # type: ignore[attr-defined]
        holder.bytes = 0  # type: ignore[attr-defined]
        holder.warm = False  # type: ignore[attr-defined]
        holder.script = _script_version()  # type: ignore[attr-defined]
        sys.modules[_MEMO_MODULE] = holder
    return holder


def _fingerprint(path: str) -> tuple[str, int, int, int] | None:
    # A job's channel files are symlinks in its own tree: key by the file they point to.
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError:
        return None
    return (real, st.st_size, st.st_mtime_ns, st.st_ino)


def _preloaded(path: str) -> tuple[pd.DataFrame, list[str]] | None:
    """The worker's parsed copy of ``path`` if it holds one for the file as it is now."""
    holder = sys.modules.get(_MEMO_MODULE)
    if holder is None or not holder.frames or holder.script != _script_version():
        return None
    key = _fingerprint(path)
    hit = holder.frames.get(key) if key is not None else None
    if hit is None:
        return None
    frame, names = hit
    _PRELOAD_HITS[0] += 1
    # A shallow copy: renaming its columns must not rename the memo's frame (matters when the
    # memo is used in the same process; a forked job child has its own copy-on-write pages anyway).
    return frame.copy(deep=False), list(names)


def _warm_up() -> None:
    """Run, once per warm worker, the first calls whose one-time setup every job would pay again:
    pandas' CSV reader, the preprocessing ColumnTransformer (scikit-learn's validation and its
    dataframe-library discovery), the metric functions, joblib's pickler. On tiny inputs, and never
    xgboost: an OpenMP runtime started in the worker can hang a forked child."""
    frame = pd.read_csv(io.StringIO("a,b,c,y\n1.0,,x,0\n2.0,3.0,y,1\n3.0,1.0,x,1\n"))
    frame = frame[list(frame.columns)].reset_index(drop=True)
    labelled, target = _split_target(frame, "warm-up", "y", ["a", "b", "c"])
    _label_codes(target, [0, 1], np.unique(_integer_labels(target)))
    x, y = labelled[["a", "b", "c"]], frame["y"].to_numpy()
    for numeric, categorical in ((["a", "b"], ["c"]), (["a", "b"], [])):
        features = prepare_features(x, numeric, categorical)
        pipeline = build_pipeline("ridge", "regression", numeric, categorical, {}, 0, 1)
        preprocess = pipeline.named_steps["preprocess"]
        preprocess.fit(features)
        preprocess.transform(features)
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    classification_metrics(y, proba, 2)
    classification_metrics(np.array([0, 1, 2]), np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]]), 3)
    regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.5]))
    joblib.dump({"pipeline": pipeline}, io.BytesIO())


def cvtune_preload(channels: dict[str, str]) -> None:
    """Called by cvtune's warm worker before it forks each job (never on SageMaker): parse the
    job's channel files into a memo the job child inherits, keyed by file fingerprint (path, size,
    mtime, inode), so a worker parses each fold file once. Errors are left for the job to report."""
    holder = _memo()
    if not holder.warm:
        holder.warm = True
        try:
            _warm_up()
        except Exception:  # noqa: BLE001 - an optimisation only; the job runs the same code
            pass
    limit = PRELOAD_MAX_BYTES
    try:
        limit = min(limit, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 8)
    except (AttributeError, ValueError, OSError):  # no sysconf figure: the fixed bound alone
        pass
    for directory in channels.values():
        if not directory or not os.path.isdir(directory):
            continue
        for path in _data_files(directory)[0]:
            key = _fingerprint(path)
            if key is None:
                continue
            if key in holder.frames:
                holder.frames.move_to_end(key)
                continue
            try:
                frame, names = _read_file(path)
            except Exception:  # noqa: BLE001 - the job reads it again and reports the error
                continue
            size = int(frame.memory_usage(index=True, deep=True).sum())
            if size > limit:
                continue
            holder.frames[key] = (frame, names)
            holder.sizes[key] = size
            holder.bytes += size
            while holder.bytes > limit and holder.frames:
                old, _ = holder.frames.popitem(last=False)
                holder.bytes -= holder.sizes.pop(old, 0)


def read_channel(name: str, directory: str) -> pd.DataFrame:
    """All ``.csv``/``.parquet`` files under ``directory``, concatenated in file-name order."""
    if not os.path.isdir(directory):
        raise TrainingError(f"channel {name!r}: directory {directory} does not exist")
    files, skipped = _data_files(directory)
    if not files:
        extra = f" (found only: {', '.join(os.path.basename(p) for p in skipped[:5])})" if skipped else ""
        raise TrainingError(f"channel {name!r}: no .csv or .parquet files in {directory}{extra}")
    frames = []
    columns: list[str] | None = None
    for path in files:
        preloaded = _preloaded(path)
        if preloaded is not None:
            frame, names = preloaded
        else:
            try:
                frame, names = _read_file(path)
            except Exception as exc:  # the reader's own message names the problem; add the file
                raise TrainingError(
                    f"channel {name!r}: cannot read {path}: {type(exc).__name__}: {exc}"
                ) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise TrainingError(
                f"channel {name!r}: {os.path.basename(path)} repeats column name(s) {repeated}; "
                "give every column a unique name (a repeated target would become a feature)"
            )
        frame.columns = [str(c) for c in frame.columns]
        if columns is None:
            columns = list(frame.columns)
        elif set(frame.columns) != set(columns):
            missing = sorted(set(columns) - set(frame.columns))
            extra_cols = sorted(set(frame.columns) - set(columns))
            raise TrainingError(
                f"channel {name!r}: {os.path.basename(path)} has different columns than "
                f"{os.path.basename(files[0])} (missing: {missing}, extra: {extra_cols})"
            )
        frames.append(frame[columns])
    data = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return data.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _is_categorical_dtype(dtype: Any) -> bool:
    # bool counts as numeric for pandas, but a flag is a category, not a magnitude.
    return pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype)


def _category_string(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if not isinstance(value, (list, tuple, dict, np.ndarray)) and pd.isna(value):
        return MISSING_CATEGORY
    text = str(value)
    # pandas reads true/TRUE/True as the same bool; spell them alike whatever the parser did.
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return "True" if lowered == "true" else "False"
    return text


def prepare_features(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Feature frame with numeric columns as float64 and categorical columns as plain strings.

    Runs outside the pickled pipeline on purpose: a function or class defined in this script
    would be pickled as ``__main__.<name>`` and could not be loaded by ``model_fn`` elsewhere.
    """
    out = {}
    for column in numeric:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            converted = pd.to_numeric(series, errors="coerce")
            bad = series[converted.isna() & series.notna() & (series.astype(str).str.strip() != "")]
            if len(bad):
                raise ValueError(f"column {column!r} must be numeric; got {bad.iloc[0]!r}")
            series = converted
        out[column] = series.to_numpy(dtype="float64", na_value=np.nan)
    for column in categorical:
        out[column] = np.array([_category_string(v) for v in frame[column].tolist()], dtype=object)
    return pd.DataFrame(out, columns=list(numeric) + list(categorical), index=frame.index)


def _make_estimator(model: str, task: str, params: dict[str, Any], seed: int, n_jobs: int) -> Any:
    classification = task == "classification"
    if model == "xgboost":
        import xgboost

        cls = xgboost.XGBClassifier if classification else xgboost.XGBRegressor
        # hist is the fast CPU method in 1.7 and the default in 2.x+: same model in both.
        return cls(tree_method="hist", n_jobs=n_jobs, random_state=seed, **params)
    if model == "hist_gradient_boosting":
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        except ImportError:  # scikit-learn < 1.0 keeps it behind the experimental switch
            import sklearn.experimental.enable_hist_gradient_boosting  # noqa: F401
            from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(random_state=seed, **params)
    if model == "random_forest":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(random_state=seed, n_jobs=n_jobs, **params)
    if model == "logistic_regression":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(random_state=seed, **params)
    if model == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(**params)
    raise TrainingError(f"unknown model {model!r}")


def build_pipeline(
    model: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    params: dict[str, Any],
    seed: int,
    n_jobs: int,
) -> Pipeline:
    """Preprocessing and estimator in one pipeline, so one ``fit`` on train fits both."""
    linear = model in LINEAR_MODELS
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if linear:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("num", Pipeline(numeric_steps), list(numeric)))
    if categorical:
        # Linear models need one column per category; trees split fine on integer codes and
        # stay fast. Unknown categories at predict time must not crash a batch transform.
        encoder = (
            OneHotEncoder(handle_unknown="ignore")
            if linear
            else OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        )
        transformers.append(("cat", encoder, list(categorical)))
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline(
        [("preprocess", preprocess), ("model", _make_estimator(model, task, params, seed, n_jobs))]
    )


def _plain_numeric(pipeline: Pipeline, model: str) -> bool:
    """Whether the preprocessing is the median imputer alone (every feature numeric, no
    scaler): then, on rows without NaN, it returns its input unchanged."""
    if model in LINEAR_MODELS:
        return False
    preprocess = pipeline.named_steps["preprocess"]
    return [name for name, _, _ in preprocess.transformers] == ["num"]


def fit_pipeline(pipeline: Pipeline, features: pd.DataFrame, y: np.ndarray, model: str) -> Pipeline:
    """``pipeline.fit(features, y)``, with the median imputer's medians taken by ``np.median``
    when every feature is numeric and the train fold has no missing value.

    SimpleImputer computes medians on masked arrays: on a 16,000 x 30 fold its fit took 5-7x as
    long as ``np.median`` (100-150 ms per fold job, about a tenth of an xgboost fit), for the same
    values when nothing is masked. The fitted pipeline is the same object with the same fitted
    state (the preprocessing is fitted on the first row for its bookkeeping, then given the
    fold's medians), so predictions, metrics and the saved model are identical; any other
    case (categories, NaN, linear models with their scaler) fits the usual way.
    """
    if not _plain_numeric(pipeline, model) or len(features) < 2:
        return pipeline.fit(features, y)
    preprocess = pipeline.named_steps["preprocess"]
    values = features.to_numpy(dtype="float64")
    if np.isnan(values).any():
        return pipeline.fit(features, y)
    preprocess.fit(features.iloc[:1])
    imputer = preprocess.named_transformers_["num"].named_steps["impute"]
    imputer.statistics_ = np.median(values, axis=0)
    # What preprocess.transform(features) returns here: the median imputer leaves a fold without
    # NaN as it is (the same float64 values), so the model gets the same array without the
    # ColumnTransformer's per-call validation.
    pipeline.named_steps["model"].fit(values, y)
    return pipeline


def predict_scores(pipeline: Pipeline, features: pd.DataFrame, model: str, proba: bool) -> np.ndarray:
    """``pipeline.predict_proba(features)`` (or ``predict``), skipping the preprocessing when it
    would return the rows unchanged (plain numeric features without NaN): identical predictions,
    without the ColumnTransformer's validation on every channel."""
    if _plain_numeric(pipeline, model) and len(features):
        values = features.to_numpy(dtype="float64")
        if not np.isnan(values).any():
            estimator = pipeline.named_steps["model"]
            return estimator.predict_proba(values) if proba else estimator.predict(values)
    return pipeline.predict_proba(features) if proba else pipeline.predict(features)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def _normalize_label(value: Any) -> Any:
    # Labels are matched across channels by their text, so 1, 1.0 and "1" are the same class
    # even when one file's column was read as float because of a gap.
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _label_key(value: Any) -> str:
    return str(_normalize_label(value))


def _integer_labels(values: pd.Series) -> np.ndarray | None:
    """The labels as int64 when every one is an integer (int column, or floats like 1.0), else None.

    The vectorized twin of mapping ``_normalize_label`` over an int/float column: same classes,
    same order, no Python loop over the rows. Other columns (text, bool, mixed) return None and
    take the general path.
    """
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        if values.isna().any():
            return None
        array = values.to_numpy()
        if array.dtype.kind == "u" and len(array) and array.max() > np.iinfo(np.int64).max:
            return None
        return array.astype(np.int64)
    if not pd.api.types.is_float_dtype(dtype):
        return None
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    # Bounded well inside int64 so the cast is exact and int(value) agrees with it.
    if not (np.isfinite(array).all() and (np.abs(array) < 2.0**62).all() and (array == np.floor(array)).all()):
        return None
    return array.astype(np.int64)


def _label_codes(values: pd.Series, classes: list[Any], integer_classes: np.ndarray | None) -> np.ndarray:
    """Class index of each label (-1 for a class not seen in training), matched by ``_label_key``."""
    dtype = values.dtype
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if integer_classes is not None and numeric and not values.isna().any():
        array = values.to_numpy(dtype="float64") if pd.api.types.is_float_dtype(dtype) else values.to_numpy()
        as_int = None
        if array.dtype.kind == "f" and (np.isfinite(array) & (np.abs(array) < 2.0**62)).all():
            # A non-integral float's key ("0.5", "1e-05") is never an integer class's key.
            integral = array == np.floor(array)
            as_int = np.where(integral, array, 0).astype(np.int64)
        elif array.dtype.kind == "i" or (
            array.dtype.kind == "u" and (not len(array) or array.max() <= np.iinfo(np.int64).max)
        ):
            integral = np.ones(len(array), dtype=bool)
            as_int = array.astype(np.int64)
        if as_int is not None:
            position = np.minimum(np.searchsorted(integer_classes, as_int), len(integer_classes) - 1)
            found = integral & (integer_classes[position] == as_int)
            return np.where(found, position, -1).astype(np.int64)
    lookup = {_label_key(c): i for i, c in enumerate(classes)}
    return np.array([lookup.get(_label_key(v), -1) for v in values.tolist()], dtype=np.int64)


def classification_metrics(y: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """auc, logloss, accuracy, f1 for encoded labels ``y`` and class probabilities ``proba``."""
    metrics: dict[str, float] = {}
    proba = np.asarray(proba, dtype="float64")
    # float32 probabilities from xgboost may miss 1.0 by an ulp; newer log_loss rejects that.
    proba = proba / proba.sum(axis=1, keepdims=True)
    present = np.unique(y)
    if len(present) >= 2:
        if n_classes == 2:
            metrics["auc"] = roc_auc_score(y, proba[:, 1])
        else:
            # One-vs-rest macro AUC over the classes present: scikit-learn's own multiclass AUC
            # refuses a fold that lacks a class.
            metrics["auc"] = float(np.mean([roc_auc_score(y == k, proba[:, k]) for k in present]))
    metrics["logloss"] = log_loss(y, proba, labels=list(range(n_classes)))
    predicted = proba.argmax(axis=1)
    metrics["accuracy"] = accuracy_score(y, predicted)
    if n_classes == 2:
        metrics["f1"] = f1_score(y, predicted, average="binary", pos_label=1, zero_division=0)
    else:
        metrics["f1"] = f1_score(y, predicted, average="macro", zero_division=0)
    return {name: float(value) for name, value in metrics.items()}


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """rmse, mae, r2."""
    metrics = {
        # mean_squared_error(squared=False) is gone from newer scikit-learn.
        "rmse": math.sqrt(mean_squared_error(y, predicted)),
        "mae": mean_absolute_error(y, predicted),
    }
    if len(y) >= 2:
        metrics["r2"] = r2_score(y, predicted)
    return {name: float(value) for name, value in metrics.items()}


def format_metric(channel: str, name: str, value: float) -> str:
    """The log line a metric definition ``{channel}:{name}=([-+0-9.eE]+);`` matches."""
    return f"{channel}:{name}={float(value)!r};"


def _warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _split_target(
    frame: pd.DataFrame, channel: str, target: str, features: Sequence[str] | None
) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise TrainingError(
            f"channel {channel!r}: target column {target!r} not found; columns are: {', '.join(map(str, frame.columns))}"
        )
    labelled = frame[frame[target].notna()]
    dropped = len(frame) - len(labelled)
    if dropped:
        _warn(f"channel {channel!r}: dropped {dropped} row(s) whose target {target!r} is missing")
    if features is not None:
        missing = [c for c in features if c not in labelled.columns]
        if missing:
            raise TrainingError(f"channel {channel!r}: feature column(s) missing: {', '.join(missing)}")
    return labelled.drop(columns=[target]), labelled[target]


def _versions() -> dict[str, str]:
    import scipy

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }
    if "xgboost" in sys.modules:
        versions["xgboost"] = sys.modules["xgboost"].__version__
    return versions


def train(settings: dict[str, Any], env: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Fit on the train channel, score every channel present, save the model. Returns metrics."""
    model, task, target = settings["model"], settings["task"], settings["target"]
    started = time.time()
    phases: dict[str, float] = {}
    hits_before = _PRELOAD_HITS[0]
    clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[phase] = phases.get(phase, 0.0) + (now - clock)
        clock = now

    train_frame = read_channel("train", env["channels"]["train"])
    if len(train_frame) == 0:
        raise TrainingError(f"channel 'train': no rows in {env['channels']['train']}")
    x_train, y_train_raw = _split_target(train_frame, "train", target, None)
    if len(x_train) == 0:
        raise TrainingError(f"channel 'train': every row has a missing target {target!r}")
    input_columns = list(x_train.columns)  # what a scoring record without the target holds
    excluded = settings.get("exclude_columns") or []
    absent = [c for c in excluded if c not in input_columns]
    if absent:
        hints = [
            f"{c!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(c, input_columns, n=1)) else "")
            for c in absent
        ]
        raise TrainingError(f"hyperparameter 'exclude_columns': no column {', '.join(hints)} in the train channel")
    features = [c for c in input_columns if c not in excluded]
    x_train = x_train[features]
    if not features:
        raise TrainingError(f"channel 'train': no feature columns besides the target {target!r} and exclude_columns")
    numeric = [c for c in features if not _is_categorical_dtype(x_train[c].dtype)]
    categorical = [c for c in features if c not in numeric]

    others = {}
    for channel in ("validation", "test"):
        directory = env["channels"].get(channel)
        if directory:
            frame = read_channel(channel, directory)
            others[channel] = _split_target(frame, channel, target, features)
    lap("read")

    label_encoder = None
    classes: list[Any] = []
    integer_classes = None
    if task == "classification":
        integer_labels = _integer_labels(y_train_raw)
        labels = [] if integer_labels is not None else [_normalize_label(v) for v in y_train_raw.tolist()]
        if integer_labels is not None:
            # np.unique sorts and encodes exactly as LabelEncoder does, without a per-row loop.
            integer_classes, y_train = np.unique(integer_labels, return_inverse=True)
            label_encoder = LabelEncoder()
            label_encoder.classes_ = integer_classes
            classes = [int(c) for c in integer_classes]
        elif all(_is_number(v) for v in labels):
            # Numeric classes keep numeric order (2 before 10), which is the column order of the
            # multiclass probability matrix.
            label_encoder = LabelEncoder().fit(np.array(labels))
            classes = [_normalize_label(c) for c in label_encoder.classes_]
            y_train = label_encoder.transform(np.array(labels))
        else:
            # Mixed types cannot be sorted; encode by text, which also keeps 1 and "1" one class.
            keys = [_label_key(v) for v in labels]
            label_encoder = LabelEncoder().fit(keys)
            first_label: dict[str, Any] = {}
            for i, key in enumerate(keys):
                first_label.setdefault(key, labels[i])
            classes = [first_label[k] for k in label_encoder.classes_]
            y_train = label_encoder.transform(keys)
        if len(classes) < 2:
            raise TrainingError(
                f"channel 'train': target {target!r} has a single class {classes}; need at least two"
            )
    else:
        y_train = pd.to_numeric(y_train_raw, errors="coerce").to_numpy(dtype="float64")
        if np.isnan(y_train).any():
            bad = y_train_raw[np.isnan(y_train)].iloc[0]
            raise TrainingError(f"channel 'train': regression target {target!r} must be numeric; got {bad!r}")

    pipeline = build_pipeline(
        model, task, numeric, categorical, settings["estimator_params"], settings["seed"], env["num_cpus"]
    )
    print(
        f"cvtune train.py: model {model}, task {task}, target {target!r}, {len(x_train)} training rows, "
        f"{len(numeric)} numeric and {len(categorical)} categorical features, "
        f"hyperparameters {json.dumps(settings['tuned'], sort_keys=True)}",
        flush=True,
    )
    lap("prepare")
    fit_started = time.time()
    try:
        fit_pipeline(pipeline, prepare_features(x_train, numeric, categorical), y_train, model)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"fitting {model} failed (check the hyperparameters and data): {exc}") from None
    fit_seconds = time.time() - fit_started
    lap("fit")

    metrics: dict[str, dict[str, float]] = {}
    scored = [("train", x_train, y_train_raw)] if settings["train_metrics"] else []
    scored += [(ch, x, y) for ch, (x, y) in others.items()]
    for channel, x, y_raw in scored:
        if len(x) == 0:
            _warn(f"channel {channel!r}: no labelled rows; no metrics")
            continue
        features_frame = prepare_features(x[features], numeric, categorical)
        if task == "classification":
            codes = _label_codes(y_raw, classes, integer_classes)
            known = codes >= 0
            if not known.all():
                raw_values = y_raw.tolist()
                unseen = sorted({_label_key(raw_values[i]) for i in np.flatnonzero(~known)})
                _warn(
                    f"channel {channel!r}: {int((~known).sum())} row(s) have classes not seen in training "
                    f"({', '.join(unseen[:10])}); metrics use the other {int(known.sum())} row(s)"
                )
            if not known.any():
                continue
            proba = predict_scores(pipeline, features_frame[known], model, proba=True)
            lap("predict")
            values = classification_metrics(codes[known], proba, len(classes))
        else:
            y_values = pd.to_numeric(y_raw, errors="coerce").to_numpy(dtype="float64")
            ok = ~np.isnan(y_values)
            if not ok.all():
                _warn(f"channel {channel!r}: {int((~ok).sum())} row(s) have a non-numeric target; skipped")
            if not ok.any():
                continue
            predicted = predict_scores(pipeline, features_frame[ok], model, proba=False)
            lap("predict")
            values = regression_metrics(y_values[ok], predicted)
        values = {k: v for k, v in values.items() if math.isfinite(v)}
        metrics[channel] = values
        for name, value in values.items():
            print(format_metric(channel, name, value), flush=True)
        lap("metrics")

    bundle = {
        "format": BUNDLE_FORMAT,
        "pipeline": pipeline,
        "label_encoder": label_encoder,
        "classes": classes,
        "task": task,
        "model": model,
        "target": target,
        "feature_columns": features,
        "input_columns": input_columns,
        "numeric_columns": numeric,
        "categorical_columns": categorical,
    }
    os.makedirs(env["model_dir"], exist_ok=True)
    joblib.dump(bundle, os.path.join(env["model_dir"], MODEL_FILE))
    lap("save")
    metadata = {
        "model": model,
        "task": task,
        "target": target,
        "feature_columns": features,
        "numeric_columns": numeric,
        "categorical_columns": categorical,
        "classes": classes,
        "positive_class": classes[1] if len(classes) == 2 else None,
        "hyperparameters": {
            "model": model,
            "task": task,
            "target": target,
            "seed": settings["seed"],
            "train_metrics": settings["train_metrics"],
            **({"exclude_columns": excluded} if excluded else {}),
            **settings["tuned"],
        },
        "estimator_params": settings["estimator_params"],
        "ignored_hyperparameters": settings["ignored"],
        "metrics": metrics,
        "rows": {"train": int(len(x_train)), **{ch: int(len(x)) for ch, (x, _) in others.items()}},
        "training_rows": int(len(x_train)),
        "fit_seconds": fit_seconds,
        "total_seconds": time.time() - started,
        # wall seconds per phase (read, prepare, fit, predict, metrics, save): where a job's time goes
        "phase_seconds": {name: round(value, 6) for name, value in phases.items()},
        # data files taken parsed from the warm worker's memo (cvtune_preload) instead of read
        "preloaded_files": _PRELOAD_HITS[0] - hits_before,
        "num_cpus": env["num_cpus"],
        "host": env["current_host"],
        "versions": _versions(),
    }
    with open(os.path.join(env["model_dir"], METADATA_FILE), "w") as fh:
        json.dump(metadata, fh, indent=2, default=str)
    os.makedirs(env["output_data_dir"], exist_ok=True)
    with open(os.path.join(env["output_data_dir"], "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=2)
    return metrics


def _write_failure(output_data_dir: str, message: str) -> None:
    # SageMaker shows /opt/ml/output/failure as the job's FailureReason; best effort only.
    directory = os.path.dirname(os.path.abspath(output_data_dir))
    try:
        if os.path.isdir(directory):
            with open(os.path.join(directory, "failure"), "w") as fh:
                fh.write(message[:4000])
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Run one training job; returns the metrics per channel.

    A user error raises ``SystemExit`` with the message (printed to stderr by Python, exit
    status 1) after writing it to the failure file; other exceptions propagate unchanged.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    environ = dict(os.environ)
    env = read_environment(environ)
    try:
        if len(env["hosts"]) > 1:
            _warn(f"{len(env['hosts'])} hosts given; this script trains on {env['current_host']} only")
        settings = resolve_hyperparameters(read_hyperparameters(args, environ))
        if settings["ignored"]:
            print(
                f"cvtune train.py: ignoring SageMaker hyperparameters {', '.join(settings['ignored'])}",
                flush=True,
            )
        return train(settings, env)
    except TrainingError as exc:
        message = f"train.py: error: {exc}"
        _write_failure(env["output_data_dir"], message)
        sys.stdout.flush()
        raise SystemExit(message) from None
    except Exception as exc:
        _write_failure(env["output_data_dir"], f"train.py: unexpected {type(exc).__name__}: {exc}")
        raise


# ---------------------------------------------------------------------------------------------
# Inference (SageMaker framework-container handlers)
# ---------------------------------------------------------------------------------------------


def model_fn(model_dir: str) -> dict[str, Any]:
    """Load the bundle ``train`` saved: pipeline, label encoder, column lists."""
    bundle = joblib.load(os.path.join(model_dir, MODEL_FILE))
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise ValueError(
            f"{os.path.join(model_dir, MODEL_FILE)} is not a cvtune model bundle (format {BUNDLE_FORMAT})"
        )
    return bundle


def _media_type(value: str | None, default: str) -> str:
    return (value or default).split(";")[0].strip().lower() or default


def _records_frame(records: Any) -> pd.DataFrame:
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not records:
        raise ValueError("expected a non-empty list of records")
    if all(isinstance(r, dict) for r in records):
        return pd.DataFrame.from_records(records)
    if all(isinstance(r, (list, tuple)) for r in records):
        widths = {len(r) for r in records}
        if len(widths) != 1:
            raise ValueError(f"records have different lengths: {sorted(widths)}")
        return pd.DataFrame([list(r) for r in records])
    if not any(isinstance(r, (dict, list, tuple)) for r in records):
        # A flat list of values is one record (what a 1-D array serializes to).
        return pd.DataFrame([records])
    raise ValueError("records must be all objects (by column name) or all arrays (in feature order)")


def input_fn(request_body: bytes | str, content_type: str | None) -> pd.DataFrame:
    """Parse a request into a DataFrame.

    Named columns come from JSON objects; CSV rows and JSON arrays give integer column labels,
    which ``predict_fn`` maps to the feature columns by position, or by the first row when that
    row is a header (which ``input_fn`` cannot tell without the model).
    """
    media = _media_type(content_type, "text/csv")
    if media not in ("text/csv", "application/json") + JSONLINES_TYPES:
        raise ValueError(
            f"unsupported content type {content_type!r}; use text/csv, application/json or application/jsonlines"
        )
    text = request_body.decode("utf-8") if isinstance(request_body, (bytes, bytearray)) else str(request_body)
    if not text.strip():
        raise ValueError("empty request body")
    if media == "text/csv":
        # Strings only: per-request type guessing would disagree with training on small batches.
        return pd.read_csv(io.StringIO(text), header=None, dtype=str, skip_blank_lines=True)
    if media == "application/json":
        payload = json.loads(text)
        if isinstance(payload, dict) and "instances" in payload:
            payload = payload["instances"]
        return _records_frame(payload)
    return _records_frame([json.loads(line) for line in text.splitlines() if line.strip()])


def _align_columns(data: Any, model: dict[str, Any]) -> pd.DataFrame:
    features: list[str] = model["feature_columns"]
    target: str = model["target"]
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(np.asarray(data, dtype=object))
    positional = all(isinstance(c, (int, np.integer)) for c in frame.columns)
    if positional and len(frame):
        first = [str(v).strip() for v in frame.iloc[0].tolist()]
        known = set(features) | {target}
        if set(features) <= set(first):
            frame = frame.iloc[1:].copy()
            frame.columns = first
            positional = False
        elif all(f in known for f in first):
            missing = [c for c in features if c not in first]
            raise ValueError(f"the header row lacks feature column(s): {', '.join(missing)}")
    inputs: list[str] = model.get("input_columns") or features
    if positional and frame.shape[1] == len(inputs) != len(features):
        # a record with every column but the target (what batch transform sends): drop the excluded
        frame = frame.copy()
        frame.columns = inputs
        return frame[features]
    if positional:
        if frame.shape[1] != len(features):
            preview = ", ".join(features[:8]) + (", ..." if len(features) > 8 else "")
            raise ValueError(
                f"expected {len(features)} values per record in feature order ({preview}), got {frame.shape[1]}; "
                "to send the target or other columns too, add a header row"
            )
        frame = frame.copy()
        frame.columns = features
        return frame
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"missing feature column(s): {', '.join(missing)}")
    # Selecting the features drops the target and any other extra column (ids and the like).
    return frame[features]


def predict_fn(data: Any, model: dict[str, Any]) -> np.ndarray:
    """Binary: P(positive class); multiclass: probability matrix (classes in ``model["classes"]``
    order); regression: predicted values."""
    frame = _align_columns(data, model)
    classification = model["task"] == "classification"
    n_classes = len(model["classes"])
    if len(frame) == 0:
        return np.empty((0, n_classes) if classification and n_classes > 2 else (0,), dtype="float64")
    features = prepare_features(frame, model["numeric_columns"], model["categorical_columns"])
    pipeline = model["pipeline"]
    if classification:
        proba = np.asarray(pipeline.predict_proba(features), dtype="float64")
        return proba[:, 1] if n_classes == 2 else proba
    return np.asarray(pipeline.predict(features), dtype="float64")


def output_fn(prediction: Any, accept: str | None) -> str:
    """``text/csv``: one line per record (comma-separated class probabilities for multiclass),
    values as ``repr(float)``; ``application/json``: ``{"predictions": [...]}``;
    ``application/jsonlines``: one JSON value per line."""
    array = np.asarray(prediction, dtype="float64")
    supported = ("text/csv", "application/json", "application/jsonlines")
    wanted = [_media_type(part, "text/csv") for part in (accept or "text/csv").split(",")]
    media = next((m for m in wanted if m in supported), "text/csv" if "*/*" in wanted else None)
    if media is None:
        raise ValueError(f"unsupported accept type {accept!r}; use one of: {', '.join(supported)}")
    if media == "text/csv":
        if array.ndim == 1:
            return "\n".join(repr(float(v)) for v in array)
        return "\n".join(",".join(repr(float(v)) for v in row) for row in array)
    if media == "application/json":
        return json.dumps({"predictions": array.tolist()})
    return "\n".join(json.dumps(row) for row in array.tolist())


if __name__ == "__main__":
    main()
