"""Where jobs run and artifacts live: the keys of the ``cvtune`` connection's extra.

The same keys work in the connection extra (Airflow), in ``--backend-config file.json`` (CLI)
and as Python keyword arguments. Unknown keys are errors, so a typo never silently falls back
to a default. The ``sagemaker`` backend's keys are the fields of
:class:`cvtune.sagemaker.config.SageMakerConfig` (``role_arn`` and ``s3_prefix`` required); its
``artifact_root`` defaults to ``{s3_prefix}/artifacts``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from cvtune.errors import ConfigError

LOCAL_KEYS = {"backend", "artifact_root", "workers", "max_parallel_jobs", "keep_alive_s", "preload", "work_dir", "cpus_per_job",
              "job_cleanup", "queue_ahead"}
BACKENDS = ("local", "sagemaker")


def default_artifact_root() -> str:
    if os.environ.get("CVTUNE_HOME"):
        return os.environ["CVTUNE_HOME"]
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "cvtune-artifacts")


@dataclass
class Settings:
    backend: str = "local"
    artifact_root: str = field(default_factory=default_artifact_root)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "settings"

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None, source: str = "settings") -> Settings:
        extra = dict(extra or {})
        backend = extra.pop("backend", "local")
        if backend not in BACKENDS:
            raise ConfigError(f"{source}.backend", f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
        root = extra.pop("artifact_root", None)
        if backend == "sagemaker":
            from cvtune.sagemaker.config import SageMakerConfig

            config = SageMakerConfig.from_options(extra, source=source)  # raises on a bad key
            extra["s3_prefix"] = config.s3_prefix  # normalized (no trailing slash)
            return cls(backend=backend, artifact_root=root or f"{config.s3_prefix}/artifacts", options=extra, source=source)
        root = root or default_artifact_root()
        if backend == "local":
            unknown = sorted(set(extra) - LOCAL_KEYS)
            if unknown:
                raise ConfigError(
                    f"{source}.{unknown[0]}", "unknown setting for the local backend", f"known: {', '.join(sorted(LOCAL_KEYS))}"
                )
            if "workers" in extra:
                extra["max_parallel_jobs"] = extra.pop("workers")
            for key in ("max_parallel_jobs", "cpus_per_job"):
                if key in extra and (not isinstance(extra[key], int) or isinstance(extra[key], bool) or extra[key] < 1):
                    raise ConfigError(f"{source}.{key}", f"must be a positive integer, got {extra[key]!r}")
            if "keep_alive_s" in extra and not (isinstance(extra["keep_alive_s"], (int, float)) and extra["keep_alive_s"] >= 0):
                raise ConfigError(f"{source}.keep_alive_s", f"must be a number of seconds >= 0, got {extra['keep_alive_s']!r}")
            if "preload" in extra and not (
                isinstance(extra["preload"], list) and all(isinstance(m, str) for m in extra["preload"])
            ):
                raise ConfigError(f"{source}.preload", "must be a list of module names", 'e.g. ["pandas", "xgboost"]')
        return cls(backend=backend, artifact_root=root, options=extra, source=source)

    def make_backend(self, **overrides: Any):
        """A fresh backend instance; the caller closes it."""
        from cvtune.backends import get_backend

        options = {**self.options, **{k: v for k, v in overrides.items() if v is not None}}
        if self.backend == "local":
            options.setdefault("work_dir", os.path.join(self.artifact_root, "jobs"))
        if self.backend == "sagemaker":
            options.setdefault("source", self.source)
        return get_backend(self.backend, **options)
