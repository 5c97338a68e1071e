"""The local batch transform: the training script's inference functions, run in the task's process.

SageMaker sends records without a header; ``header=True`` (local only) drops each CSV file's first
line and ``exclude_columns`` removes named columns first — the counterpart of an ``InputFilter``.
Parquet files' predictions land in ``x.parquet.out``, one CSV line per row.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from cvtune.errors import ConfigError, RunFailedError
from cvtune.states import JobStatus
from cvtune.store import ArtifactStore, default_store
from cvtune.transform import _records, is_parquet, load_inference_module, read_records


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
    store: ArtifactStore | None = None,
) -> dict[str, Any]:
    """Score every file under ``input_uri``; returns output URI, files and record counts.

    ``store`` reads the input and the model and writes the predictions (a remote model is
    downloaded to a temporary directory first).
    """
    store = store or default_store()
    if content_type != "text/csv":
        raise ConfigError("content_type", f"{content_type!r} is not supported by the local transform", "use text/csv")
    if max_records < 1:
        raise ConfigError("max_records", f"must be at least 1, got {max_records}")
    if not store.exists(input_uri):
        raise ConfigError("input_uri", f"{input_uri} does not exist")
    files = [input_uri] if not store.isdir(input_uri) else [
        # hidden and marker files (.crc, _SUCCESS) are bookkeeping, as for the split
        store.join(input_uri, n) for n in sorted(store.listdir(input_uri))
        if not n.startswith((".", "_")) and not n.endswith(".out")
    ]
    if not files:
        raise ConfigError("input_uri", f"{input_uri} holds no input files")
    if exclude_columns and not header and not all(is_parquet(f) for f in files):
        raise ConfigError("exclude_columns", "columns can only be excluded by name when the files have a header", "set header=True")
    module = load_inference_module(entry_point)
    if store.is_local(model_uri):
        model = module.model_fn(store.local_path(model_uri))
    else:
        with tempfile.TemporaryDirectory(prefix="cvtune-model-") as model_dir:
            store.download_dir(model_uri, model_dir)
            model = module.model_fn(model_dir)
    started = time.time()
    outputs, total = [], 0
    for uri in files:
        lines = read_records(store, uri, header=header, exclude_columns=list(exclude_columns or []))
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


class LocalBatchTransform:
    """:class:`cvtune.transform.BatchTransform` on the local platform: the job runs (and ends)
    inside :meth:`launch_model`, so there is nothing to defer on."""

    deferrable = False
    poll_s = 0.0

    def __init__(self, store: ArtifactStore | None = None) -> None:
        self.store = store or default_store()
        self._states: dict[str, dict[str, Any]] = {}

    def launch_model(
        self, *, model: dict[str, Any], entry_point: str, input_uri: str, output_uri: str, job_name: str,
        header: bool = False, exclude_columns: list[str] | None = None, max_records: int = 1000,
        instance_type: str | None = None, instance_count: int = 1, tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        result = batch_transform(
            entry_point=entry_point, model_uri=model["model_uri"], input_uri=input_uri, output_uri=output_uri,
            header=header, exclude_columns=list(exclude_columns or []), max_records=max_records, store=self.store,
        )
        self._states[job_name] = state = {"job_name": job_name, "result": result}
        return state

    def poll(self, job_name: str) -> dict[str, Any] | None:
        return {"status": JobStatus.COMPLETED, "job_name": job_name, "failure_reason": None}

    wait = poll

    def load_state(self, job_name: str) -> dict[str, Any]:
        return self._states[job_name]

    def retry(self, state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any] | None:
        return None  # a failed local transform raised already

    def wait_retrying(self, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return state, {"status": JobStatus.COMPLETED, "job_name": state["job_name"], "failure_reason": None}

    def finish(self, state: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
        return state["result"]

    def stop(self, job_name: str) -> None:
        """Nothing runs after :meth:`launch_model` returned."""
