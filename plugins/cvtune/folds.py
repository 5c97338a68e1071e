"""Split a dataset into k cross-validation folds and describe the split in a fold manifest.

Every fold becomes its own training job, so each fold is materialised as files: a ``train`` and a
``validation`` directory per fold (SageMaker channels are prefixes, so the manifest points at the
directories, never at the files), plus ``full/train`` (every non-holdout row, for the final refit)
and an optional ``holdout`` set that no fold ever sees.

Layout under ``out_uri``::

    folds/fold-{i}/train/data.{ext}
    folds/fold-{i}/validation/data.{ext}
    full/train/data.{ext}
    holdout/data.{ext}            (only when holdout > 0)
    manifest.json                 (written last: its presence means every data file is complete)

The split is a pure function of the input bytes and the arguments: the same input and arguments
give byte-identical files, and the manifest's ``fingerprint`` identifies the split independently
of where the input and output live.

pandas and scikit-learn are imported inside functions so that importing this module (e.g. while
Airflow parses a DAG file) stays cheap.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from typing import TYPE_CHECKING, Any

from cvtune import store
from cvtune.errors import ConfigError, DataError
from cvtune.store import ArtifactStore, PreconditionFailed, default_store

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"
STRATEGIES = ("kfold", "stratified", "group", "timeseries")
TASKS = ("classification", "regression")
FORMATS = ("csv", "parquet")

# An integer target with at most this many distinct values is taken to be a class label.
MAX_CLASSES_FOR_INFERENCE = 20

_REQUIRED_KEYS = ("version", "manifest_uri", "fingerprint", "dataset", "split", "folds", "full_train", "holdout")
_REQUIRED_FOLD_KEYS = ("fold", "train_uri", "validation_uri", "train_rows", "validation_rows")


# --------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------


def split_dataset(
    data_uri: str | list[str],
    out_uri: str,
    *,
    target: str,
    folds: int = 5,
    strategy: str | None = None,
    group_column: str | None = None,
    time_column: str | None = None,
    holdout: float = 0.0,
    seed: int = 0,
    task: str | None = None,
    file_format: str | None = None,
    store: ArtifactStore | None = None,
) -> dict:
    """Split ``data_uri`` into ``folds`` folds under ``out_uri`` and return the manifest.

    ``store`` reads the data and writes the folds (default: :func:`~cvtune.store.default_store`).

    Everything is validated (arguments, data, and that ``out_uri`` holds no foreign files in the
    channel directories) before the first byte is written, so a bad call leaves ``out_uri``
    untouched. ``data_uri`` may be a list (e.g. several landed partitions): their rows are
    concatenated in the order given, and every one must have the same columns.
    """
    import numpy as np

    store = store or default_store()
    # Cheap argument checks first: a typo should not cost reading a large dataset.
    uris = list(data_uri) if isinstance(data_uri, (list, tuple)) else [data_uri]
    if not uris:
        raise ConfigError("data_uri", "is an empty list", "pass a file, a directory, or a list of them")
    for uri in uris:
        _check_uri("data_uri", uri)
    _check_uri("out_uri", out_uri)
    if not isinstance(target, str) or not target:
        raise ConfigError("target", f"must be a non-empty column name, got {target!r}", "pass the label column's name")
    folds = _check_folds(folds)
    holdout = _check_holdout(holdout)
    seed = _check_seed(seed)
    if task is not None and task not in TASKS:
        raise ConfigError("task", f"unknown task {task!r}", f"use one of {', '.join(TASKS)}, or omit it to infer from the target")
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {strategy!r}", f"use one of {', '.join(STRATEGIES)}, or omit it")
    if file_format is not None and file_format not in FORMATS:
        raise ConfigError("file_format", f"unsupported format {file_format!r}", f"use one of {', '.join(FORMATS)}, or omit it to keep the input's format")
    if strategy == "group":
        if group_column is None or group_column == "":
            raise ConfigError("group_column", "strategy 'group' needs a group column", "pass group_column=<column whose rows must stay together>")
        if group_column == target:
            raise ConfigError("group_column", f"is the target column {target!r}", "group by an entity id (patient, customer...), not by the label")
    elif group_column is not None:
        # Silently ignoring groups would leak rows of one entity across train and validation.
        raise ConfigError("group_column", f"is only used by strategy 'group' (strategy is {strategy!r})", "pass strategy='group', or drop group_column")
    if time_column is not None and time_column != "":
        if strategy != "timeseries":
            raise ConfigError("time_column", f"is only used by strategy 'timeseries' (strategy is {strategy!r})", "pass strategy='timeseries', or drop time_column")
        if time_column == target:
            raise ConfigError("time_column", f"is the target column {target!r}", "name the column holding each row's time")
    else:
        time_column = None

    uris = [_normalise(uri) for uri in uris]
    out_uri = _normalise(out_uri)
    if store.is_local(out_uri) and os.path.isfile(store.local_path(out_uri)):
        raise ConfigError("out_uri", f"{out_uri} is a file", "pass a directory (it is created if missing)")
    df, dataset_sha, in_format = _read_datasets(uris, store)
    data_uri = uris[0] if len(uris) == 1 else ", ".join(uris)
    out_format = file_format or in_format

    n = len(df)
    if n == 0:
        raise DataError("data_uri", f"{data_uri} has no rows", "point data_uri at a non-empty dataset")
    columns = [str(c) for c in df.columns]
    y = _column(df, "target", target, data_uri, "drop or fill the rows without a label before splitting")
    task = _resolve_task(y, task, target)
    if strategy is None:
        strategy = "stratified" if task == "classification" else "kfold"
    if strategy == "stratified" and task != "classification":
        raise DataError(
            "strategy",
            f"'stratified' needs a class label, but target {target!r} is a regression target",
            "use strategy='kfold', or pass task='classification' if the target really is a class label",
        )
    if folds > n:
        raise DataError("folds", f"folds={folds} is more than the {n} rows of {data_uri}", f"use folds <= {n}")

    times = None
    if time_column is not None:
        times = _time_values(_column(df, "time_column", time_column, data_uri, "give every row a time"))

    groups = None
    if strategy == "group" and group_column is not None:  # always set for "group" (checked above)
        groups = _codes(_column(df, "group_column", group_column, data_uri, "fill in a group for every row"))
        n_groups = int(groups.max()) + 1
        if n_groups < folds:
            raise DataError("group_column", f"column {group_column!r} has {n_groups} distinct groups, fewer than folds={folds}", f"use folds <= {n_groups}, or a finer group column")

    labels = _codes(y) if task == "classification" else None

    # Positions are row numbers in file order; every later step works on sorted position arrays so
    # each output file keeps the input's row order.
    held = _holdout_positions(n, strategy, holdout, seed, labels, groups, folds, times)
    pool = np.setdiff1d(np.arange(n), held)
    need = folds + 1 if strategy == "timeseries" else folds  # timeseries also needs an initial train block
    if len(pool) < need:
        if len(held):
            raise DataError("holdout", f"holdout={holdout} leaves {len(pool)} of {n} rows, fewer than the {need} needed for {folds} folds", "use a smaller holdout or fewer folds")
        raise DataError("folds", f"strategy {strategy!r} with folds={folds} needs at least {need} rows, {data_uri} has {n}", f"use folds <= {n - 1}")
    splits = _fold_positions(pool, strategy, folds, seed, labels, groups, y, holdout, times)
    if times is not None and time_column is not None:
        check_time_order(times, splits, held, time_column)

    # The layout, computed and checked before anything is written.
    ext = out_format
    data_name = f"data.{ext}"
    fold_dirs = [(store.join(out_uri, "folds", f"fold-{i}", "train"), store.join(out_uri, "folds", f"fold-{i}", "validation")) for i in range(folds)]
    full_dir = store.join(out_uri, "full", "train")
    holdout_dir = store.join(out_uri, "holdout") if len(held) else None
    channel_dirs = [d for pair in fold_dirs for d in pair] + [full_dir] + ([holdout_dir] if holdout_dir else [])
    _check_channel_dirs(channel_dirs, data_name, store)

    split_config = {
        "strategy": strategy,
        "folds": folds,
        "seed": seed,
        "target": target,
        "task": task,
        "group_column": group_column,
        "holdout": holdout,
    }
    if time_column is not None:  # only when set: earlier splits keep their fingerprints
        split_config["time_column"] = time_column
    manifest_uri = store.join(out_uri, MANIFEST_NAME)

    def balance(positions: np.ndarray) -> dict[str, float] | None:
        return _class_balance(y, positions) if task == "classification" else None

    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "manifest_uri": manifest_uri,
        "fingerprint": _fingerprint(dataset_sha, split_config),
        "dataset": {"uri": uris[0] if len(uris) == 1 else uris, "sha256": dataset_sha, "rows": n, "columns": columns, "format": in_format},
        "split": split_config,
        "output_format": out_format,
        "folds": [
            {
                "fold": i,
                "train_uri": train_dir,
                "validation_uri": valid_dir,
                "train_rows": len(train),
                "validation_rows": len(valid),
                "train_class_balance": balance(train),
                "validation_class_balance": balance(valid),
            }
            for i, ((train, valid), (train_dir, valid_dir)) in enumerate(zip(splits, fold_dirs, strict=True))
        ],
        "full_train": {"uri": full_dir, "rows": len(pool), "class_balance": balance(pool)},
        "holdout": {"uri": holdout_dir, "rows": len(held), "class_balance": balance(held)} if holdout_dir else None,
    }

    _claim_split(out_uri, manifest, store)
    files: dict[str, str] = {}  # path under out_uri → version token (content digest, or ETag on S3)

    def write(positions: np.ndarray, directory: str) -> None:
        uri = store.join(directory, data_name)
        files[uri[len(out_uri):].lstrip("/")] = _write_frame(df, positions, uri, out_format, store)

    for (train, valid), (train_dir, valid_dir) in zip(splits, fold_dirs, strict=True):
        write(train, train_dir)
        write(valid, valid_dir)
    write(pool, full_dir)
    if holdout_dir:
        write(held, holdout_dir)
    # what a run checks before it goes on: the files behind the manifest, not only the input
    manifest["files"] = files
    manifest["files_fingerprint"] = files_fingerprint(files)
    store.write_json(manifest_uri, manifest)
    return manifest


CLAIM_NAME = ".split.json"


def _claim_split(out_uri: str, manifest: dict[str, Any], store: ArtifactStore) -> None:
    """Make ``out_uri`` this split's, or refuse: splits are immutable, one location holds one split.

    The claim (``.split.json``, written create-only) names the split's fingerprint; writing the same
    split again (an Airflow retry) is allowed and rewrites identical files. A location that holds
    another split — claimed, or with a manifest from before claims, or fold folders this split has
    no use for — is refused, so no run ever reads a mix of two splits or a stale fold.
    """
    fingerprint = manifest["fingerprint"]
    claim_uri = store.join(out_uri, CLAIM_NAME)
    held = None
    if store.exists(claim_uri):
        held = (store.read_json(claim_uri) or {}).get("fingerprint")
    elif store.exists(manifest["manifest_uri"]):
        held = (store.read_json(manifest["manifest_uri"]) or {}).get("fingerprint")
    if held is not None and held != fingerprint:
        raise ConfigError(
            "out_uri", f"{out_uri} already holds a different split (fingerprint {held[:12]}…, this one {fingerprint[:12]}…); "
            "splits are immutable and runs may be reading it",
            "write the new split to a new out_uri (e.g. one folder per dataset version or date), or delete the old one first",
        )
    folds_uri = store.join(out_uri, "folds")
    if store.exists(folds_uri):
        expected = {f"fold-{i}" for i in range(len(manifest["folds"]))}
        stale = sorted(set(store.listdir(folds_uri)) - expected)
        if stale:
            raise ConfigError(
                "out_uri", f"{folds_uri} holds {', '.join(stale)} from another split",
                "use an empty out_uri, or delete the old split first",
            )
    if held is None:
        try:
            store.write_bytes(claim_uri, json.dumps({"fingerprint": fingerprint}).encode(), if_none_match=True)
        except PreconditionFailed:  # another split claimed it just now
            _claim_split(out_uri, manifest, store)


def files_fingerprint(files: dict[str, str]) -> str:
    """One hash of the split's files and their version tokens (content digests locally, ETags on S3)."""
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def check_files(manifest: dict[str, Any], store: ArtifactStore | None = None) -> None:
    """Refuse to go on when a file behind ``manifest`` changed or went missing since the split.

    One HEAD per file on S3, a digest of each file locally. Manifests written before files were
    recorded are not checked.
    """
    files = manifest.get("files")
    manifest_uri = manifest.get("manifest_uri")
    if not isinstance(files, dict) or not isinstance(manifest_uri, str) or not manifest_uri.endswith(MANIFEST_NAME):
        return
    store = store or default_store()
    root = manifest_uri[: -len(MANIFEST_NAME)].rstrip("/")
    for path, token in sorted(files.items()):
        uri = store.join(root, path)
        try:
            current = store.version_token(uri)
        except FileNotFoundError:
            current = None
        if current != token:
            raise ConfigError(
                "manifest",
                f"{uri} behind {manifest.get('manifest_uri')} {'is gone' if current is None else 'changed'} since the "
                "split was written; the run would train on other data than it started on",
                "split into a new out_uri and start a new run there",
            )


