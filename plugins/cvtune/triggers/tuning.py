"""Triggers of a tuning run: fold jobs ending (whoever drives the run deferred: CVTuningOperator,
or TuningRunSensor driving a run launched without waiting) and the run ending (a deferrable
TuningRunSensor that only watches).

Their kwargs are ids and URIs only; the run's state lives in its ledger, so a trigger can be
serialized, moved to another triggerer or restarted at any time without losing anything. The
triggerer runs them in an event loop: every blocking call (the connection lookup, building the
backend, reading the ledger, a backend without an async client) runs in a worker thread; the
SageMaker backend polls on the amazon provider's aiobotocore client, in the loop itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from airflow.triggers.base import BaseTrigger, TriggerEvent

from cvtune.states import RunStatus


def _observer(cvtune_conn_id: str):
    """The connection's backend, able to describe and stop jobs only (never starts a worker pool)."""
    from cvtune.backends.base import Observer
    from cvtune.hooks.cvtune import CvtuneHook

    return Observer(CvtuneHook(cvtune_conn_id).get_conn())


def _store(cvtune_conn_id: str, uri: str = ""):
    """The connection's artifact store (its credentials); a local ledger needs no connection."""
    from cvtune.store import default_store, is_local

    if uri and is_local(uri):
        return default_store()
    from cvtune.hooks.cvtune import CvtuneHook

    return CvtuneHook(cvtune_conn_id).store


def _error(run_id: str, what: str, exc: BaseException) -> TriggerEvent:
    return TriggerEvent({"status": "error", "run_id": run_id, "message": f"{what}: {type(exc).__name__}: {exc}"})


