"""The local machine as a platform: a warm pool of worker processes, artifacts on any store."""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

from cvtune.local.options import LocalOptions
from cvtune.platform import Platform
from cvtune.settings import Settings, default_artifact_root

#: keys of the connection extra the platform reads itself (not backend options)
PLATFORM_KEYS = ("aws_conn_id", "region_name")


class LocalPlatform(Platform):
    name = "local"
    options_model = LocalOptions

    @classmethod
    def parse_extra(cls, extra: Mapping[str, Any], source: str) -> Settings:
        from cvtune.errors import ConfigError
        from cvtune.options import parse_options

        options = parse_options(LocalOptions, extra, source=source, backend=cls.name).given()
        root = options.pop("artifact_root", None) or default_artifact_root()
        if "workers" in options:
            workers = options.pop("workers")
            if options.setdefault("max_parallel_jobs", workers) != workers:
                raise ConfigError(f"{source}.workers", "disagrees with max_parallel_jobs", "set only one of them")
        return Settings(backend=cls.name, artifact_root=root, options=options, source=source)

    @classmethod
    def backend_from_options(cls, **options: Any):
        from cvtune.errors import ConfigError
        from cvtune.local.backend import LocalBackend

        accepted = [p for p in inspect.signature(LocalBackend.__init__).parameters if p != "self"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"backend.{unknown[0]}", f"the local backend has no option {unknown[0]!r}",
                f"accepted options: {', '.join(accepted)}",
            )
        if "work_dir" not in options:
            raise ConfigError("backend.work_dir", "the local backend needs a work_dir", "set it to a local directory")
        return LocalBackend(**options)

    def make_backend(self, **overrides: Any):
        options = {k: v for k, v in self.settings.options.items() if k not in PLATFORM_KEYS}
        options.update({k: v for k, v in overrides.items() if v is not None})
        options.setdefault("work_dir", os.path.join(self._local_root(), "jobs"))
        return self.backend_from_options(store=self.store, **options)

    def _local_root(self) -> str:
        from cvtune import store

        # job directories are local even when the artifacts live in an object store
        return self.artifact_root if store.is_local(self.artifact_root) else default_artifact_root()

    def batch_transform(self, poll_s: float | None = None):
        from cvtune.local.transform import LocalBatchTransform

        return LocalBatchTransform(self.store)

    def registry(self) -> Any:
        from cvtune.local.registry import LocalModelRegistry

        return LocalModelRegistry(self.artifact_root, self.store)