def load_manifest(uri: str, store: ArtifactStore | None = None) -> dict:
    """Read and validate a fold manifest, given its ``manifest.json`` URI or the split directory."""
    store = store or default_store()
    if not isinstance(uri, str) or not uri:
        raise ConfigError("manifest", f"expected a manifest URI, got {uri!r}", "pass the split directory or its manifest.json")
    path = uri if uri.rstrip("/").endswith(".json") else store.join(uri, MANIFEST_NAME)
    try:
        raw = store.read_bytes(path)
    except FileNotFoundError:
        raise ConfigError("manifest", f"{path} does not exist", "run the split (cvtune split / split_dataset) first, or check the path") from None
    except OSError as exc:
        raise ConfigError("manifest", f"cannot read {path}: {exc}") from exc
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ConfigError("manifest", f"{path} is not valid JSON: {exc}", "re-run the split to rewrite it") from None
    if not isinstance(manifest, dict):
        raise ConfigError("manifest", f"{path} holds a {type(manifest).__name__}, not a fold manifest", "re-run the split to rewrite it")
    version = manifest.get("version")
    if version != MANIFEST_VERSION:
        raise ConfigError("manifest.version", f"{path} has version {version!r}; this cvtune reads version {MANIFEST_VERSION}", "re-run the split with this cvtune version")
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ConfigError("manifest", f"{path} lacks required key(s) {', '.join(missing)}", "re-run the split to rewrite it")
    if not isinstance(manifest["folds"], list) or not manifest["folds"]:
        raise ConfigError("manifest.folds", f"{path} lists no folds", "re-run the split to rewrite it")
    for i, fold in enumerate(manifest["folds"]):
        lacking = [k for k in _REQUIRED_FOLD_KEYS if not isinstance(fold, dict) or k not in fold]
        if lacking:
            raise ConfigError(f"manifest.folds[{i}]", f"{path} lacks {', '.join(lacking)}", "re-run the split to rewrite it")
    if not isinstance(manifest["full_train"], dict) or "uri" not in manifest["full_train"]:
        raise ConfigError("manifest.full_train", f"{path} has no full_train.uri", "re-run the split to rewrite it")
    return manifest