class TuningJobsTrigger(BaseTrigger):
    """Fires when any of the run's in-flight fold jobs ``job_names`` has ended.

    Events: ``{"status": "ended", "run_id", "ledger_uri", "ended": [names]}``;
    ``{"status": "timeout", ...}`` after ``timeout`` seconds (``None``: never);
    ``{"status": "error", "run_id", "message"}`` when the backend cannot be built or a job cannot
    be described. The task records the results from the ledger and the backend, not from the event.
    """

    def __init__(
        self,
        *,
        cvtune_conn_id: str,
        run_id: str,
        ledger_uri: str,
        job_names: list[str],
        poll_interval: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.cvtune_conn_id = cvtune_conn_id
        self.run_id = run_id
        self.ledger_uri = ledger_uri
        self.job_names = list(job_names)
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cvtune.triggers.tuning.TuningJobsTrigger",
            {
                "cvtune_conn_id": self.cvtune_conn_id,
                "run_id": self.run_id,
                "ledger_uri": self.ledger_uri,
                "job_names": list(self.job_names),
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if not self.job_names:  # nothing to wait for: let the task look at the ledger again
            yield TriggerEvent({"status": "ended", "run_id": self.run_id, "ledger_uri": self.ledger_uri, "ended": [],
                                "polls": 0})
            return
        try:
            backend = await asyncio.to_thread(_observer, self.cvtune_conn_id)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event the task raises
            yield _error(self.run_id, f"cannot build the backend of connection {self.cvtune_conn_id}", exc)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        polls = 0
        try:
            while True:
                try:
                    descriptions = await backend.adescribe_many(self.job_names)
                except Exception as exc:  # noqa: BLE001
                    yield _error(self.run_id, f"describing the fold jobs of run {self.run_id} failed", exc)
                    return
                polls += 1
                ended = [d.name for d in descriptions if d.done]
                if ended:
                    self.log.info("run %s: %d of %d fold job(s) ended: %s", self.run_id, len(ended),
                                  len(self.job_names), ", ".join(ended))
                    yield TriggerEvent(
                        {"status": "ended", "run_id": self.run_id, "ledger_uri": self.ledger_uri, "ended": ended,
                         "polls": polls}
                    )
                    return
                if deadline is not None and loop.time() >= deadline:
                    yield TriggerEvent(
                        {"status": "timeout", "run_id": self.run_id, "ledger_uri": self.ledger_uri,
                         "message": f"no fold job of run {self.run_id} ended within {self.timeout:g} s"}
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await backend.aclose()

    async def on_kill(self) -> None:
        """The deferred task was killed by a user: stop its fold jobs, mark the run Stopped.

        A retry of the task resumes the run; trials whose jobs were stopped are replaced.
        """
        await asyncio.to_thread(self._stop_run)

    def _stop_run(self) -> None:
        from cvtune.errors import JobNotFoundError
        from cvtune.ledger import RunLedger

        store = _store(self.cvtune_conn_id, self.ledger_uri)
        backend = _observer(self.cvtune_conn_id)
        try:
            for name in self.job_names:
                try:
                    backend.stop(name)
                except JobNotFoundError:
                    pass
        finally:
            backend.close()
        if store.exists(self.ledger_uri):
            ledger = RunLedger.load(self.ledger_uri, store)
            if ledger.status == RunStatus.IN_PROGRESS:
                ledger.data["status"] = RunStatus.STOPPED
                ledger.data["failure_reason"] = "the deferred Airflow task was killed"
                ledger.save()


class TuningRunTrigger(BaseTrigger):
    """Fires when the run's ledger says the run is finished.

    Events: ``{"status": "success", "run_id", "summary"}`` (ledger status ``Completed``);
    ``{"status": "failed", "run_id", "message"}`` (``Failed`` or ``Stopped``);
    ``{"status": "timeout", ...}``; ``{"status": "error", ...}`` when the ledger cannot be read.
    A missing ledger is waited for (the run may not have started yet); with ``until_started`` the
    trigger also fires ``{"status": "started", "run_id", "ledger_uri"}`` once it exists (a sensor
    that drives the run takes over from there).
    """

    def __init__(
        self, *, ledger_uri: str, run_id: str = "", poll_interval: float = 30.0, timeout: float | None = None,
        until_started: bool = False, cvtune_conn_id: str = "cvtune_default",
    ) -> None:
        super().__init__()
        self.cvtune_conn_id = cvtune_conn_id
        self.ledger_uri = ledger_uri
        self.run_id = run_id
        self.poll_interval = float(poll_interval)
        self.timeout = None if timeout is None else float(timeout)
        self.until_started = bool(until_started)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cvtune.triggers.tuning.TuningRunTrigger",
            {
                "ledger_uri": self.ledger_uri,
                "run_id": self.run_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
                "until_started": self.until_started,
                "cvtune_conn_id": self.cvtune_conn_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            store = await asyncio.to_thread(_store, self.cvtune_conn_id, self.ledger_uri)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event the task raises
            yield _error(self.run_id, f"cannot build the artifact store of connection {self.cvtune_conn_id}", exc)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        while True:
            try:
                event = await asyncio.to_thread(run_event, self.ledger_uri, self.run_id, store)
                if event is None and self.until_started and await asyncio.to_thread(store.exists, self.ledger_uri):
                    event = {"status": "started", "run_id": self.run_id, "ledger_uri": self.ledger_uri}
            except Exception as exc:  # noqa: BLE001
                yield _error(self.run_id, f"reading the ledger {self.ledger_uri} failed", exc)
                return
            if event is not None:
                yield TriggerEvent(event)
                return
            if deadline is not None and loop.time() >= deadline:
                yield TriggerEvent(
                    {"status": "timeout", "run_id": self.run_id,
                     "message": f"run {self.run_id or self.ledger_uri} did not finish within {self.timeout:g} s"}
                )
                return
            await asyncio.sleep(self.poll_interval)


def run_event(ledger_uri: str, run_id: str = "", store: Any = None) -> dict[str, Any] | None:
    """What the ledger says about the run: a success/failed event payload, or ``None`` (not finished).

    Shared by :class:`TuningRunTrigger` and ``TuningRunSensor.poke``; ``store``: the connection's.
    """
    from cvtune.ledger import RunLedger
    from cvtune.store import default_store

    store = store or default_store()
    if not store.exists(ledger_uri):
        return None
    ledger = RunLedger.load(ledger_uri, store)
    run_id = run_id or ledger.run_id
    if ledger.status == RunStatus.COMPLETED:
        summary = ledger.summary()
        if summary["best"] is not None:
            return {"status": "success", "run_id": run_id, "summary": summary}
        return {
            "status": "failed",
            "run_id": run_id,
            "message": f"tuning run {run_id} finished without a completed trial (ledger {ledger_uri})",
        }
    if ledger.status in (RunStatus.FAILED, RunStatus.STOPPED):
        return {
            "status": "failed",
            "run_id": run_id,
            "message": f"tuning run {run_id} {ledger.status.lower()}: {ledger.data.get('failure_reason')} "
            f"(ledger {ledger_uri})",
        }
    return None


# -- the task side of these triggers: shared by CVTuningOperator and TuningRunSensor ---------------
def defer_on_jobs(
    task: Any, tuner: Any, inflight: list[str], *, cvtune_conn_id: str, poll_interval: float,
    timeout: Any = None,
) -> NoReturn:
    """Defer ``task`` until any of the run's jobs ``inflight`` ends; it resumes in ``execute_complete``.

    The trigger carries ids only; the deferral is counted in the ledger and the run released.
    """
    from cvtune.driving import record_deferral

    count = record_deferral(tuner)
    task.log.info(
        "run %s: deferring (%d) with %d fold job(s) in flight: %s", tuner.run_id, count, len(inflight),
        ", ".join(inflight),
    )
    task.defer(
        trigger=TuningJobsTrigger(
            cvtune_conn_id=cvtune_conn_id,
            run_id=tuner.run_id,
            ledger_uri=tuner.uri,
            job_names=inflight,
            poll_interval=poll_interval,
        ),
        method_name="execute_complete",
        timeout=timeout,
    )
    raise AssertionError("task.defer() raises TaskDeferred")  # pragma: no cover


def check_jobs_event(event: dict[str, Any] | None, run_id: str) -> None:
    """Raise ``AirflowException`` unless ``event`` is a TuningJobsTrigger's "jobs ended" for ``run_id``."""
    from airflow.sdk.exceptions import AirflowException

    event = event or {}
    if event.get("status") != "ended":
        raise AirflowException(
            f"tuning run {event.get('run_id')}: waiting for its fold jobs failed "
            f"({event.get('status')}): {event.get('message')}; a retry of the task resumes the run"
        )
    if event.get("run_id") != run_id:
        raise AirflowException(f"the trigger fired for run {event.get('run_id')}, this task runs {run_id}")
