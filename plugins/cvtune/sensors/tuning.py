"""TuningRunSensor: waits until a tuning run finished — driving it there unless another task does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from cvtune.hooks.cvtune import UsesConnection
from cvtune.links import TUNING_LINKS


class TuningRunSensor(UsesConnection, BaseSensorOperator):
    """Wait for a tuning run, e.g. one started with ``CVTuningOperator(wait_for_completion=False)``,
    and drive it to the end.

    Such a run has nobody recording its results or launching its next trials. With ``drive=True``
    (the default) this sensor does it: each poke (``poke`` or ``reschedule`` mode) rebuilds the
    run's tuner from its ledger (config, manifest, warm-start parents, connection — same run id),
    records the fold jobs that ended, asks new trials and launches fold jobs up to capacity. With
    ``deferrable=True`` it waits in the triggerer on the in-flight jobs
    (:class:`~cvtune.triggers.tuning.TuningJobsTrigger`, as the deferrable operator does), advances
    the run each time one ends and defers again. Whoever drives, no fold job is launched twice:
    every launch is written to the ledger first and jobs are re-attached by their deterministic
    names and tags.

    It only watches the ledger (a :class:`~cvtune.triggers.tuning.TuningRunTrigger` when
    deferrable) when ``drive=False`` (the run is driven elsewhere); when the ledger names a task
    that drives the run (a ``CVTuningOperator`` polling in the worker or deferred — two drivers
    at once would overwrite each other's ledger writes); for runs other than tuning runs; and on a
    backend that cannot leave a run to other processes (``local``: its jobs are judged by process
    ids of the launching host, which is why ``CVTuningOperator`` refuses
    ``wait_for_completion=False`` there — every local run is driven by its own operator).

    Done: ledger ``Completed`` → the run summary is the XCom return value; ``Failed`` /
    ``Stopped``, or the run failing while this sensor drives it → ``AirflowException`` naming the
    reason; anything else (or no ledger yet) → keep waiting.

    :param ledger_uri: the run's ledger, or a run summary (a dict with ``ledger``, e.g. the
        operator's XCom); or give ``run_id`` and the ledger is looked up under the artifact root of
        ``cvtune_conn_id``.
    :param cvtune_conn_id: where ``run_id`` is looked up. To drive, the connection the run was
        started with (recorded in its ledger) is used; this one if the ledger names none.
    :param drive: advance the run (default); ``False`` only watches its ledger.
    :param deferrable: wait in the triggerer instead of poking from a worker. Default:
        ``[operators] default_deferrable``.
    """

    template_fields: Sequence[str] = ("ledger_uri", "run_id", "cvtune_conn_id")
    ui_color = "#dbe9f7"
    operator_extra_links = TUNING_LINKS

    def __init__(
        self,
        *,
        ledger_uri: str | dict[str, Any] | None = None,
        run_id: str | None = None,
        cvtune_conn_id: str = "cvtune_default",
        drive: bool = True,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.ledger_uri = ledger_uri
        self.run_id = run_id
        self.cvtune_conn_id = cvtune_conn_id
        self.drive = drive
        self._not_started = False  # what the last look found: driving, but no ledger yet
        if deferrable is None:
            from airflow.sdk import conf

            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self.deferrable = bool(deferrable)

    def resolve_ledger_uri(self) -> str:
        from cvtune.errors import ConfigError

        if self.ledger_uri:
            from cvtune.best import ledger_uris

            uris = ledger_uris(self.ledger_uri)
            if len(uris) != 1:
                raise ConfigError("ledger_uri", f"expected one run, got {len(uris)}", "pass one ledger URI or run summary")
            return uris[0]
        if not self.run_id:
            raise ConfigError("run_id", "neither ledger_uri nor run_id is set", "pass the run's ledger URI or its run id")
        from cvtune.tuner import ledger_uri, validate_run_id

        return ledger_uri(self.hook.artifact_root, validate_run_id(self.run_id))

    def persist_links(self, context: Any, summary: dict[str, Any]) -> None:
        from cvtune.links import persist, sagemaker_region, tuning_info

        persist(context, self, **tuning_info(summary, sagemaker_region(self.platform)))

    # -- poke / reschedule mode -----------------------------------------------------------------
    def poke(self, context: Any) -> PokeReturnValue | bool:
        summary = self.step(context, deferring=False)
        if summary is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=summary)

    # -- deferrable mode ------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        summary = self.step(context, deferring=True)  # defers on the in-flight jobs while it drives
        if summary is not None:  # already finished: no need to defer
            return summary
        self.watch_in_trigger(context)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        event = event or {"status": "error", "message": "the trigger fired without an event"}
        if event.get("status") == "ended":  # TuningJobsTrigger: fold jobs of the run this sensor drives ended
            from cvtune.ledger import RunLedger
            from cvtune.triggers.tuning import check_jobs_event

            check_jobs_event(event, self.run_id or RunLedger.load(self.resolve_ledger_uri(), self.hook.store).run_id)
        elif event.get("status") != "started":  # TuningRunTrigger's verdict, or a trigger's error/timeout
            return self.result(event, context)
        summary = self.step(context, deferring=True)
        if summary is not None:
            return summary
        self.watch_in_trigger(context)  # another task took the run over meanwhile

    def watch_in_trigger(self, context: Any) -> NoReturn:
        from cvtune.triggers.tuning import TuningRunTrigger

        uri = self.resolve_ledger_uri()
        # to drive a run that has not started yet, wake when its ledger appears
        until_started = self._not_started
        self.log.info("run not %s yet; deferring until ledger %s says it has", "started" if until_started else "finished",
                      uri)
        self.defer(
            trigger=TuningRunTrigger(ledger_uri=uri, run_id=self.run_id or "", poll_interval=self.poke_interval,
                                     until_started=until_started, cvtune_conn_id=self.cvtune_conn_id),
            method_name="execute_complete",
            timeout=self.time_left(context),
        )
        raise AssertionError("defer() raises TaskDeferred")  # pragma: no cover

    def time_left(self, context: Any) -> timedelta | None:
        """What is left of ``timeout``, counted from the task's start (kept across deferrals)."""
        if not self.timeout:
            return None
        from datetime import datetime, timezone

        from airflow.sdk.exceptions import AirflowSensorTimeout

        started = getattr(context.get("ti"), "start_date", None) if context else None
        elapsed = (datetime.now(timezone.utc) - started).total_seconds() if started else 0.0
        left = self.timeout - elapsed
        if left <= 0:
            raise AirflowSensorTimeout(
                f"Sensor has timed out; run duration of {elapsed:.0f} seconds exceeds the specified timeout of {self.timeout}."
            )
        return timedelta(seconds=left)

    # -- one look at the run, advancing it when this sensor drives it ----------------------------
    _context: Any = None
    _tuner: Any = None

    def step(self, context: Any, *, deferring: bool) -> dict[str, Any] | None:
        """The run's summary when it finished (``AirflowException`` when it failed), else ``None``.

        Driving, the run is first advanced by one step; ``deferring`` then defers on its in-flight
        jobs instead of returning ``None``.
        """
        from cvtune.triggers.tuning import run_event

        self._context = context
        uri = self.resolve_ledger_uri()
        event = run_event(uri, self.run_id or "", self.hook.store)
        if event is not None:
            return self.result(event, context)
        conn_id = self.driving_conn_id(uri)
        if conn_id is not None:
            summary = self.advance(uri, conn_id, context if deferring else None)
            if summary is not None:
                return self.result({"status": "success", "run_id": summary["run_id"], "summary": summary}, context)
        else:
            self.log.info("run %s not finished yet (ledger %s)", self.run_id or "", uri)
        return None

    def driving_conn_id(self, uri: str) -> str | None:
        """The connection to drive the run with, or ``None`` (the reason logged) to only watch it."""
        from cvtune.ledger import RunLedger

        self._not_started = False
        if not self.drive:
            return None
        if not self.hook.store.exists(uri):
            self.log.info("no ledger at %s yet: the run has not started", uri)
            self._not_started = True
            return None
        data = RunLedger.load(uri, self.hook.store).data
        driver = data.get("driver")
        if driver:
            self.log.info(
                "run %s is driven by task %s.%s of DAG run %s (%s); only watching its ledger",
                data["run_id"], driver.get("dag_id"), driver.get("task_id"), driver.get("run_id"), driver.get("mode"),
            )
            return None
        if data.get("kind", "tune") != "tune":
            self.log.info("run %s is a %s run, driven by the task that started it; only watching", data["run_id"], data["kind"])
            return None
        return (data.get("airflow") or {}).get("cvtune_conn_id") or self.cvtune_conn_id

    def advance(self, uri: str, conn_id: str, defer_context: Any = None) -> dict[str, Any] | None:
        """One driving step (shared with CVTuningOperator): the summary when the run finished."""
        from airflow.sdk.exceptions import AirflowException

        from cvtune.driving import abandon_on_failure, drive_step, lease_label
        from cvtune.errors import LeaseHeldError, RunFailedError
        from cvtune.hooks.cvtune import CvtuneHook
        from cvtune.triggers.tuning import defer_on_jobs
        from cvtune.tuner import CVTuner

        hook = CvtuneHook(conn_id)
        with hook.get_conn() as backend:
            if backend.cannot_defer_reason:
                self.log.info(
                    "the %s backend cannot leave a run to another task (%s); only watching the ledger",
                    backend.name, backend.cannot_defer_reason,
                )
                return None
            try:
                tuner = CVTuner.resume(uri, backend, poll_s=self.poke_interval, store=hook.store,
                                       lease_label=lease_label(self, defer_context or self._context))
            except LeaseHeldError as exc:  # another process drives it right now: watch, look again later
                self.log.info("%s; only watching for now", exc)
                return None
            self._tuner = tuner

            def defer(inflight: list[str]):
                defer_on_jobs(self, tuner, inflight, cvtune_conn_id=conn_id, poll_interval=self.poke_interval,
                              timeout=self.time_left(defer_context))

            try:
                with abandon_on_failure(self):
                    summary = drive_step(tuner, defer if defer_context is not None else None)
            except RunFailedError as exc:
                raise AirflowException(f"tuning run {tuner.run_id} failed: {exc} (ledger {uri})") from exc
        if summary is None:
            self.log.info("run %s: %s; %d fold job(s) in flight", tuner.run_id, tuner.ledger.counts(),
                          len(tuner.in_flight()))
        return summary

    def result(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        if event.get("status") == "success":
            best = event["summary"]["best"]
            self.log.info("run %s completed: best trial %s, mean %s", event["run_id"], best["trial"], best["mean"])
            if context is not None:
                self.persist_links(context, event["summary"])
            return event["summary"]
        raise AirflowException(event.get("message") or f"tuning run {event.get('run_id')}: {event.get('status')}")
