"""What every cvtune operator shares: the connection, and timing of its own work."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from cvtune.errors import ConfigError
from cvtune.hooks.cvtune import UsesConnection


class UserInputError(ConfigError, AirflowFailException):
    """A :class:`ConfigError` raised out of a task: Airflow fails the task at once, without the
    retries meant for infrastructure errors (a retry cannot fix a wrong column name)."""


@contextmanager
def fail_fast_on_config_errors() -> Iterator[None]:
    """Re-raise a ``ConfigError`` as :class:`UserInputError`; every other error keeps its retries."""
    try:
        yield
    except UserInputError:
        raise
    except ConfigError as exc:
        raise UserInputError(exc.field, exc.problem, exc.fix) from exc


class CvtuneBaseOperator(UsesConnection, BaseOperator):
    """Base of the cvtune operators: ``cvtune_conn_id`` selects the platform (backend, artifact store)."""

    ui_color = "#e8f1fb"

    def __init__(self, *, cvtune_conn_id: str = "cvtune_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cvtune_conn_id = cvtune_conn_id
        self._hook = None
        self._result: Any = None  # what execute returned: OpenLineage reads it on completion

    def execute(self, context: Any) -> Any:
        started = time.monotonic()
        with fail_fast_on_config_errors():
            result = self.run(context)
        if isinstance(result, dict):
            result = {**result, "elapsed_s": round(time.monotonic() - started, 3)}
        self.finished(context, result)
        return result

    def run(self, context: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def link_info(self, result: Any) -> dict[str, Any] | None:
        """What this task's extra links need from its result (see :mod:`cvtune.links`); ``None``: no links."""
        return None

    def finished(self, context: Any, result: Any) -> None:
        """Every way out of the task with a result (``execute`` and ``execute_complete``) ends here."""
        self._result = result
        self.persist_links(context, result)

    def persist_links(self, context: Any, result: Any) -> None:
        if not self.operator_extra_links or not isinstance(result, dict):
            return
        info = self.link_info(result)
        if info is not None:
            from cvtune.links import persist

            persist(context, self, **info)

    def sagemaker_region(self) -> str | None:
        """The console region of this task's jobs; ``None`` unless the connection is ``sagemaker``."""
        from cvtune.links import sagemaker_region

        return sagemaker_region(self.platform)

    def ids(self, context: Any) -> tuple[str, str, str, int]:
        ti = context["ti"]
        return ti.dag_id, context["run_id"], ti.task_id, getattr(ti, "map_index", -1)

    def resolve_path(self, path: str) -> str:
        """A relative path is tried as given, then next to the DAG file and one folder up."""
        if os.path.isabs(path) or os.path.exists(path) or "://" in path:
            return path
        fileloc = getattr(self.dag, "fileloc", None) if self.has_dag() else None
        if fileloc:
            for base in (os.path.dirname(fileloc), os.path.dirname(os.path.dirname(fileloc))):
                candidate = os.path.join(base, path)
                if os.path.exists(candidate):
                    return candidate
        return path
