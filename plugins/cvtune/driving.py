"""Driving a tuning run, wherever it happens: one step at a time, from any process.

Shared by every task that drives a run — ``CVTuningOperator`` (its first step and each resumption
after deferring) and ``TuningRunSensor`` (each poke or trigger event) — and free of Airflow: the
deferral itself is the caller's ``defer`` callback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn


def drive_step(tuner: Any, defer: Callable[[list[str]], NoReturn] | None = None) -> dict[str, Any] | None:
    """One step of driving a tuning run, wherever it happens: CVTuningOperator's first step and each
    resumption, and ``TuningRunSensor`` on each poke or trigger event.

    Records every job that ended since the last step, asks new trials and launches fold jobs up to
    capacity (``tuner.start()``: the ledger is written ahead of every launch and jobs are re-attached
    by their deterministic names and tags, so whoever drives next launches nothing twice). With jobs
    still in flight, ``defer(inflight)`` when given (it raises ``TaskDeferred``), else the run is
    released (its waiting time recorded) and ``None`` returned. Nothing in flight: the run is
    finished and its summary returned. ``RunFailedError`` when the run failed.
    """
    inflight = tuner.start()
    if inflight:
        if defer is not None:
            defer(inflight)
        tuner.release()
        return None
    return tuner.finish()


def record_deferral(tuner: Any) -> int:
    """Count one more deferral in the run's ledger and release the run (its waiting time recorded);
    returns the count."""
    tuner.ledger.data["deferrals"] = tuner.ledger.data.get("deferrals", 0) + 1
    tuner.release()
    return tuner.ledger.data["deferrals"]


def lease_label(task: Any, context: Any) -> str:
    """How a run's lease names the task driving it (in another driver's error and in the logs)."""
    ti = context["ti"] if context else None
    if ti is None:
        return f"Airflow task {task.task_id}"
    return f"Airflow task {ti.dag_id}.{ti.task_id} of DAG run {context.get('run_id')}, try {getattr(ti, 'try_number', '?')}"


@contextlib.contextmanager
def abandon_on_failure(task: Any) -> Iterator[None]:
    """A task that fails stops driving its run: a later attempt in this same process (``dag.test``)
    may take the lease over as it would from a dead process. ``TaskDeferred`` comes after the
    tuner released the lease, so nothing is held then."""
    try:
        yield
    except BaseException:
        tuner = getattr(task, "_tuner", None)
        if tuner is not None:
            from cvtune import lease

            lease.abandon(tuner.ledger.owner)
        raise
