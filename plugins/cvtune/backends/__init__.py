"""Where training jobs run: :func:`get_backend` builds one by name.

Backends are imported lazily, so importing this package costs nothing beyond the interface.
"""

from __future__ import annotations

import inspect
from typing import Any

from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.errors import ConfigError

__all__ = ["BACKENDS", "Backend", "JobDescription", "JobSpec", "get_backend"]

#: Backend kinds :func:`get_backend` knows, with whether they can be used yet.
BACKENDS: dict[str, bool] = {"local": True, "sagemaker": True}


def get_backend(kind: str, **config: Any) -> Backend:
    """A new backend of ``kind`` configured with ``config``.

    ``local`` takes the arguments of :class:`cvtune.local.backend.LocalBackend` (``work_dir``
    is required); ``sagemaker`` takes the keys of :class:`cvtune.sagemaker.config.SageMakerConfig`
    plus ``source`` (the name errors are reported under) and the test seams of
    :class:`cvtune.sagemaker.backend.SageMakerBackend` (``sagemaker_client``,
    ``async_sagemaker_client``, ``s3_client``, ``sleep``). Raises
    :class:`~cvtune.errors.ConfigError` for an unknown kind and for options the backend does not
    accept.
    """
    normalized = kind.strip().lower() if isinstance(kind, str) else kind
    if normalized == "sagemaker":
        from cvtune.sagemaker.backend import SageMakerBackend
        from cvtune.sagemaker.config import SageMakerConfig

        source = config.pop("source", "backend")
        seams = {k: config.pop(k) for k in ("sagemaker_client", "async_sagemaker_client", "s3_client", "sleep") if k in config}
        return SageMakerBackend(SageMakerConfig.from_options(config, source=source), **seams)
    if normalized != "local":
        valid = ", ".join(f"{k!r}" + ("" if ok else " (not available yet)") for k, ok in BACKENDS.items())
        raise ConfigError("backend", f"unknown backend {kind!r}", f"valid backends: {valid}")

    from cvtune.local.backend import LocalBackend

    params = inspect.signature(LocalBackend.__init__).parameters
    accepted = [p for p in params if p != "self"]
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise ConfigError(
            f"backend.{unknown[0]}",
            f"the local backend has no option {unknown[0]!r}",
            f"accepted options: {', '.join(accepted)}",
        )
    if "work_dir" not in config:
        raise ConfigError("backend.work_dir", "the local backend needs a work_dir", "set it to a local directory")
    return LocalBackend(**config)
