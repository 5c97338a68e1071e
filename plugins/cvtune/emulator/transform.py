"""Models and batch transform jobs: ``CreateModel``, ``CreateTransformJob`` and their describes.

What a transform job does, as the batch transform guide describes it:

- it reads every object under the ``S3Prefix`` ("SageMaker uses all objects with the specified key
  name prefix for batch transform") and writes one output per input object, named after it with
  ``.out`` ("SageMaker stores the inferences in the S3 location … with the same name as the input
  file, with .out appended");
- ``SplitType=Line`` splits each object into records; ``BatchStrategy=MultiRecord`` packs as many
  records as fit in ``MaxPayloadInMB`` into one request, ``SingleRecord`` one per request;
- ``DataProcessing.InputFilter`` selects CSV columns with JSONPath. The batch-transform data
  processing page says ``$[1:4]`` selects the 2nd through 5th columns — slice ends are *inclusive*,
  unlike Python's. Filters holding more than one range (``$[0:10,11:]``) were refused by SageMaker
  (sagemaker-python-sdk issue #1112); the emulator fails such a job (the stricter reading of pages
  that only show single ranges). ``JoinSource=Input`` appends the output to the (unfiltered)
  input record; ``OutputFilter`` selects from the joined record. JSON filtering is not emulated;
- the model's container serves through the script's ``model_fn`` / ``input_fn`` / ``predict_fn``
  / ``output_fn`` (:mod:`cvtune.emulator._serve`), with the code from ``SAGEMAKER_SUBMIT_DIRECTORY``
  (an ``s3://`` ``sourcedir.tar.gz`` the container downloads — impossible under the model's
  ``EnableNetworkIsolation``) or, as the SDK repacks it, ``code/`` inside ``model.tar.gz``;
- ``TransformJobStatus``: ``InProgress`` → ``Completed`` | ``Failed`` | ``Stopping`` → ``Stopped``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cvtune.emulator import runner, s3io
from cvtune.states import JobStatus

if TYPE_CHECKING:
    from cvtune.emulator.service import Service

log = logging.getLogger("cvtune.emulator.transform")
_INDEX = re.compile(r"^\s*(\d+)\s*$")
_SLICE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


class FilterError(Exception):
    pass


def select_columns(expression: str | None, columns: list[str]) -> list[str]:
    """The columns of one CSV record that the JSONPath ``expression`` selects (AWS semantics)."""
    if not expression or expression.strip() == "$":
        return columns
    text = expression.strip()
    if not (text.startswith("$[") and text.endswith("]")):
        raise FilterError(f"unsupported JSONPath for CSV input: {expression!r}")
    parts = text[2:-1].split(",")
    slices = [p for p in parts if ":" in p]
    if len(slices) > 1:
        raise FilterError(f"{expression!r} has more than one range; SageMaker takes one range per filter")
    out: list[str] = []
    for part in parts:
        if (m := _INDEX.match(part)) is not None:
            i = int(m.group(1))
            if i >= len(columns):
                raise FilterError(f"index {i} of {expression!r} is beyond the record's {len(columns)} columns")
            out.append(columns[i])
        elif (m := _SLICE.match(part)) is not None:
            start = int(m.group(1) or 0)
            end = int(m.group(2)) if m.group(2) else len(columns) - 1  # inclusive, as AWS documents
            out.extend(columns[start : end + 1])
        else:
            raise FilterError(f"unsupported JSONPath element {part!r} in {expression!r}")
    return out


def batches(records: list[str], strategy: str, max_payload_mb: int) -> list[list[str]]:
    if strategy == "SingleRecord":
        return [[r] for r in records]
    limit = max(1, max_payload_mb) * 1024 * 1024
    out: list[list[str]] = []
    size = 0
    for record in records:
        if out and size + len(record) + 1 <= limit:
            out[-1].append(record)
            size += len(record) + 1
        else:
            out.append([record])
            size = len(record) + 1
    return out


@dataclass
class TransformJob:
    request: dict[str, Any]
    arn: str
    created: float
    status: str = JobStatus.IN_PROGRESS
    start: float | None = None
    end: float | None = None
    failure: str | None = None
    modified: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.request["TransformJobName"]

    def describe(self) -> dict[str, Any]:
        r = self.request
        out: dict[str, Any] = {
            "TransformJobName": self.name,
            "TransformJobArn": self.arn,
            "TransformJobStatus": self.status,
            "ModelName": r["ModelName"],
            "TransformInput": r["TransformInput"],
            "TransformOutput": r["TransformOutput"],
            "TransformResources": r["TransformResources"],
            "CreationTime": self.created,
        }
        for key in ("BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms", "Environment", "DataProcessing"):
            if r.get(key) is not None:
                out[key] = r[key]
        if self.start is not None:
            out["TransformStartTime"] = self.start
        if self.end is not None:
            out["TransformEndTime"] = self.end
        if self.failure:
            out["FailureReason"] = self.failure
        return out


class TransformRun:
    """Runs one transform job in its own thread."""

    def __init__(self, service: Service, job: TransformJob, model: dict[str, Any]) -> None:
        self.service, self.job, self.model = service, job, model

    def run(self) -> None:
        job = self.job
        try:
            if self.service.clock.wait(self.service.config.timing.provision_s, job.stop):
                return self._end(JobStatus.STOPPED)
            with self.service.lock:
                job.start = self.service.clock.now()
            if self.service.faults.transform_fails():
                return self._end(JobStatus.FAILED, "InternalServerError: We encountered an internal error. Please try again.")
            self._transform()
        except (FilterError, runner.ClientError) as exc:
            self._end(JobStatus.FAILED, f"ClientError: {exc}")
        except runner.AlgorithmError as exc:
            self._end(JobStatus.FAILED, f"AlgorithmError: {exc}")
        except Exception as exc:  # noqa: BLE001
            log.exception("transform job %s crashed", job.name)
            self._end(JobStatus.FAILED, f"InternalServerError: emulator error: {exc}")
        else:
            self._end(JobStatus.STOPPED if job.stop.is_set() else JobStatus.COMPLETED)

    def _end(self, status: str, failure: str | None = None) -> None:
        with self.service.lock:
            now = self.service.clock.now()
            self.job.status, self.job.failure, self.job.end, self.job.modified = status, failure, now, now

    def _code(self, root: runner.JobRoot, model_dir: str) -> tuple[str, str]:
        container = self.model["PrimaryContainer"]
        env = container.get("Environment") or {}
        program = env.get("SAGEMAKER_PROGRAM")
        submit = env.get("SAGEMAKER_SUBMIT_DIRECTORY")
        if not program:
            raise runner.ClientError("the model's container has no SAGEMAKER_PROGRAM")
        packed = os.path.join(model_dir, "code")
        if os.path.isfile(os.path.join(packed, program)):
            return packed, program
        if not submit:
            raise runner.ClientError("the model's container has no SAGEMAKER_SUBMIT_DIRECTORY and model.tar.gz has no code/")
        if submit.startswith("s3://"):
            if self.model.get("EnableNetworkIsolation"):
                raise runner.AlgorithmError(
                    f"could not download {submit}: the model's container has no network access (EnableNetworkIsolation); "
                    "put the code in model.tar.gz under code/"
                )
            s3io.extract(s3io.read(self.service.s3, submit), root("code"))
            return root("code"), program
        raise runner.ClientError(f"SAGEMAKER_SUBMIT_DIRECTORY {submit!r} is not an s3:// URI")

    def _transform(self) -> None:
        r, s3 = self.job.request, self.service.s3
        root = runner.JobRoot.make(self.job.name)
        try:
            model_dir = root("model")
            s3io.extract(s3io.read(s3, self.model["PrimaryContainer"]["ModelDataUrl"]), model_dir)
            code_dir, program = self._code(root, model_dir)
            source = r["TransformInput"]["DataSource"]["S3DataSource"]
            prefix_uri = source["S3Uri"]
            bucket, prefix = s3io.split(prefix_uri)
            keys = s3io.objects(s3, prefix_uri)
            if not keys:
                raise runner.ClientError(f"No S3 objects found under S3 URL \"{prefix_uri}\"")
            processing = r.get("DataProcessing") or {}
            split = r["TransformInput"].get("SplitType", "None")
            strategy = r.get("BatchStrategy", "MultiRecord")
            objects: list[dict[str, Any]] = []
            originals: dict[str, list[str]] = {}
            for i, key in enumerate(keys):
                text = s3io.read(s3, f"s3://{bucket}/{key}").decode("utf-8")
                records = [line for line in text.splitlines() if line.strip()] if split == "Line" else [text]
                filtered = [",".join(select_columns(processing.get("InputFilter"), rec.split(","))) for rec in records]
                relative = key[len(prefix):].lstrip("/") if key != prefix else os.path.basename(key)
                out_path = root("output", f"{i}.out")
                objects.append({"key": relative, "output": out_path,
                                "batches": batches(filtered, strategy, int(r.get("MaxPayloadInMB", 6)))})
                originals[out_path] = records
            os.makedirs(root("output"), exist_ok=True)
            spec = {
                "code_dir": code_dir, "program": program, "model_dir": model_dir,
                "content_type": r["TransformInput"].get("ContentType", "text/csv"),
                "accept": r["TransformOutput"].get("Accept", "text/csv"),
                "objects": objects,
            }
            with open(root("spec.json"), "w") as f:
                json.dump(spec, f)
            env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin", "HOME": root.path,
                   "LANG": "C.UTF-8", "SAGEMAKER_BATCH": "true", **(self.model["PrimaryContainer"].get("Environment") or {}),
                   **(r.get("Environment") or {})}
            serve = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_serve.py")
            with open(root("transform.log"), "wb") as logf:
                proc = subprocess.Popen([sys.executable, serve, root("spec.json")], env=env, cwd=code_dir,
                                        stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
                while proc.poll() is None:
                    if self.job.stop.wait(0.05):
                        proc.kill()
                        proc.wait()
                        return
            if proc.returncode != 0:
                with open(root("transform.log"), encoding="utf-8", errors="replace") as f:
                    tail = f.read()[-800:]
                raise runner.AlgorithmError(f"the model container exited with code {proc.returncode}: {tail}")
            output = r["TransformOutput"]["S3OutputPath"].rstrip("/")
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": r["TransformOutput"]["KmsKeyId"]} if r["TransformOutput"].get("KmsKeyId") else {}
            for item in objects:
                with open(item["output"], encoding="utf-8") as f:
                    produced = f.read()
                if processing.get("JoinSource") == "Input":
                    produced = self._join(originals[item["output"]], produced, processing.get("OutputFilter"))
                s3io.write(s3, f"{output}/{item['key']}.out", produced.encode("utf-8"), **extra)
        finally:
            root.remove()

    @staticmethod
    def _join(records: list[str], produced: str, output_filter: str | None) -> str:
        outputs = [line for line in produced.splitlines() if line.strip()]
        if len(outputs) != len(records):
            raise runner.ClientError(f"cannot join {len(outputs)} outputs to {len(records)} input records")
        joined = [select_columns(output_filter, f"{rec},{out}".split(",")) for rec, out in zip(records, outputs, strict=True)]
        return "\n".join(",".join(j) for j in joined) + "\n"
