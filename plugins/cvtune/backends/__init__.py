"""Where training jobs run: :func:`get_backend` builds one by name.

Backends are imported lazily, so importing this package costs nothing beyond the interface.
"""

from __future__ import annotations

from typing import Any

from cvtune.backends.base import Backend, JobDescription, JobSpec

__all__ = ["Backend", "JobDescription", "JobSpec", "get_backend"]


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
    from cvtune.platform import platform_class

    return platform_class(kind).backend_from_options(**config)
