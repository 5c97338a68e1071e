"""Batch transform, SageMaker style: what every platform's transform shares.

A platform's ``batch_transform()`` returns a :class:`BatchTransform`: the local one
(:class:`cvtune.local.transform.LocalBatchTransform`) runs the training script's inference
functions in the worker, the SageMaker one (:class:`cvtune.sagemaker.transform.SageMakerBatchTransform`)
runs ``CreateModel`` + ``CreateTransformJob`` with the same script. Both read records the same way
(:func:`read_records`, :func:`table_records`).

Like ``CreateTransformJob`` with ``SplitType=Line`` and ``AssembleWith=Line``: every input file
``x.csv`` yields ``x.csv.out``; records (lines) are sent to the script in batches through
``input_fn`` → ``predict_fn`` → ``output_fn``, and the number of output records must equal the
number of input records, per file. CSV files with a header are parsed as CSV and re-emitted as
records; Parquet files are read by column name, the excluded columns removed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any, Protocol

from cvtune.errors import ConfigError
from cvtune.store import ArtifactStore


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


class BatchTransform(Protocol):
    """One batch transform job of a platform: launched, polled (or waited for), finished."""

    #: whether its job runs outside the task, so the task may defer while it runs
    deferrable: bool
    #: seconds between polls of a running job
    poll_s: float

    def launch_model(
        self, *, model: dict[str, Any], entry_point: str, input_uri: str, output_uri: str, job_name: str,
        header: bool = False, exclude_columns: list[str] | None = None, max_records: int = 1000,
        instance_type: str | None = None, instance_count: int = 1, tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Start the job for ``model`` (a RegisterModelOperator/TrainModelOperator output); its state."""
        ...

    def poll(self, job_name: str) -> dict[str, Any] | None:
        """The job's outcome (``{"status", "failure_reason"}``) once it ended, else ``None``."""
        ...

    def wait(self, job_name: str) -> dict[str, Any]:
        """The job's outcome, waiting for it to end."""
        ...

    def load_state(self, job_name: str) -> dict[str, Any]:
        """The state :meth:`launch_model` returned (for a task resumed after deferring)."""
        ...

    def retry(self, state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any] | None:
        """A new attempt of a job that failed for an internal error (its state), else ``None``."""
        ...

    def wait_retrying(self, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`wait`, with :meth:`retry`; the last attempt's (state, outcome)."""
        ...

    def finish(self, state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
        """The result (``output_uri``, ``files``, ``records``, ``seconds``), after checking the output."""
        ...

    def stop(self, job_name: str) -> None: ...


def _records(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def is_parquet(uri: str) -> bool:
    return uri.rstrip("/").lower().endswith(".parquet")


def read_records(store: ArtifactStore, uri: str, *, header: bool, exclude_columns: list[str]) -> list[str]:
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
