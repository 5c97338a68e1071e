"""Batch transform on SageMaker: ``CreateModel`` + ``CreateTransformJob``, checked like the local one.

The model is the training job's own container — image, ``model.tar.gz`` and the script-mode
environment (``SAGEMAKER_PROGRAM`` / ``SAGEMAKER_SUBMIT_DIRECTORY`` = the ``sourcedir.tar.gz`` the
training ran), so the framework container serves through the script's ``model_fn`` /
``input_fn`` / ``predict_fn`` / ``output_fn``, exactly what the local transform calls.

The job mirrors :func:`cvtune.transform.batch_transform`: ``SplitType=Line``, ``AssembleWith=Line``,
``text/csv`` in and out, ``BatchStrategy=MultiRecord``; every input object ``x.csv`` yields
``x.csv.out``, and afterwards the ``.out`` objects are read back and must hold one record per
input record, per file. How the local options map:

- ``header=True`` has no SageMaker counterpart (every line is a record), so the files are staged
  without their first line under ``{s3_prefix}/transform-input/{job}/`` first — the data passes
  through the worker once. Local input files are staged the same way (uploaded).
- ``exclude_columns`` are dropped by name while staging (they need a header, so the files are
  staged anyway). No ``DataProcessing.InputFilter`` is sent: AWS's JSONPath slices are inclusive
  (the batch-transform data-processing page: ``$[1:4]`` is the 2nd through 5th column), so the
  ``$[0:30]`` cvtune used to send for 30 features passed the target too, and filters with more
  than one range (``$[0:10,11:]``) were refused by SageMaker (sagemaker-python-sdk issue #1112).
  Staging has neither problem and no 63-character limit.
- ``max_records`` does not map: SageMaker batches by size, ``MaxPayloadInMB`` (default 6).

Names are deterministic: the model is named after a digest of its container (a retry, or the
same model version transformed again, reuses it), the job after the task; a retried task finds
its job (``ResourceInUse``) and re-attaches instead of starting another.

Waiting polls ``DescribeTransformJob``: in the worker on the boto3 client
(:meth:`SageMakerBatchTransform.wait`), or, when the operator defers, in the triggerer's event
loop on the amazon provider's aiobotocore client (:meth:`SageMakerBatchTransform.apoll`, from
:class:`cvtune.triggers.transform.TransformJobTrigger`). Both map the response with
:func:`job_outcome` — the dict ``wait`` returns, the trigger's event carries and
:meth:`SageMakerBatchTransform.finish` takes — and a job that does not exist with
:func:`_raise_if_missing`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cvtune import store
from cvtune.errors import ConfigError, JobNotFoundError, RunFailedError
from cvtune.sagemaker.config import LazyClients
from cvtune.sagemaker.errors import error_code, error_message, is_already_exists, is_not_found
from cvtune.sagemaker.throttle import Backoff
from cvtune.states import JOB_ENDED, JobStatus
from cvtune.store import split_s3_uri

CONTENT_TYPE = "text/csv"


def transform_instance_types() -> tuple[str, ...]:
    """Instance types ``CreateTransformJob`` accepts, from botocore's service model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shape = model.shape_for("TransformInstanceType")
    return tuple(shape.enum)


def model_name(container: dict[str, Any]) -> str:
    """Deterministic and content-addressed: the same container always gets the same model."""
    digest = hashlib.sha256(json.dumps(container, sort_keys=True).encode()).hexdigest()[:16]
    return f"cvtune-model-{digest}"


def drop_columns(lines: list[str], header: list[str], exclude: list[str]) -> list[str]:
    """CSV ``lines`` (no header) without the ``exclude`` columns of ``header``, quoting kept as CSV."""
    missing = sorted(set(exclude) - set(header))
    if missing:
        raise ConfigError("exclude_columns", f"{missing} not in the header {header}")
    keep = [i for i, name in enumerate(header) if name not in set(exclude)]
    if not keep:
        raise ConfigError("exclude_columns", "would exclude every column")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(lines):
        if len(row) != len(header):
            raise ConfigError("input_uri", f"a record has {len(row)} columns, the header {len(header)}: {row[:5]}…")
        writer.writerow([row[i] for i in keep])
    return out.getvalue().splitlines()


