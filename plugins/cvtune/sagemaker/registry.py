"""The model registry on SageMaker: model package groups, same interface as ``LocalModelRegistry``.

A version is a versioned model package in the group:

- ``InferenceSpecification``: the image, ``model.tar.gz`` and script-mode environment of the
  training job that made the model (read back from it, see :mod:`cvtune.sagemaker.final_training`),
  ``text/csv`` in and out, the transform instance type;
- ``ModelMetrics.ModelQuality.Statistics``: a JSON file on S3 (``{s3_prefix}/registry/{group}/
  {key}/statistics.json``) in the model-quality shape (``binary_classification_metrics`` or
  ``regression_metrics`` with the holdout values) plus a ``cvtune`` section: CV mean/std/fold
  scores, holdout metrics, hyperparameters, data fingerprint, ledgers, DAG run;
- ``CustomerMetadataProperties``: what the gate and the next run read without touching S3 —
  holdout metrics, hyperparameters, data fingerprint, tuning ledgers, DAG run id, training job
  and the idempotency key. Values that the API's character set cannot hold (commas, quotes,
  > 256 characters) are left out there; the statistics file keeps everything.

The approval gate is :func:`cvtune.registry.decide_approval`, fed with the latest ``Approved``
version as champion. A retried register task finds the version it created: the key's digest is
in the package description (so ``ListModelPackages`` summaries can be filtered without a
``DescribeModelPackage`` per version), the key itself in the metadata (checked with
``DescribeModelPackage``), and ``ClientToken`` covers a create whose response was lost.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import unicodedata
from typing import Any

from cvtune.errors import ConfigError
from cvtune.registry import APPROVED, check_group, check_status
from cvtune.sagemaker.config import LazyClients
from cvtune.sagemaker.errors import is_already_exists, is_not_found

PREFIX = "cvtune:"
KEY = PREFIX + "idempotency-key"
MAX_METADATA = 50  # entries in CustomerMetadataProperties
MAX_LEDGERS = 10
CLASSIFICATION = {"auc", "accuracy", "f1", "logloss", "precision", "recall"}
CONTENT_TYPES = ["text/csv"]


def metadata_safe(value: str) -> bool:
    """Whether ``value`` fits a CustomerMetadataProperties value: ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]{1,256}``."""
    return 1 <= len(value) <= 256 and all(
        ch.isalnum() or unicodedata.category(ch).startswith("Z") or ch in "_.:/=+-@" for ch in value
    )


def key_digest(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)




def objective_metric(cv_metrics: dict[str, Any] | None) -> str:
    objective = (cv_metrics or {}).get("objective")
    return str((objective.get("metric") if isinstance(objective, dict) else objective) or "")


def statistics_document(
    holdout_metrics: dict[str, float], cv_metrics: dict[str, Any], record: dict[str, Any]
) -> dict[str, Any]:
    """Model-quality statistics (the shape SageMaker Studio shows) plus the full cvtune record."""
    section = "regression_metrics"
    if any(name in CLASSIFICATION for name in holdout_metrics):
        section = "binary_classification_metrics"
    cv_metric = objective_metric(cv_metrics).split(":")[-1] or None

    def entry(name: str, value: float) -> dict[str, Any]:
        std = cv_metrics.get("std") if name == cv_metric else None
        return {"value": value, "standard_deviation": std if isinstance(std, (int, float)) else "NaN"}

    return {
        "version": 0.0,
        section: {name: entry(name, value) for name, value in sorted(holdout_metrics.items())},
        "cvtune": record,
    }


class SageMakerModelRegistry(LazyClients):
    """Model package groups on SageMaker. ``client``/``s3_client``: injected boto3 clients (tests)."""

    def __init__(self, config: Any, client: Any = None, s3_client: Any = None, transform_instance_type: str | None = None):
        self.config = config
        self._client = client
        self._s3 = s3_client
        self.transform_instance_type = transform_instance_type or config.instance_type

    # -- reading ---------------------------------------------------------------------------
    def _summaries(self, group: str, **filters: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        while True:
            request = {"ModelPackageGroupName": group, "SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100}
            request.update(filters)
            if token:
                request["NextToken"] = token
            page = self._list(**request)
            out.extend(page.get("ModelPackageSummaryList") or [])
            token = page.get("NextToken")
            if not token:
                return out

    def _list(self, **request: Any) -> dict[str, Any]:
        """ListModelPackages; a group that does not exist (yet) has no versions."""
        try:
            return self.client.list_model_packages(**request)
        except Exception as exc:  # noqa: BLE001 - botocore ClientError, told apart by code/message
            if is_not_found(exc):
                return {"ModelPackageSummaryList": []}
            raise

    def _describe(self, arn: str) -> dict[str, Any]:
        return self.client.describe_model_package(ModelPackageName=arn)

    def versions(self, group: str) -> list[dict[str, Any]]:
        """Every version of ``group``, oldest first (``[]`` if the group does not exist)."""
        check_group(group)
        return sorted(
            (self._version(self._describe(s["ModelPackageArn"])) for s in self._summaries(group)),
            key=lambda v: v["version"],
        )

    def approved(self, group: str) -> dict[str, Any] | None:
        """The latest approved version: the champion."""
        check_group(group)
        page = self._list(
            ModelPackageGroupName=group, ModelApprovalStatus=APPROVED, SortBy="CreationTime", SortOrder="Descending",
            MaxResults=1,
        )
        summaries = page.get("ModelPackageSummaryList") or []
        return self._version(self._describe(summaries[0]["ModelPackageArn"])) if summaries else None

    def find(self, group: str, idempotency_key: str) -> dict[str, Any] | None:
        """The version registered before with this key, if any."""
        marker = f"[cvtune {key_digest(idempotency_key)}]"
        for summary in reversed(self._summaries(group)):
            if marker in (summary.get("ModelPackageDescription") or ""):
                package = self._describe(summary["ModelPackageArn"])
                if (package.get("CustomerMetadataProperties") or {}).get(KEY) == self._stored_key(idempotency_key):
                    return self._version(package)
        return None

    @staticmethod
    def _stored_key(idempotency_key: str) -> str:
        return idempotency_key if metadata_safe(idempotency_key) else f"sha256:{key_digest(idempotency_key)}"

    @staticmethod
    def _version(package: dict[str, Any]) -> dict[str, Any]:
        """A DescribeModelPackage answer as the dict ``LocalModelRegistry`` returns."""
        meta = package.get("CustomerMetadataProperties") or {}
        container = ((package.get("InferenceSpecification") or {}).get("Containers") or [{}])[0]

        def section(name: str) -> dict[str, Any]:
            head = f"{PREFIX}{name}:"
            return {k[len(head) :]: _number(v) for k, v in meta.items() if k.startswith(head)}

        ledgers = section("tuning-ledger")
        cv = section("cv")
        if "objective" in cv:
            cv["objective"] = {"metric": cv["objective"], "type": cv.pop("objective-type", None)}
        description = package.get("ModelPackageDescription") or ""
        created: Any = package.get("CreationTime")
        return {
            "model_package_group": package.get("ModelPackageGroupName"),
            "version": package.get("ModelPackageVersion"),
            "model_package_arn": package["ModelPackageArn"],
            "model_uri": container.get("ModelDataUrl"),
            "source_model_uri": container.get("ModelDataUrl"),
            "hyperparameters": section("hp"),
            "cv_metrics": cv,
            "holdout_metrics": {k: float(v) for k, v in section("holdout").items()},
            "data_fingerprint": meta.get(PREFIX + "data-fingerprint"),
            "approval_status": package.get("ModelApprovalStatus"),
            "approval_reason": package.get("ApprovalDescription") or description.split(" [cvtune ")[0],
            "idempotency_key": meta.get(KEY),
            "created": created.timestamp() if hasattr(created, "timestamp") else created,
            "metadata": {
                "training_job": meta.get(PREFIX + "training-job"),
                "entry_point": meta.get(PREFIX + "entry-point"),
                "dag_run_id": meta.get(PREFIX + "dag-run-id"),
                "tuning_ledgers": [ledgers[k] for k in sorted(ledgers, key=int)],
            },
            "statistics_uri": (
                ((package.get("ModelMetrics") or {}).get("ModelQuality") or {}).get("Statistics") or {}
            ).get("S3Uri"),
            "container": container,
        }

    # -- writing ---------------------------------------------------------------------------
    def ensure_group(self, group: str) -> str:
        """The group's ARN, creating the group if it does not exist yet."""
        try:
            return self.client.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
        except Exception as exc:  # noqa: BLE001 - botocore ClientError, told apart by code/message
            if not is_not_found(exc):
                raise
        try:
            return self.client.create_model_package_group(
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=f"cvtune models of {group}",
                Tags=self.config.tag_list(),
            )["ModelPackageGroupArn"]
        except Exception as exc:  # noqa: BLE001
            if not is_already_exists(exc):
                raise
            # a concurrent registration created it in between
            return self.client.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]

    def register(
        self,
        group: str,
        *,
        model_uri: str,
        hyperparameters: dict[str, Any],
        cv_metrics: dict[str, Any],
        holdout_metrics: dict[str, float],
        data_fingerprint: str | None,
        approval_status: str,
        approval_reason: str = "",
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add a version. With ``idempotency_key``, a retry returns the version registered before.

        ``metadata["training_job"]`` names the training job whose container serves the model
        (required: the image and script are read from it).
        """
        check_status(approval_status)
        check_group(group)
        metadata = dict(metadata or {})
        job = metadata.get("training_job")
        if not job:
            raise ConfigError("model", "no training job recorded", "register TrainModelOperator's output (it has job_name)")
        if not model_uri.startswith("s3://"):
            raise ConfigError("model_uri", f"{model_uri!r} is not on S3", "train the model with the sagemaker backend")
        if idempotency_key:
            found = self.find(group, idempotency_key)
            if found is not None:
                return found
        from cvtune.sagemaker.final_training import training_job_container

        container = training_job_container(self.client, job)
        if container["ModelDataUrl"] != model_uri:
            raise ConfigError(
                "model_uri", f"{model_uri} is not the model of training job {job} ({container['ModelDataUrl']})"
            )
        self.ensure_group(group)
        digest = key_digest(idempotency_key or f"{group}/{job}/{time.time()}")
        record = {
            "model_package_group": group,
            "model_uri": model_uri,
            "hyperparameters": hyperparameters,
            "cv_metrics": cv_metrics,
            "holdout_metrics": holdout_metrics,
            "data_fingerprint": data_fingerprint,
            "approval_status": approval_status,
            "approval_reason": approval_reason,
            "idempotency_key": idempotency_key,
            "metadata": metadata,
        }
        statistics = self._upload_statistics(group, digest, statistics_document(holdout_metrics, cv_metrics, record))
        description = f"{approval_reason or 'registered by cvtune'}"[:990] + f" [cvtune {digest}]"
        request: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageDescription": description,
            "InferenceSpecification": {
                "Containers": [container],
                "SupportedContentTypes": CONTENT_TYPES,
                "SupportedResponseMIMETypes": CONTENT_TYPES,
                "SupportedTransformInstanceTypes": [self.transform_instance_type],
            },
            "ModelApprovalStatus": approval_status,
            "ModelMetrics": {"ModelQuality": {"Statistics": statistics}},
            "MetadataProperties": {"GeneratedBy": job},
            "CustomerMetadataProperties": self._metadata(
                idempotency_key, job, hyperparameters, cv_metrics, holdout_metrics, data_fingerprint, metadata
            ),
            "ClientToken": digest,
            "Tags": self.config.tag_list(),
        }
        if not request["Tags"]:
            del request["Tags"]
        arn = self.client.create_model_package(**request)["ModelPackageArn"]
        return self._version(self._describe(arn))

    def _upload_statistics(self, group: str, digest: str, document: dict[str, Any]) -> dict[str, str]:
        from cvtune.store import split_s3_uri

        body = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        uri = f"{self.config.s3_prefix}/registry/{group}/{digest}/statistics.json"
        bucket, key = split_s3_uri(uri)
        extra: dict[str, Any] = {}
        if self.config.output_kms_key_id:
            extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.config.output_kms_key_id}
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json", **extra)
        return {
            "ContentType": "application/json",
            "ContentDigest": "sha256:" + hashlib.sha256(body).hexdigest(),
            "S3Uri": uri,
        }

    @staticmethod
    def _metadata(
        idempotency_key: str | None,
        job: str,
        hyperparameters: dict[str, Any],
        cv_metrics: dict[str, Any],
        holdout_metrics: dict[str, float],
        data_fingerprint: str | None,
        metadata: dict[str, Any],
    ) -> dict[str, str]:
        """Most important first: entries past the 50-entry limit are dropped (the file has all)."""
        entries: list[tuple[str, Any]] = [(KEY, SageMakerModelRegistry._stored_key(idempotency_key) if idempotency_key else None)]
        entries += [
            (PREFIX + "training-job", job),
            (PREFIX + "data-fingerprint", data_fingerprint),
            (PREFIX + "dag-run-id", metadata.get("dag_run_id")),
            (PREFIX + "entry-point", (metadata.get("entry_point") or "").rsplit("/", 1)[-1] or None),
        ]
        entries += [(f"{PREFIX}holdout:{k}", v) for k, v in sorted(holdout_metrics.items())]
        cv = cv_metrics or {}
        objective: dict[str, Any] = cv["objective"] if isinstance(cv.get("objective"), dict) else {}
        entries += [(f"{PREFIX}cv:objective", objective_metric(cv) or None), (f"{PREFIX}cv:objective-type", objective.get("type"))]
        entries += [(f"{PREFIX}cv:{k}", cv.get(k)) for k in ("mean", "std", "run_id", "trial")]
        entries += [(f"{PREFIX}tuning-ledger:{i}", u) for i, u in enumerate((metadata.get("tuning_ledgers") or [])[:MAX_LEDGERS])]
        entries += [(f"{PREFIX}hp:{k}", v) for k, v in sorted(hyperparameters.items())]
        out: dict[str, str] = {}
        for key, value in entries:
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                continue
            text = repr(value) if isinstance(value, float) else str(value)
            if metadata_safe(text) and metadata_safe(key[:128]) and len(out) < MAX_METADATA:
                out[key] = text
        return out

    def set_status(self, group: str, version: int, status: str, reason: str = "") -> dict[str, Any]:
        check_status(status)
        check_group(group)
        summary = next((s for s in self._summaries(group) if s.get("ModelPackageVersion") == version), None)
        if summary is None:
            raise ConfigError("version", f"{group} has no version {version}")
        arn = summary["ModelPackageArn"]
        request: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
        if reason:
            request["ApprovalDescription"] = reason[:1024]
        metadata = self._describe(arn).get("CustomerMetadataProperties")
        if metadata:
            # Re-sent unchanged: SageMaker merges the map, but implementations that replace it
            # (moto) would otherwise lose the idempotency key and the holdout metrics.
            request["CustomerMetadataProperties"] = metadata
        self.client.update_model_package(**request)
        return self._version(self._describe(arn))