def manifest_summary(manifest: dict) -> dict:
    """A small JSON-able view of a manifest, for CLI output and Airflow XCom."""
    split = manifest.get("split", {})
    holdout = manifest.get("holdout")
    return {
        "manifest_uri": manifest.get("manifest_uri"),
        "fingerprint": manifest.get("fingerprint"),
        "rows": manifest.get("dataset", {}).get("rows"),
        "folds": len(manifest.get("folds", [])),
        "strategy": split.get("strategy"),
        "task": split.get("task"),
        "train_rows": (manifest.get("full_train") or {}).get("rows"),
        "holdout_rows": holdout["rows"] if holdout else 0,
    }


# --------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------


def _check_uri(field: str, uri: Any) -> None:
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError(field, f"expected a path or URI, got {uri!r}", "pass a local path or an s3:// URI")


def _normalise(uri: str) -> str:
    # Absolute local paths make the manifest usable from another working directory (and by the
    # local backend's containers); remote URIs are already absolute.
    if store.is_local(uri):
        path = os.path.abspath(store.local_path(uri))
        return "file://" + path if uri.startswith("file://") else path
    return uri.rstrip("/")


def _is_int(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_folds(folds: Any) -> int:
    if not _is_int(folds):
        raise ConfigError("folds", f"must be an integer, got {folds!r} ({type(folds).__name__})", "pass e.g. folds=5")
    if folds < 2:
        raise ConfigError("folds", f"must be at least 2, got {folds}", "cross-validation needs 2 or more folds; 5 is usual")
    return int(folds)


def _check_holdout(holdout: Any) -> float:
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not math.isfinite(holdout) or not 0 <= holdout < 1:
        raise ConfigError("holdout", f"must be a fraction in [0, 1), got {holdout!r}", "pass e.g. holdout=0.2, or 0 for no holdout set")
    return float(holdout)


def _check_seed(seed: Any) -> int:
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError("seed", f"must be an integer in [0, 2**32), got {seed!r}", "pass e.g. seed=0")
    return int(seed)


def _resolve_task(y: pd.Series, task: str | None, target: str) -> str:
    import pandas as pd

    categorical = isinstance(y.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(y) or pd.api.types.is_object_dtype(y) or pd.api.types.is_string_dtype(y)
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if task is None:
        if categorical:
            return "classification"
        if pd.api.types.is_integer_dtype(y) and y.nunique() <= MAX_CLASSES_FOR_INFERENCE:
            return "classification"
        if numeric:
            return "regression"
        raise DataError("target", f"cannot tell whether column {target!r} (dtype {y.dtype}) is a class label or a number", "pass task='classification' or task='regression'")
    if task == "regression" and not numeric:
        raise DataError("task", f"'regression' needs a numeric target, but column {target!r} has dtype {y.dtype}", "pass task='classification', or convert the target to numbers")
    return task


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


def _format_of(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith(".parquet"):
        return "parquet"
    return None




def _read_dataset(data_uri: str, store: ArtifactStore) -> tuple[pd.DataFrame, str, str]:
    """The concatenated frame, the sha256 of the raw input, and the input format."""
    import pandas as pd

    try:
        # Checked before the extension: Spark writes directories named like files ("x.parquet/").
        is_dir = store.isdir(data_uri)
    except Exception as exc:  # any filesystem backend error (missing s3fs, credentials...)
        raise DataError("data_uri", f"cannot access {data_uri}: {exc}", "check the path and that it is readable") from exc

    if not is_dir:
        file_format = _format_of(data_uri)
        if file_format is None:
            if not store.exists(data_uri):
                raise DataError("data_uri", f"{data_uri} does not exist", "check the path")
            raise DataError("data_uri", f"unsupported file type {os.path.basename(data_uri)!r}", "use a .csv or .parquet file, or a directory of them")
        raw = _read_raw(data_uri, store)
        return _parse(raw, file_format, data_uri), hashlib.sha256(raw).hexdigest(), file_format

    # Hidden and marker files (.crc, _SUCCESS) are skipped, as Spark and Hadoop writers expect.
    names = [name for name in store.listdir(data_uri) if not name.startswith((".", "_")) and _format_of(name)]
    if not names:
        raise DataError("data_uri", f"directory {data_uri} holds no .csv or .parquet files", "point data_uri at a file or a directory of part files")
    formats = sorted({f for name in names if (f := _format_of(name))})
    if len(formats) > 1:
        raise DataError("data_uri", f"directory {data_uri} mixes {' and '.join(formats)} files", "keep one format per dataset directory")
    fmt = formats[0]
    digest = hashlib.sha256()
    frames: list[pd.DataFrame] = []
    for name in names:
        uri = store.join(data_uri, name)
        raw = _read_raw(uri, store)
        # Hash names as well as contents, so renaming parts (which reorders rows) changes the hash.
        digest.update(f"{name}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
        frame = _parse(raw, fmt, uri)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise DataError("data_uri", f"{uri} has columns {list(frame.columns)}, but {names[0]} has {list(frames[0].columns)}", "give every part file the same columns in the same order")
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return df, digest.hexdigest(), fmt


def read_columns(data_uri: str, store: ArtifactStore | None = None) -> list[str]:
    """The column names of a dataset (its first data file), read cheaply: a CSV's first line, a
    Parquet file's schema. For checks before the split, which reads everything."""
    store = store or default_store()
    uri = _normalise(data_uri)
    try:
        is_dir = store.isdir(uri)
    except Exception as exc:  # any filesystem backend error (missing s3fs, credentials...)
        raise DataError("data_uri", f"cannot access {uri}: {exc}", "check the path and that it is readable") from exc
    if is_dir:
        names = sorted(n for n in store.listdir(uri) if not n.startswith((".", "_")) and _format_of(n))
        if not names:
            raise DataError("data_uri", f"directory {uri} holds no .csv or .parquet files", "point data_uri at a file or a directory of part files")
        uri = store.join(uri, names[0])
    fmt = _format_of(uri)
    if fmt is None:
        if not store.exists(uri):
            raise DataError("data_uri", f"{uri} does not exist", "check the path")
        raise DataError("data_uri", f"unsupported file type {os.path.basename(uri)!r}", "use a .csv or .parquet file, or a directory of them")
    if fmt == "csv" and store.is_local(uri):
        try:
            with open(store.local_path(uri), "rb") as fh:
                raw = fh.readline()
        except FileNotFoundError:
            raise DataError("data_uri", f"{uri} does not exist", "check the path") from None
    else:
        raw = _read_raw(uri, store)
    header = _raw_header(raw, fmt)
    if header is None:
        return [str(c) for c in _parse(raw, fmt, uri).columns]
    return [str(n) for n in header]


def _read_datasets(uris: list[str], store: ArtifactStore) -> tuple[pd.DataFrame, str, str]:
    """One dataset, or several concatenated (same columns, same format) in the order given."""
    import pandas as pd

    if len(uris) == 1:
        return _read_dataset(uris[0], store)
    parts = [_read_dataset(uri, store) for uri in uris]
    first = parts[0][0]
    for uri, (frame, _, fmt) in zip(uris[1:], parts[1:], strict=True):
        if list(frame.columns) != list(first.columns):
            raise DataError("data_uri", f"{uri} has columns {list(frame.columns)}, but {uris[0]} has {list(first.columns)}", "give every dataset the same columns in the same order")
        if fmt != parts[0][2]:
            raise DataError("data_uri", f"{uri} is {fmt}, but {uris[0]} is {parts[0][2]}", "keep one format across the datasets")
    digest = hashlib.sha256("\n".join(sha for _, sha, _ in parts).encode()).hexdigest()
    return pd.concat([frame for frame, _, _ in parts], ignore_index=True), digest, parts[0][2]


def _read_raw(uri: str, store: ArtifactStore) -> bytes:
    try:
        return store.read_bytes(uri)
    except FileNotFoundError:
        raise DataError("data_uri", f"{uri} does not exist", "check the path") from None
    except Exception as exc:
        raise DataError("data_uri", f"cannot read {uri}: {exc}", "check the path and that it is readable") from exc


def _parse(raw: bytes, fmt: str, uri: str) -> pd.DataFrame:
    import pandas as pd

    try:
        if fmt == "csv":
            # pandas >= 3 parses floats round-trip exactly by default, which the output relies on.
            df = pd.read_csv(io.BytesIO(raw))
        else:
            df = pd.read_parquet(io.BytesIO(raw))
    except pd.errors.EmptyDataError:
        raise DataError("data_uri", f"{uri} is empty (no header, no rows)", "point data_uri at a non-empty dataset") from None
    except Exception as exc:
        raise DataError("data_uri", f"cannot parse {uri} as {fmt}: {exc}", f"check that the file is valid {fmt}") from exc
    names = _raw_header(raw, fmt) or [str(c) for c in df.columns]
    duplicated = sorted({str(c) for c in names if names.count(c) > 1})
    if duplicated:
        raise DataError("data_uri", f"{uri} has duplicate column name(s) {duplicated}; a repeated target would become a feature (a copy of the label)", "give every column a unique name")
    # Row positions, not whatever index the file carried, identify rows from here on.
    return df.reset_index(drop=True)


def _raw_header(raw: bytes, fmt: str) -> list[str] | None:
    """Column names as the file spells them (pandas renames a repeated CSV name to ``x.1``)."""
    if fmt == "csv":
        import csv

        first = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
        return next(csv.reader([first]), None)
    try:
        import pyarrow.parquet as pq

        return list(pq.read_schema(io.BytesIO(raw)).names)
    except Exception:  # noqa: BLE001 - pandas already read the file; its own names will do
        return None


# --------------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------------


def _codes(values: pd.Series) -> np.ndarray:
    """Integer codes 0..k-1 of a label or group column, in sorted order of the values when possible."""
    import pandas as pd

    try:
        codes, _ = pd.factorize(values, sort=True)
    except TypeError:  # unorderable mixed types: fall back to order of first appearance
        codes, _ = pd.factorize(values, sort=False)
    return codes


def _holdout_positions(n: int, strategy: str, holdout: float, seed: int, labels, groups, folds: int, times=None) -> np.ndarray:
    """Sorted positions of the holdout rows."""
    import numpy as np

    if holdout == 0:
        return np.array([], dtype=np.int64)
    # ceil, like sklearn's train_test_split: any non-zero fraction holds out at least one row.
    n_hold = math.ceil(holdout * n)
    if n_hold >= n:
        raise DataError("holdout", f"holdout={holdout} would hold out all {n} rows", "use a smaller holdout")
    if strategy == "timeseries":
        # The holdout must be the future of everything the folds train on.
        if times is None:
            return np.arange(n - n_hold, n)
        # whole time values from the latest back, so no holdout row shares a time with a training row
        distinct = np.unique(times)
        rows_from = np.searchsorted(np.sort(times), distinct)  # rows strictly before each time value
        later = n - rows_from  # rows at or after each time value
        cut = distinct[later >= n_hold][-1] if (later >= n_hold).any() else distinct[0]
        held = np.flatnonzero(times >= cut)
        if len(held) >= n:
            raise DataError("holdout", f"holdout={holdout} would hold out every time value of the data", "use a smaller holdout")
        return held
    rs = np.random.RandomState(seed)
    if strategy == "group":
        return _group_holdout(groups, holdout * n, folds, rs)
    if labels is None:
        return np.sort(rs.permutation(n)[:n_hold])
    return _stratified_holdout(labels, n_hold, rs)


def _stratified_holdout(labels: np.ndarray, n_hold: int, rs: np.random.RandomState) -> np.ndarray:
    import numpy as np

    # Largest-remainder allocation of the holdout across classes, then a seeded draw within each
    # class. Unlike sklearn's StratifiedShuffleSplit this also accepts single-row classes.
    counts = np.bincount(labels)
    n = len(labels)
    quota = counts * n_hold / n
    alloc = np.floor(quota).astype(np.int64)
    remainder = n_hold - int(alloc.sum())
    # Ties on the fractional part go to the larger class, then to the lower class code.
    order = sorted(range(len(counts)), key=lambda k: (-(quota[k] - alloc[k]), -counts[k], k))
    for k in order:
        if remainder == 0:
            break
        if alloc[k] < counts[k]:
            alloc[k] += 1
            remainder -= 1
    held = []
    for k in range(len(counts)):
        members = np.flatnonzero(labels == k)
        held.append(members[rs.permutation(len(members))[: alloc[k]]])
    return np.sort(np.concatenate(held))


def _group_holdout(groups: np.ndarray, wanted_rows: float, folds: int, rs: np.random.RandomState) -> np.ndarray:
    import numpy as np

    sizes = np.bincount(groups)
    n_groups = len(sizes)
    if n_groups - folds < 1:
        raise DataError("holdout", f"a holdout needs a whole group, but holding one out leaves {n_groups - 1} groups, fewer than folds={folds}", "use holdout=0, fewer folds, or a finer group column")
    order = rs.permutation(n_groups)
    cumulative = np.cumsum(sizes[order])
    # Whole groups in random order, as many as bring the holdout closest to the asked fraction,
    # while leaving at least one group per fold.
    candidates = cumulative[: n_groups - folds]
    k = int(np.argmin(np.abs(candidates - wanted_rows))) + 1
    return np.sort(np.flatnonzero(np.isin(groups, order[:k])))


def _fold_positions(pool: np.ndarray, strategy: str, folds: int, seed: int, labels, groups, y, holdout: float, times=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) sorted position arrays for each fold, drawn from ``pool``."""
    import numpy as np

    if strategy == "timeseries":
        from sklearn.model_selection import TimeSeriesSplit

        if times is None:  # file order is time order
            return [(pool[tr], pool[va]) for tr, va in TimeSeriesSplit(n_splits=folds).split(pool)]
        # Folds over the distinct time values, so rows sharing a time are never split between a
        # fold's train and validation sets; rows keep file order within each set.
        distinct, which = np.unique(times[pool], return_inverse=True)
        if len(distinct) < folds + 1:
            raise DataError("time_column", f"{len(distinct)} distinct time values remain outside the holdout; folds={folds} needs at least {folds + 1}", "use fewer folds or a smaller holdout")
        out = []
        for tr, va in TimeSeriesSplit(n_splits=folds).split(distinct):
            out.append((pool[np.isin(which, tr)], pool[np.isin(which, va)]))
        return out

    if strategy == "kfold":
        from sklearn.model_selection import KFold

        assignment = np.empty(len(pool), dtype=np.int64)
        for i, (_, va) in enumerate(KFold(n_splits=folds, shuffle=True, random_state=seed).split(pool)):
            assignment[va] = i
    elif strategy == "stratified":
        from sklearn.model_selection import StratifiedKFold

        pool_labels = labels[pool]
        counts = np.bincount(pool_labels, minlength=int(labels.max()) + 1)
        for code, count in enumerate(counts):
            if count < folds:
                value = y.iloc[int(np.flatnonzero(labels == code)[0])]
                value = value.item() if isinstance(value, np.generic) else value  # repr 1, not np.int64(1)
                where = " outside the holdout" if holdout else ""
                raise DataError(
                    "folds",
                    f"class {value!r} of the target has {int(count)} row(s){where}, fewer than folds={folds}, so some validation folds would miss it",
                    f"use folds <= {int(count)}, strategy='kfold'" + (", or a smaller holdout" if holdout else ""),
                )
        assignment = np.empty(len(pool), dtype=np.int64)
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for i, (_, va) in enumerate(splitter.split(np.zeros(len(pool)), pool_labels)):
            assignment[va] = i
    else:
        assignment = _group_assignment(groups[pool], folds, seed)

    return [(pool[assignment != i], pool[assignment == i]) for i in range(folds)]


def _group_assignment(pool_groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number of each row, keeping every group in one fold.

    sklearn's GroupKFold balancing has changed between releases; this is its classic algorithm
    (largest group first, into the fold with the fewest rows) written out, so the split does not
    depend on the installed sklearn, with the seed breaking ties between equal-sized groups.
    """
    import numpy as np

    present, local = np.unique(pool_groups, return_inverse=True)
    sizes = np.bincount(local)
    if len(present) < folds:
        raise DataError("group_column", f"{len(present)} distinct groups remain outside the holdout, fewer than folds={folds}", "use fewer folds or a smaller holdout")
    order = np.random.RandomState(seed).permutation(len(sizes))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_rows = np.zeros(folds, dtype=np.int64)
    group_fold = np.empty(len(sizes), dtype=np.int64)
    for g in order:
        f = int(np.argmin(fold_rows))  # lowest fold number on ties
        group_fold[g] = f
        fold_rows[f] += sizes[g]
    return group_fold[local]


def _column(df: pd.DataFrame, field: str, column: str, data_uri: str, fill: str) -> pd.Series:
    """The column named by setting ``field``; a missing column, or a row without a value, is an error."""
    if column not in df.columns:
        available = ", ".join(str(c) for c in df.columns)
        raise DataError(field, f"column {column!r} not in {data_uri}; available columns: {available}", "pass one of the available columns")
    values = df[column]
    missing = int(values.isna().sum())
    if missing:
        raise DataError(field, f"column {column!r} has {missing} missing value(s)", fill)
    return values


def _time_values(values: pd.Series) -> np.ndarray:
    """The time column as sortable numbers (numbers as they are, anything else parsed as dates)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype="float64")
    import warnings

    try:
        with warnings.catch_warnings():  # "could not infer format": fine, each value is parsed
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise DataError("time_column", f"column {values.name!r} is neither numeric nor dates: {exc}", "store times as numbers or ISO dates") from None
    return parsed.astype("int64").to_numpy(dtype="float64")


def check_time_order(times: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], held: np.ndarray, column: str) -> None:
    """Every validation row later than every training row of its fold; the holdout later than all."""
    for i, (train, valid) in enumerate(splits):
        if len(train) and len(valid) and times[valid].min() <= times[train].max():
            raise DataError("time_column", f"fold {i}: a validation row is not later than every training row by {column!r}", "report this: the time-ordered split is broken")
    import numpy as np

    if len(held):
        tuned = np.concatenate([np.concatenate(pair) for pair in splits])
        if len(tuned) and times[held].min() <= times[tuned].max():
            raise DataError("time_column", f"a holdout row is not later than every tuning row by {column!r}", "report this: the time-ordered split is broken")


def _class_balance(y: pd.Series, positions: np.ndarray) -> dict[str, float]:
    counts = y.iloc[positions].value_counts()
    total = len(positions)
    try:
        labels = sorted(counts.index)
    except TypeError:
        labels = sorted(counts.index, key=str)
    return {str(label): round(int(counts[label]) / total, 6) for label in labels} if total else {}


def _fingerprint(dataset_sha: str, split_config: dict) -> str:
    canonical = json.dumps(split_config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"v{MANIFEST_VERSION}\n{dataset_sha}\n{canonical}".encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def _check_channel_dirs(dirs: list[str], data_name: str, store: ArtifactStore) -> None:
    # A training job reads every file in its channel, so a leftover file from an earlier split
    # (e.g. data.csv next to a new data.parquet) would silently add rows. Our own file is fine: it
    # is overwritten, which makes re-running (an Airflow retry) idempotent.
    for d in dirs:
        try:
            if not store.exists(d):
                continue
            names = store.listdir(d)
        except NotADirectoryError:
            names = ["<a file where a directory belongs>"]
        foreign = [name for name in names if name != data_name and not name.startswith(".")]
        if foreign:
            raise ConfigError("out_uri", f"{d} already holds {', '.join(foreign)} from another split", "use an empty out_uri, or delete the old split first")


def _write_frame(df: pd.DataFrame, positions: np.ndarray, uri: str, fmt: str, store: ArtifactStore) -> str:
    part = df.iloc[positions].reset_index(drop=True)
    if fmt == "csv":
        # repr-style float formatting round-trips exactly; "\n" keeps bytes platform-independent.
        data = part.to_csv(index=False, lineterminator="\n").encode("utf-8")
    else:
        buf = io.BytesIO()
        part.to_parquet(buf, index=False, engine="pyarrow")
        data = buf.getvalue()
    return store.write_bytes(uri, data)
