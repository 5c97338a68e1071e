"""A model registry shaped like SageMaker's model package groups, on the artifact store.

``{root}/registry/{group}/group.json`` and one ``v{n}.json`` per version; each version holds the
model (copied under ``v{n}/model/`` so it outlives job directories), hyperparameters, CV and
holdout metrics, the data fingerprint and an approval status (see :mod:`cvtune.registry`).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from cvtune.errors import ConfigError
from cvtune.registry import APPROVED, check_group, check_status
from cvtune.store import ArtifactStore, PreconditionFailed, default_store


class LocalModelRegistry:
    def __init__(self, root: str, store: ArtifactStore | None = None) -> None:
        self.store = store or default_store()
        self.root = self.store.join(root, "registry")

    def _group_uri(self, group: str) -> str:
        check_group(group)
        return self.store.join(self.root, group)

    def versions(self, group: str) -> list[dict[str, Any]]:
        uri = self._group_uri(group)
        if not self.store.exists(uri):
            return []
        names = [n for n in self.store.listdir(uri) if re.fullmatch(r"v\d+\.json", n)]
        out = []
        for name in names:
            text = self.store.read_text(self.store.join(uri, name))
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
        check_status(approval_status)
        uri = self._group_uri(group)
        existing = self.versions(group)
        if idempotency_key:
            for v in existing:
                if v.get("idempotency_key") == idempotency_key:
                    return v
        if not self.store.exists(self.store.join(uri, "group.json")):
            self.store.write_json(self.store.join(uri, "group.json"), {"model_package_group": group, "created": time.time()})
        number = (existing[-1]["version"] if existing else 0) + 1
        while True:
            version_uri = self.store.join(uri, f"v{number}.json")
            if self._claim(version_uri):
                break
            number += 1  # a concurrent registration took this number
        model_copy = self.store.join(uri, f"v{number}", "model")
        if self.store.is_local(model_uri) and os.path.isdir(self.store.local_path(model_uri)):
            self.store.upload_dir(self.store.local_path(model_uri), model_copy)
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
        self.store.write_json(version_uri, version)
        return version

    def set_status(self, group: str, version: int, status: str, reason: str = "") -> dict[str, Any]:
        check_status(status)
        uri = self.store.join(self._group_uri(group), f"v{version}.json")
        if not self.store.exists(uri):
            raise ConfigError("version", f"{group} has no version {version}")
        data = self.store.read_json(uri)
        data.update(approval_status=status, approval_reason=reason or data.get("approval_reason", ""))
        self.store.write_json(uri, data)
        return data

    def _claim(self, uri: str) -> bool:
        """Take version file ``uri`` with a create-only write: of two registrations, one gets it."""
        try:
            self.store.write_bytes(uri, json.dumps({"claimed": True}).encode(), if_none_match=True)
        except PreconditionFailed:
            return False
        return True
