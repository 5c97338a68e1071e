"""One platform per connection: where jobs run, where artifacts live, and with which credentials.

:func:`platform_for` is the only place that tells the local machine from SageMaker. A
:class:`Platform` owns everything a task needs from its connection: the job backend, the artifact
store (with the connection's credentials), the model registry, the batch transform and the dry
run. Operators, sensors, triggers and the CLI get all of these from the platform and never ask
which backend it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from cvtune.options import Options
from cvtune.settings import Settings
from cvtune.store import ArtifactStore

if TYPE_CHECKING:
    from cvtune.backends.base import Backend
    from cvtune.transform import BatchTransform


class Platform:
    """What a connection provides. Subclasses: :class:`cvtune.local.platform.LocalPlatform`,
    :class:`cvtune.sagemaker.platform.SageMakerPlatform`."""

    #: the ``backend`` value of the connection extra
    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = self._make_store()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.source}, artifacts under {self.artifact_root})"

    @property
    def artifact_root(self) -> str:
        return self.settings.artifact_root

    @property
    def source(self) -> str:
        """Where the settings came from (``connection cvtune_default extra``), for error messages."""
        return self.settings.source

    @property
    def aws_conn_id(self) -> str | None:
        return self.settings.options.get("aws_conn_id", "aws_default")

    def _make_store(self) -> ArtifactStore:
        from cvtune.aws_connection import s3_options

        conn_id = self.aws_conn_id
        resolve = partial(s3_options, conn_id, self.settings.options.get("region_name"), source=self.source)
        return ArtifactStore(resolve, label=f"AWS connection {conn_id}" if conn_id else "default credentials")

    # -- what subclasses provide ----------------------------------------------------------------
    #: the option schema of the connection extra (and of ``--backend-config``)
    options_model: type[Options] = Options

    @classmethod
    def parse_extra(cls, extra: Mapping[str, Any], source: str) -> Settings:
        """Validated settings of a connection extra (without ``backend``)."""
        raise NotImplementedError

    @classmethod
    def backend_from_options(cls, **options: Any) -> Backend:
        """A backend from keyword options (:func:`cvtune.backends.get_backend`)."""
        raise NotImplementedError

    def make_backend(self, **overrides: Any) -> Backend:
        """A fresh job backend; the caller closes it (``with platform.make_backend() as backend``)."""
        raise NotImplementedError

    def registry(self) -> Any:
        """The model registry (``versions``, ``approved``, ``register``, ``set_status``)."""
        raise NotImplementedError

    def batch_transform(self, poll_s: float | None = None) -> BatchTransform:
        """The platform's batch transform (:class:`cvtune.transform.BatchTransform`)."""
        raise NotImplementedError

    def console_region(self) -> str | None:
        """The AWS region whose console shows this platform's jobs (``None``: no console)."""
        return None

    def plan(
        self, config: Any, manifest: dict[str, Any], *, run_id: str, warm_start: Any = None,
        assumptions: dict[str, float] | None = None, field: str = "plan_only",
    ) -> dict[str, Any]:
        """The dry run: the requests a run would send and its plan, sending nothing (``assumptions``:
        timing assumptions of the plan, e.g. ``job_s``)."""
        from cvtune.errors import ConfigError

        raise ConfigError(field, f"the {self.name} backend has no requests to show", "use the sagemaker backend (--backend sagemaker)")


#: The platforms by the ``backend`` value of a connection extra: the one place that knows them.
PLATFORMS: dict[str, str] = {
    "local": "cvtune.local.platform:LocalPlatform",
    "sagemaker": "cvtune.sagemaker.platform:SageMakerPlatform",
}


def platform_class(backend: Any, field: str = "backend") -> type[Platform]:
    """The platform class of a ``backend`` name; a ConfigError naming ``field`` for an unknown one."""
    import difflib
    import importlib

    from cvtune.errors import ConfigError

    name = backend.strip().lower() if isinstance(backend, str) else backend
    if name not in PLATFORMS:
        close = difflib.get_close_matches(str(backend), list(PLATFORMS), n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(PLATFORMS)}"
        raise ConfigError(field, f"unknown backend {backend!r}", fix)
    module, _, attr = PLATFORMS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def platform_for(settings: Settings | Mapping[str, Any] | None = None, *, source: str = "settings") -> Platform:
    """The platform of a connection extra (or of already validated :class:`Settings`)."""
    if not isinstance(settings, Settings):
        settings = Settings.from_extra(dict(settings or {}), source=source)
    return platform_class(settings.backend)(settings)