def model_request(config: Any, name: str, container: dict[str, Any], tags: dict[str, str] | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ModelName": name,
        "PrimaryContainer": {
            "Image": container["Image"],
            "ModelDataUrl": container["ModelDataUrl"],
            "Environment": dict(container.get("Environment") or {}),
        },
        "ExecutionRoleArn": config.role_arn,
        "EnableNetworkIsolation": config.enable_network_isolation,
    }
    if config.vpc_config:
        request["VpcConfig"] = {"SecurityGroupIds": config.vpc_config["SecurityGroupIds"], "Subnets": config.vpc_config["Subnets"]}
    tag_list = config.tag_list(tags)
    if tag_list:
        request["Tags"] = tag_list
    return request


def transform_request(
    config: Any,
    *,
    job_name: str,
    model: str,
    input_prefix: str,
    output_uri: str,
    instance_type: str | None = None,
    instance_count: int = 1,
    max_payload_mb: int = 6,
    max_concurrent_transforms: int | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``CreateTransformJob`` request (pure: no client, so it can be shown in a dry run)."""
    instance_type = instance_type or config.instance_type
    if instance_type not in transform_instance_types():
        raise ConfigError(
            "instance_type", f"{instance_type!r} cannot run batch transform jobs", "pick a TransformInstanceType, e.g. ml.m5.large"
        )
    if not isinstance(instance_count, int) or instance_count < 1:
        raise ConfigError("instance_count", f"must be a positive integer, got {instance_count!r}")
    if not isinstance(max_payload_mb, int) or not 1 <= max_payload_mb <= 100:
        raise ConfigError("max_payload_mb", f"must be an integer in 1..100, got {max_payload_mb!r}")
    request: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_prefix}},
            "ContentType": CONTENT_TYPE,
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": CONTENT_TYPE, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
    }
    if max_concurrent_transforms:
        request["MaxConcurrentTransforms"] = max_concurrent_transforms
    if config.output_kms_key_id:
        request["TransformOutput"]["KmsKeyId"] = config.output_kms_key_id
    if config.volume_kms_key_id:
        request["TransformResources"]["VolumeKmsKeyId"] = config.volume_kms_key_id
    tag_list = config.tag_list(tags)
    if tag_list:
        request["Tags"] = tag_list
    return request




def job_outcome(job: dict[str, Any]) -> dict[str, Any] | None:
    """A ``DescribeTransformJob`` response as the result of waiting: None while the job runs, else
    ``{"status", "job_name", "failure_reason"}`` (JSON-able: it travels as the trigger's event)."""
    status = job["TransformJobStatus"]
    if status not in JOB_ENDED:
        return None
    return {"status": status, "job_name": job["TransformJobName"], "failure_reason": job.get("FailureReason")}


def _raise_if_missing(job_name: str, exc: Exception) -> None:
    """Raise :class:`JobNotFoundError` if ``exc`` says there is no job ``job_name``."""
    if is_not_found(exc):
        raise JobNotFoundError(f"no batch transform job {job_name} ({error_code(exc)}: {error_message(exc)})") from exc


def _records(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


class SageMakerBatchTransform(LazyClients):
    """Runs one batch transform job and checks its output. Clients are injectable (tests).

    The sagemaker platform's :class:`cvtune.transform.BatchTransform`.
    """

    deferrable = True  # the job runs on SageMaker: a task can leave it to the triggerer

    def __init__(
        self,
        config: Any,
        client: Any = None,
        s3_client: Any = None,
        *,
        poll_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._client = client
        self._s3 = s3_client
        self.poll_s = poll_s
        self.sleep = sleep
        self.backoff = Backoff(sleep=sleep)

    # -- S3 ---------------------------------------------------------------------------------
    def _list(self, uri: str) -> list[str]:
        """Object URIs under a prefix (or the object itself), hidden and ``.out`` objects excluded."""
        bucket, key = split_s3_uri(uri)
        single = bool(os.path.splitext(key)[1])
        prefix = key if single or not key or key.endswith("/") else key + "/"
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents") or []:
                name = item["Key"].rsplit("/", 1)[-1]
                if single and item["Key"] != key:
                    continue
                if item["Key"].endswith("/") or name.startswith(".") or name.endswith(".out"):
                    continue
                out.append(f"s3://{bucket}/{item['Key']}")
        return sorted(out)

    def _read(self, uri: str) -> str:
        bucket, key = split_s3_uri(uri)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")

    def _read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _write(self, uri: str, text: str) -> None:
        bucket, key = split_s3_uri(uri)
        extra: dict[str, Any] = {}
        if self.config.output_kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.output_kms_key_id}
        self.s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), ContentType=CONTENT_TYPE, **extra)

    def prepare_input(
        self, input_uri: str, job_name: str, header: bool, exclude_columns: list[str]
    ) -> tuple[str, list[dict[str, Any]]]:
        """(S3 prefix to transform, [{input, key, records}]).

        Files are staged when they have a header (SageMaker would score it as a record) or are
        local; otherwise the job reads ``input_uri`` where it is.
        """
        from cvtune.transform import is_parquet, table_records

        if exclude_columns and not header and not is_parquet(input_uri):
            raise ConfigError("exclude_columns", "columns can only be excluded by name when the files have a header", "set header=True")
        if store.is_local(input_uri):
            if not os.path.exists(store.local_path(input_uri)):
                raise ConfigError("input_uri", f"{input_uri} does not exist")
            path = store.local_path(input_uri)
            files = [path] if os.path.isfile(path) else [
                os.path.join(path, n) for n in sorted(os.listdir(path)) if not n.startswith(".") and not n.endswith(".out")
            ]
            read: Callable[[str], str] = _read_local
            base = path if os.path.isdir(path) else os.path.dirname(path)
            single = False
        else:
            files = self._list(input_uri)
            read = self._read
            single = bool(os.path.splitext(split_s3_uri(input_uri)[1])[1])
            base = input_uri.rsplit("/", 1)[0] if single else input_uri
        if not files:
            raise ConfigError("input_uri", f"{input_uri} holds no input files")
        parquet = [is_parquet(uri) for uri in files]
        if any(parquet) and not all(parquet):
            raise ConfigError("input_uri", f"{input_uri} mixes Parquet and CSV files", "keep one format per input")
        if exclude_columns and not header and not all(parquet):
            raise ConfigError("exclude_columns", "columns can only be excluded by name when the files have a header", "set header=True")
        if all(parquet):
            # A transform job splits its input by line, so Parquet is staged as CSV records; the
            # excluded columns are dropped while converting (no InputFilter needed).
            read_raw = _read_local_bytes if store.is_local(input_uri) else self._read_bytes
            base = store.local_path(base) if store.is_local(input_uri) else base
            staging = f"{self.config.s3_prefix}/transform-input/{job_name}"
            entries = []
            for uri in files:
                lines = table_records(read_raw(uri), uri, exclude_columns)
                relative = os.path.relpath(uri, base) if store.is_local(input_uri) else uri[len(base.rstrip("/")) + 1 :]
                self._write(f"{staging}/{relative}", "\n".join(lines) + ("\n" if lines else ""))
                entries.append({"input": uri, "key": relative, "records": len(lines)})
            return staging + "/", entries
        # A prefix is transformed in place; anything else is staged: a header (SageMaker would
        # score it as a record), local files, and a single object (an S3Prefix would also
        # match its siblings).
        stage = header or store.is_local(input_uri) or single
        staging = f"{self.config.s3_prefix}/transform-input/{job_name}"
        entries, columns = [], None
        for uri in files:
            lines = _records(read(uri))
            if header and lines:
                names = [c.strip() for c in next(csv.reader([lines[0]]))]
                if columns is None:
                    columns = names
                elif names != columns and exclude_columns:
                    raise ConfigError("exclude_columns", f"{uri} has another header than the first file", "give all files one header")
                lines = lines[1:]
                if exclude_columns:
                    lines = drop_columns(lines, names, exclude_columns)
            relative = os.path.relpath(uri, base) if store.is_local(input_uri) else uri[len(base.rstrip("/")) + 1 :]
            if stage:
                self._write(f"{staging}/{relative}", "\n".join(lines) + ("\n" if lines else ""))
            entries.append({"input": uri, "key": relative, "records": len(lines)})
        if stage:
            prefix = staging + "/"
        else:
            prefix = base.rstrip("/") + "/"
        return prefix, entries

    # -- SageMaker -------------------------------------------------------------------------
    def ensure_model(self, container: dict[str, Any], tags: dict[str, str] | None = None) -> str:
        """Create the model unless a model of that (content-derived) name exists already."""
        if self.config.enable_network_isolation:
            raise ConfigError(
                "enable_network_isolation",
                "a network-isolated model cannot download sourcedir.tar.gz; cvtune does not repack the code into model.tar.gz yet",
                "run the batch transform with enable_network_isolation false",
            )
        name = model_name(container)
        try:
            existing = self.client.describe_model(ModelName=name)
        except Exception as exc:  # noqa: BLE001 - botocore ClientError
            if not is_not_found(exc):
                raise
        else:
            if existing["PrimaryContainer"].get("ModelDataUrl") != container["ModelDataUrl"]:
                raise RunFailedError(f"model {name} exists with other model data; refusing to reuse it")
            return name
        try:
            self.client.create_model(**model_request(self.config, name, container, tags))
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise
        return name

    def start(self, request: dict[str, Any]) -> dict[str, Any]:
        """Create the job, or re-attach to the one an earlier attempt of the task created."""
        name = request["TransformJobName"]
        try:
            self.client.create_transform_job(**request)
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise
            job = self.client.describe_transform_job(TransformJobName=name)
            same = (
                job["ModelName"] == request["ModelName"]
                and job["TransformInput"]["DataSource"] == request["TransformInput"]["DataSource"]
                and job["TransformOutput"]["S3OutputPath"] == request["TransformOutput"]["S3OutputPath"]
            )
            if not same:
                raise RunFailedError(f"transform job name {name} is taken by another job; refusing to reuse it") from None
            return {"reattached": True, "status": job["TransformJobStatus"]}
        return {"reattached": False, "status": JobStatus.IN_PROGRESS}

    def stop(self, job_name: str) -> None:
        """Ask the job to stop (the task was killed); a job that already ended is left alone."""
        try:
            self.client.stop_transform_job(TransformJobName=job_name)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "ValidationException":
                raise

    def poll(self, job_name: str) -> dict[str, Any] | None:
        """One ``DescribeTransformJob``: the ended job's :func:`job_outcome`, None while it runs."""
        try:
            job = self.backoff.call(
                f"DescribeTransformJob {job_name}", self.client.describe_transform_job, TransformJobName=job_name
            )
        except Exception as exc:  # noqa: BLE001 - botocore ClientError
            _raise_if_missing(job_name, exc)
            raise
        return job_outcome(job)

    async def apoll(self, client: Any, job_name: str) -> dict[str, Any] | None:
        """:meth:`poll` on an open aiobotocore ``client``: awaited in the running event loop, no thread."""
        try:
            job = await self.backoff.acall(
                f"DescribeTransformJob {job_name}", client.describe_transform_job, TransformJobName=job_name
            )
        except Exception as exc:  # noqa: BLE001 - botocore ClientError
            _raise_if_missing(job_name, exc)
            raise
        return job_outcome(job)

    def wait(self, job_name: str) -> dict[str, Any]:
        """Poll until the job ends; its :func:`job_outcome`."""
        while (outcome := self.poll(job_name)) is None:
            self.sleep(self.poll_s)
        return outcome

    def check_outputs(self, output_uri: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One ``.out`` per input with exactly as many records: what the local transform checks."""
        files = []
        for entry in entries:
            out = f"{output_uri.rstrip('/')}/{entry['key']}.out"
            try:
                produced = len(_records(self._read(out)))
            except Exception as exc:  # noqa: BLE001
                if not is_not_found(exc):
                    raise
                raise RunFailedError(f"batch transform of {entry['input']}: no output {out}") from None
            if produced != entry["records"]:
                raise RunFailedError(
                    f"batch transform of {entry['input']}: {entry['records']} input records but {produced} output records"
                )
            files.append({"input": entry["input"], "output": out, "records": entry["records"]})
        return files

    def launch(
        self,
        *,
        container: dict[str, Any],
        input_uri: str,
        output_uri: str,
        job_name: str,
        header: bool = False,
        exclude_columns: list[str] | None = None,
        instance_type: str | None = None,
        instance_count: int = 1,
        max_payload_mb: int = 6,
        tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Stage the input, create (or find) the model and start (or re-attach to) the job.

        Returns the JSON-able state :meth:`finish` needs — what a deferred task carries over.
        """
        if not output_uri.startswith("s3://"):
            raise ConfigError("output_uri", f"{output_uri!r} is not on S3", "the sagemaker backend writes predictions to s3://")
        started = time.time()
        prefix, entries = self.prepare_input(input_uri, job_name, header, list(exclude_columns or []))
        name = self.ensure_model(container, tags)
        request = transform_request(
            self.config, job_name=job_name, model=name, input_prefix=prefix, output_uri=output_uri,
            instance_type=instance_type, instance_count=instance_count,
            max_payload_mb=max_payload_mb, tags=tags,
        )
        launched = self.start(request)
        state = {
            "job_name": job_name, "model_name": name, "request": request, "attempt": 0, "output_uri": output_uri, "entries": entries,
            "excluded_columns": list(exclude_columns or []), "reattached": launched["reattached"], "started": started,
        }
        # a deferred task resumes from this, not from its trigger's kwargs (ids only)
        self._write(self._state_uri(job_name), json.dumps(state))
        return state

    def retry(self, state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any] | None:
        """A new job for one that failed with ``InternalServerError``, while ``retry_attempts`` last.

        ``CreateTransformJob`` has no ``RetryStrategy`` (unlike ``CreateTrainingJob``), so cvtune
        retries the way SageMaker retries training jobs: same request, under the next name
        ``{job}-r{n}`` (deterministic, so a retried task re-attaches instead of doubling it).
        Returns the new job's state (saved, like :meth:`launch`'s), or None when not retrying.
        """
        reason = outcome.get("failure_reason") or ""
        if outcome["status"] != JobStatus.FAILED or not reason.startswith("InternalServerError"):
            return None
        attempt = int(state.get("attempt", 0)) + 1
        if attempt > self.config.retry_attempts or "request" not in state:
            return None
        base = state.get("base_job_name", state["job_name"])
        name = f"{base[:59]}-r{attempt}"
        request = {**state["request"], "TransformJobName": name}
        launched = self.start(request)
        new = {**state, "job_name": name, "base_job_name": base, "request": request, "attempt": attempt,
               "reattached": launched["reattached"], "retried_after": reason}
        self._write(self._state_uri(name), json.dumps(new))
        return new

    def wait_retrying(self, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`wait`, retrying internal errors (:meth:`retry`); the last job's (state, outcome)."""
        while True:
            outcome = self.wait(state["job_name"])
            retried = self.retry(state, outcome)
            if retried is None:
                return state, outcome
            state = retried

    def launch_model(
        self, *, model: dict[str, Any], entry_point: str, input_uri: str, output_uri: str, job_name: str,
        header: bool = False, exclude_columns: list[str] | None = None, max_records: int = 1000,
        instance_type: str | None = None, instance_count: int = 1, tags: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """:meth:`launch` with the container of ``model`` (its package version or training job);
        the job runs the script the container was trained with, so ``entry_point`` is not needed."""
        from cvtune.sagemaker.final_training import container_for

        return self.launch(
            container=container_for(self.client, model), input_uri=input_uri, output_uri=output_uri,
            job_name=job_name, header=header, exclude_columns=exclude_columns, instance_type=instance_type,
            instance_count=instance_count, tags=tags,
        )

    def _state_uri(self, job_name: str) -> str:
        return f"{self.config.s3_prefix}/transform-state/{job_name}.json"

    def load_state(self, job_name: str) -> dict[str, Any]:
        """What :meth:`launch` recorded for ``job_name``."""
        return json.loads(self._read(self._state_uri(job_name)))

    def finish(self, state: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
        """The ended job's result in the local transform's shape, after the row-count check.

        ``outcome`` is the job's :func:`job_outcome` (from :meth:`wait`, or the trigger's event).
        """
        if outcome["status"] != JobStatus.COMPLETED:
            raise RunFailedError(
                f"batch transform job {state['job_name']} {outcome['status']}: "
                f"{outcome.get('failure_reason') or 'no reason given'}"
            )
        files = self.check_outputs(state["output_uri"], state["entries"])
        return {
            "output_uri": state["output_uri"],
            "files": files,
            "records": sum(f["records"] for f in files),
            "seconds": round(time.time() - state["started"], 3),
            "transform_job": state["job_name"],
            "model_name": state["model_name"],
            "reattached": state["reattached"],
            "excluded_columns": state.get("excluded_columns", []),
            "attempts": int(state.get("attempt", 0)) + 1,
        }

    def run(self, **kwargs: Any) -> dict[str, Any]:
        """:meth:`launch`, poll until the job ends, :meth:`finish` (arguments: those of launch)."""
        return self.finish(*self.wait_retrying(self.launch(**kwargs)))


def _read_local(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _read_local_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
