"""Local batch transform, SageMaker style, through the training script's inference functions.

Like ``CreateTransformJob`` with ``SplitType=Line`` and ``AssembleWith=Line``: every input file
``x.csv`` yields ``x.csv.out``; records (lines) are sent to the script in batches of at most
``max_records`` through ``input_fn`` → ``predict_fn`` → ``output_fn``, and the number of output
records must equal the number of input records, per file.

SageMaker sends records without a header; ``header=True`` (local only) drops each CSV file's first
line and ``exclude_columns`` removes named columns first — the counterpart of an ``InputFilter``.
CSV files with a header are parsed as CSV (quoted fields keep their commas) and re-emitted as
records. Parquet files (``.parquet``) are read by column name (``header`` does not apply), the
excluded columns removed, and their rows sent to the script as the same headerless ``text/csv``
records; their predictions land in ``x.parquet.out``, one CSV line per row.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any

from cvtune import store
from cvtune.errors import ConfigError, RunFailedError


def load_inference_module(entry_point: str):
    """Import the training script as a module (its ``__main__`` block does not run)."""
    name = f"cvtune_inference_{abs(hash(os.path.abspath(entry_point)))}"
    spec = importlib.util.spec_from_file_location(name, entry_point)
    if spec is None or spec.loader is None:
        raise ConfigError("entry_point", f"cannot import {entry_point}")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(os.path.abspath(entry_point))
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(directory)
    missing = [f for f in ("model_fn", "input_fn", "predict_fn", "output_fn") if not hasattr(module, f)]
    if missing:
        raise ConfigError("entry_point", f"{entry_point} lacks {', '.join(missing)}", "define the SageMaker inference functions")
    return module


def _records(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def batch_transform(
    *,
    entry_point: str,
    model_uri: str,
    input_uri: str,
    output_uri: str,
    content_type: str = "text/csv",
    accept: str = "text/csv",
    max_records: int = 1000,
    header: bool = False,
    exclude_columns: list[str] | None = None,
) -> dict[str, Any]:
    """Score every file under ``input_uri``; returns output URI, files and record counts."""
    if content_type != "text/csv":
        raise ConfigError("content_type", f"{content_type!r} is not supported by the local transform", "use text/csv")
    if max_records < 1:
        raise ConfigError("max_records", f"must be at least 1, got {max_records}")
    if not store.exists(input_uri):
        raise ConfigError("input_uri", f"{input_uri} does not exist")
    files = [input_uri] if not _is_dir(input_uri) else [
        # hidden and marker files (.crc, _SUCCESS) are bookkeeping, as for the split
        store.join(input_uri, n) for n in sorted(store.listdir(input_uri))
        if not n.startswith((".", "_")) and not n.endswith(".out")
    ]
    if not files:
        raise ConfigError("input_uri", f"{input_uri} holds no input files")
    if exclude_columns and not header and not all(is_parquet(f) for f in files):
        raise ConfigError("exclude_columns", "columns can only be excluded by name when the files have a header", "set header=True")
    module = load_inference_module(entry_point)
    model_dir = store.local_path(model_uri)
    model = module.model_fn(model_dir)
    started = time.time()
    outputs, total = [], 0
    for uri in files:
        lines = read_records(uri, header=header, exclude_columns=list(exclude_columns or []))
        predictions: list[str] = []
        for start in range(0, len(lines), max_records):
            body = "\n".join(lines[start : start + max_records])
            data = module.input_fn(body, content_type)
            result = module.output_fn(module.predict_fn(data, model), accept)
            if isinstance(result, bytes):
                result = result.decode("utf-8")
            predictions.extend(_records(result))
        if len(predictions) != len(lines):
            raise RunFailedError(
                f"batch transform of {uri}: {len(lines)} input records but {len(predictions)} output records"
            )
        out = store.join(output_uri, os.path.basename(uri.rstrip("/")) + ".out")
        store.write_text(out, "\n".join(predictions) + ("\n" if predictions else ""))
        outputs.append({"input": uri, "output": out, "records": len(lines)})
        total += len(lines)
    return {
        "output_uri": output_uri,
        "files": outputs,
        "records": total,
        "seconds": round(time.time() - started, 3),
    }


def is_parquet(uri: str) -> bool:
    return uri.rstrip("/").lower().endswith(".parquet")


def read_records(uri: str, *, header: bool, exclude_columns: list[str]) -> list[str]:
    """The file's records as headerless CSV lines, with the named columns removed."""
    if not (is_parquet(uri) or header):
        return _records(store.read_text(uri))  # SageMaker's case: lines sent as they are
    return table_records(store.read_bytes(uri), uri, exclude_columns)


def table_records(raw: bytes, uri: str, exclude_columns: list[str]) -> list[str]:
    """Headerless CSV records of a Parquet file or a CSV file with a header, named columns removed."""
    import io

    import pandas as pd

    if is_parquet(uri):
        frame = pd.read_parquet(io.BytesIO(raw))
    else:
        # text as it is in the file: the script parses values, not this reader
        frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False, skip_blank_lines=True)
    missing = [c for c in exclude_columns if c not in frame.columns]
    if missing:
        raise ConfigError("exclude_columns", f"{sorted(missing)} not in the columns of {uri}: {list(frame.columns)}")
    frame = frame.drop(columns=exclude_columns)
    if frame.empty:
        return []
    return _records(frame.to_csv(header=False, index=False, lineterminator="\n"))


def _is_dir(uri: str) -> bool:
    if store.is_local(uri):
        return os.path.isdir(store.local_path(uri))
    return not os.path.splitext(uri.rstrip("/"))[1]
