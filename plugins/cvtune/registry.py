"""A model registry shaped like SageMaker's model package groups, on the artifact store.

``{root}/registry/{group}/group.json`` and one ``v{n}.json`` per version; each version holds the
model (copied under ``v{n}/model/`` so it outlives job directories), hyperparameters, CV and
holdout metrics, the data fingerprint and an approval status
(``PendingManualApproval`` | ``Approved`` | ``Rejected``).

The approval gate is champion/challenger (:func:`decide_approval`): a new version is approved
automatically only when its holdout metric reaches the threshold *and* beats the currently
approved version's by at least ``margin`` (in the metric's direction; margin 0 means "not
worse": a tie is approved); otherwise it waits for a person as ``PendingManualApproval``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import Any

from cvtune import store
from cvtune.errors import ConfigError

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
GROUP_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def decide_approval(
    metric_name: str,
    value: float | None,
    threshold: float | None,
    champion: dict[str, Any] | None,
    maximize: bool = True,
    margin: float = 0.0,
) -> tuple[str, str]:
    """The gate: ``(status, reason)`` for a challenger with holdout ``value``.

    ``threshold`` is read in the metric's direction: at least it when maximizing, at most it when
    minimizing. Against a champion the challenger must be better by ``margin`` or more
    (``value >= champion + margin`` when maximizing, ``value <= champion - margin`` when
    minimizing); ``margin=0`` approves a challenger that is merely not worse.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError("champion_margin", f"must be a finite number >= 0, got {margin}", "use 0 for 'not worse'")
    if value is None:
        return PENDING, f"no holdout {metric_name} to judge by; a person must approve"
    if not math.isfinite(value):
        return PENDING, f"holdout {metric_name} is {value}; a person must approve"
    sense = "at least" if maximize else "at most"
    if threshold is not None and (value < threshold if maximize else value > threshold):
        return PENDING, f"holdout {metric_name} {value:.6g} misses the threshold ({sense} {threshold:.6g})"
    meets = f"meets the threshold ({sense} {threshold:.6g})" if threshold is not None else "has no threshold"
    if champion is not None:
        best = (champion.get("holdout_metrics") or {}).get(metric_name)
        if best is not None:
            needed = best + margin if maximize else best - margin
            beats = value >= needed if maximize else value <= needed
            versus = f"approved version {champion['version']} ({best:.6g})"
            if not beats:
                problem = f"does not beat {versus} by the margin {margin:g}" if margin else f"is worse than {versus}"
                return PENDING, (
                    f"holdout {metric_name} {value:.6g} {problem}; needs {'>=' if maximize else '<='} {needed:.6g}"
                )
            wins = f"beats {versus} by at least {margin:g}" if margin else f"is not worse than {versus}"
            return APPROVED, f"holdout {metric_name} {value:.6g} {meets} and {wins}"
        return APPROVED, (
            f"holdout {metric_name} {value:.6g} {meets}; approved version {champion['version']} has no "
            f"holdout {metric_name} to compare with"
        )
    return APPROVED, f"holdout {metric_name} {value:.6g} {meets} and there is no champion"


class LocalModelRegistry:
    def __init__(self, root: str) -> None:
        self.root = store.join(root, "registry")

    def _group_uri(self, group: str) -> str:
        if not GROUP_RE.match(group or ""):
            raise ConfigError("model_package_group", f"{group!r} is not a valid group name", "use letters, digits and hyphens (max 63)")
        return store.join(self.root, group)

    def versions(self, group: str) -> list[dict[str, Any]]:
        uri = self._group_uri(group)
        if not store.exists(uri):
            return []
        names = [n for n in store.listdir(uri) if re.fullmatch(r"v\d+\.json", n)]
        out = []
        for name in names:
            text = store.read_text(store.join(uri, name))
            if text.strip() and "version" in (data := json.loads(text)):  # skip numbers claimed mid-write
                out.append(data)
        return sorted(out, key=lambda v: v["version"])

    def approved(self, group: str) -> dict[str, Any] | None:
        """The latest approved version: the champion."""
        approved = [v for v in self.versions(group) if v["approval_status"] == APPROVED]
        return approved[-1] if approved else None

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
        """Add a version. With ``idempotency_key``, a retry returns the version registered before."""
        if approval_status not in STATUSES:
            raise ConfigError("approval_status", f"unknown status {approval_status!r}", f"use one of {', '.join(STATUSES)}")
        uri = self._group_uri(group)
        existing = self.versions(group)
        if idempotency_key:
            for v in existing:
                if v.get("idempotency_key") == idempotency_key:
                    return v
        if not store.exists(store.join(uri, "group.json")):
            store.write_json(store.join(uri, "group.json"), {"model_package_group": group, "created": time.time()})
        number = (existing[-1]["version"] if existing else 0) + 1
        while True:
            version_uri = store.join(uri, f"v{number}.json")
            if self._claim(version_uri):
                break
            number += 1  # a concurrent registration took this number
        model_copy = store.join(uri, f"v{number}", "model")
        if store.is_local(model_uri) and os.path.isdir(store.local_path(model_uri)):
            store.upload_dir(store.local_path(model_uri), model_copy)
        else:
            model_copy = model_uri
        version = {
            "model_package_group": group,
            "version": number,
            "model_package_arn": f"local:model-package/{group}/{number}",
            "model_uri": model_copy,
            "source_model_uri": model_uri,
            "hyperparameters": hyperparameters,
            "cv_metrics": cv_metrics,
            "holdout_metrics": holdout_metrics,
            "data_fingerprint": data_fingerprint,
            "approval_status": approval_status,
            "approval_reason": approval_reason,
            "idempotency_key": idempotency_key,
            "created": time.time(),
            "metadata": metadata or {},
        }
        store.write_json(version_uri, version)
        return version

    def set_status(self, group: str, version: int, status: str, reason: str = "") -> dict[str, Any]:
        if status not in STATUSES:
            raise ConfigError("approval_status", f"unknown status {status!r}", f"use one of {', '.join(STATUSES)}")
        uri = store.join(self._group_uri(group), f"v{version}.json")
        if not store.exists(uri):
            raise ConfigError("version", f"{group} has no version {version}")
        data = store.read_json(uri)
        data.update(approval_status=status, approval_reason=reason or data.get("approval_reason", ""))
        store.write_json(uri, data)
        return data

    @staticmethod
    def _claim(uri: str) -> bool:
        """Take version file ``uri`` with a create-only write: of two registrations, one gets it."""
        try:
            store.write_bytes(uri, json.dumps({"claimed": True}).encode(), if_none_match=True)
        except store.PreconditionFailed:
            return False
        return True


def open_registry(settings: Any, client: Any = None, s3_client: Any = None) -> Any:
    """The registry of a connection: model package groups for backend ``sagemaker``, else local."""
    if settings.backend == "sagemaker":
        from cvtune.sagemaker.config import SageMakerConfig
        from cvtune.sagemaker.registry import SageMakerModelRegistry

        config = SageMakerConfig.from_options(settings.options, source=settings.source)
        return SageMakerModelRegistry(config, client=client, s3_client=s3_client)
    return LocalModelRegistry(settings.artifact_root)
