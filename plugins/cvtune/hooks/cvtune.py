"""The hook behind connection type ``cvtune``: builds the connection's platform from its extra.

The platform (:mod:`cvtune.platform`) owns the job backend, the artifact store with the
credentials of the extra's ``aws_conn_id``, the model registry and the batch transform.

Extra (JSON), local backend::

    {"backend": "local", "artifact_root": "/data/cvtune", "workers": 2, "keep_alive_s": 300,
     "preload": ["pandas", "xgboost"]}

Without a ``cvtune_default`` connection the hook falls back to the embedded default — the local
backend with artifacts under ``$AIRFLOW_HOME/cvtune-artifacts`` — and says so in the task log.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class CvtuneHook(BaseHook):
    conn_name_attr = "cvtune_conn_id"
    default_conn_name = "cvtune_default"
    conn_type = "cvtune"
    hook_name = "cvtune (cross-validated tuning)"

    def __init__(self, cvtune_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cvtune_conn_id = cvtune_conn_id
        self._settings = None
        self._platform = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["host", "schema", "login", "password", "port"],
            "relabeling": {},
            "placeholders": {
                "extra": '{"backend": "local", "artifact_root": "/opt/airflow/cvtune", "workers": 2, "keep_alive_s": 300}'
            },
        }

    @property
    def settings(self):
        """The connection's settings (cached), validated with errors naming the connection."""
        if self._settings is None:
            from cvtune.settings import Settings

            source = f"connection {self.cvtune_conn_id} extra"
            try:
                conn = self.get_connection(self.cvtune_conn_id)
            except Exception as exc:  # noqa: BLE001 - Airflow raises several types for a missing conn
                if self.cvtune_conn_id != self.default_conn_name:
                    raise
                self.log.warning(
                    "connection %s not found (%s); using the embedded default: local backend", self.cvtune_conn_id, exc
                )
                self._settings = Settings(source="embedded default")
            else:
                self._settings = Settings.from_extra(conn.extra_dejson, source=source)
            self.log.info(
                "cvtune: backend %s, artifacts under %s", self._settings.backend, self._settings.artifact_root
            )
        return self._settings

    @property
    def platform(self):
        """The connection's :class:`~cvtune.platform.Platform` (cached)."""
        if self._platform is None:
            from cvtune.platform import platform_for

            self._platform = platform_for(self.settings)
        return self._platform

    @property
    def store(self):
        """The connection's artifact store, with the credentials of its ``aws_conn_id``."""
        return self.platform.store

    @property
    def artifact_root(self) -> str:
        return self.settings.artifact_root

    def get_conn(self):
        """A new backend for this connection; close it when done (``with hook.get_conn() as b``)."""
        return self.platform.make_backend()

    def test_connection(self) -> tuple[bool, str]:
        try:
            settings = self.settings
        except Exception as exc:  # noqa: BLE001 - reported to the UI, not raised
            return False, str(exc)
        return True, f"backend {settings.backend}, artifacts under {settings.artifact_root}"


class UsesConnection:
    """``cvtune_conn_id`` → the connection's hook, platform and artifact store (built on first use)."""

    cvtune_conn_id: str
    _hook: Any = None

    @property
    def hook(self):
        if self._hook is None:
            self._hook = CvtuneHook(self.cvtune_conn_id)
        return self._hook

    @property
    def platform(self):
        """The connection's platform: backend, artifact store, registry, transform."""
        return self.hook.platform

    @property
    def store(self):
        """The connection's artifact store (its ``aws_conn_id``'s credentials)."""
        return self.hook.platform.store
