"""Where jobs run and artifacts live: the validated keys of the ``cvtune`` connection's extra.

The same keys work in the connection extra (Airflow), in ``--backend-config file.json`` (CLI)
and as Python keyword arguments; each backend's keys are one option schema
(:class:`cvtune.local.options.LocalOptions`, :class:`cvtune.sagemaker.options.SageMakerOptions`).
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


def default_artifact_root() -> str:
    if os.environ.get("CVTUNE_HOME"):
        return os.environ["CVTUNE_HOME"]
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return os.path.join(home, "cvtune-artifacts")


@dataclass
class Settings:
    """A connection extra, validated: ``backend``, ``artifact_root`` and the backend's ``options``."""

    backend: str = "local"
    artifact_root: str = field(default_factory=default_artifact_root)
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "settings"

    @classmethod
    def from_extra(cls, extra: dict[str, Any] | None, source: str = "settings") -> Settings:
        """Validate a connection extra; errors name ``source.key`` and the fix."""
        from cvtune.platform import platform_class

        extra = dict(extra or {})
        backend = extra.pop("backend", "local")
        return platform_class(backend, f"{source}.backend").parse_extra(extra, source)
