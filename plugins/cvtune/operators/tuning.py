"""CVTuningOperator: a cross-validated tuning run where every fold is its own training job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from cvtune.links import TUNING_LINKS
from cvtune.operators.base import CvtuneBaseOperator


class CVTuningOperator(CvtuneBaseOperator):
    """Run (or resume) a tuning run over a fold manifest.

    The run id derives from dag id, DAG run id and task id, so an Airflow retry of the task
    resumes the same run from its ledger: finished trials are kept and no fold job is launched
    twice. Logs one progress line per finished trial; returns the run summary
    (``run_id``, ``ledger``, ``best``, ``trials`` by state, ``fold_jobs``, ``elapsed_s``).

    :param manifest_uri: the fold manifest (``FoldSplitOperator``'s ``manifest``).
    :param tuning_config: a YAML/JSON file path or a dict in the SageMaker shapes.
    :param strategy, max_trials, max_parallel_trials, max_parallel_jobs, seed: overrides of the
        config's values (templated, e.g. from DAG params).
    :param target_value, max_trials_not_improving, convergence: overrides of the config's run-level
        completion criteria (:mod:`cvtune.completion`); empty strings leave the config's.
    :param deferrable: free the worker slot while fold jobs run: launch up to capacity, defer to a
        :class:`~cvtune.triggers.tuning.TuningJobsTrigger` that fires when any job ends, then
        (in ``execute_complete``, a new process) rebuild the tuner from the ledger, record what
        ended, launch the next jobs and defer again until the run is done. The result is the same
        summary as without deferral. Default: ``[operators] default_deferrable``.
    :param wait_for_completion: ``False`` launches the first jobs and returns ``{run_id, ledger,
        status, in_flight}`` at once, handing the run over: a downstream
        :class:`~cvtune.sensors.tuning.TuningRunSensor` on that ledger drives it to the end (records
        ended jobs, launches new trials; in the triggerer with ``deferrable=True``) and returns its
        summary. This operator again with the same ``run_id`` drives it too.
    :param poll_interval: seconds between polls of the fold jobs (in the worker, or the trigger's).
    :param plan_only: sagemaker backend only: log and return ``{"requests", "plan"}`` — the first
        trial's ``CreateTrainingJob`` requests, validated against the API model, and the run's plan
        (fold jobs, concurrency, warm-pool reuse, uploads, cost) — without sending or uploading anything.
    :param plan_assumptions: with ``plan_only``: the durations the plan's cost assumes, in seconds,
        as the CLI's ``--assume-*-s`` flags — ``{"start_s": 180, "job_s": 300, "warm_start_s": 5,
        "poll_s": 10}``, any subset (defaults: a 3-minute cold start, jobs as long as
        ``max_runtime_s``, 5 s on a warm pool, 10 s polls). Templated; an unknown name or a
        negative or non-numeric value fails the task before anything is read.

    Deferral needs a backend whose jobs can be observed from any host (``sagemaker``). The
    ``local`` backend cannot: its jobs run in worker processes of the task's host and their
    liveness is judged by process ids, so a triggerer or a resumed task in another container
    would record running jobs as lost, and each resumption would start a cold pool. With it,
    ``deferrable=True`` and ``wait_for_completion=False`` raise a ``ConfigError`` before anything
    is launched; a deployment-wide ``default_deferrable`` only makes the task poll in the worker.

    While it drives the run (polling in the worker or deferred) the ledger names this task as the
    run's ``driver``, so a ``TuningRunSensor`` on the same run only watches instead of driving it
    concurrently; ``wait_for_completion=False`` clears it (the run is handed over).
    """

    template_fields: Sequence[str] = (
        "manifest_uri", "tuning_config", "run_id", "strategy", "max_trials", "max_parallel_trials",
        "max_parallel_jobs", "seed", "target_value", "max_trials_not_improving", "convergence", "cvtune_conn_id",
        "plan_assumptions",
    )
    template_fields_renderers = {"tuning_config": "json"}
    ui_color = "#cfe3fa"
    operator_extra_links = TUNING_LINKS

    def __init__(
        self,
        *,
        manifest_uri: str,
        tuning_config: str | dict[str, Any],
        run_id: str | None = None,
        strategy: str | None = None,
        max_trials: int | str | None = None,
        max_parallel_trials: int | str | None = None,
        max_parallel_jobs: int | str | None = None,
        seed: int | str | None = None,
        target_value: float | str | None = None,
        max_trials_not_improving: int | str | None = None,
        convergence: str | None = None,
        poll_interval: float | None = None,
        wait_for_completion: bool = True,
        plan_only: bool = False,
        plan_assumptions: dict[str, float | str] | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest_uri = manifest_uri
        self.tuning_config = tuning_config
        self.run_id = run_id
        self.strategy = strategy
        self.max_trials = max_trials
        self.max_parallel_trials = max_parallel_trials
        self.max_parallel_jobs = max_parallel_jobs
        self.seed = seed
        self.target_value = target_value
        self.max_trials_not_improving = max_trials_not_improving
        self.convergence = convergence
        self.poll_interval = poll_interval
        self.wait_for_completion = wait_for_completion
        # not ``dry_run``: that name is BaseOperator's method (``op.dry_run()`` logs the rendered fields)
        self.plan_only = plan_only
        # the plan's assumed durations (start_s, job_s, warm_start_s, poll_s), as the CLI's --assume-*-s
        self.plan_assumptions = plan_assumptions
        # None: the deployment's default, which never turns into an error on a backend that can't defer
        self._deferrable_requested = deferrable is not None
        if deferrable is None:
            from airflow.sdk import conf

            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self.deferrable = bool(deferrable)
        self._tuner: Any = None

    def load_config(self):
        from cvtune.config import load_config

        source = self.tuning_config
        if isinstance(source, str):
            source = self.resolve_path(source)
        overrides = {
            "strategy": self.strategy or None,
            "max_trials": self.max_trials,
            "max_parallel_trials": self.max_parallel_trials,
            "max_parallel_jobs": self.max_parallel_jobs,
            "seed": self.seed,
            "target_value": self.target_value,
            "max_trials_not_improving": self.max_trials_not_improving,
            "convergence": self.convergence,
        }
        # a rendered "None" is an unset DAG param, not a value
        return load_config(source, **{k: v for k, v in overrides.items() if v not in (None, "")})

    def derive_run_id(self, context: Any) -> str:
        from cvtune.naming import derive_id

        dag_id, run_id, task_id, map_index = self.ids(context)
        return self.run_id or derive_id(dag_id, run_id, task_id, map_index, prefix=task_id)

    def make_tuner(self, context: Any, backend: Any, config: Any, manifest: dict[str, Any]):
        from cvtune.driving import lease_label
        from cvtune.tuner import CVTuner

        return CVTuner(
            config,
            manifest,
            backend,
            run_id=self.derive_run_id(context),
            artifact_root=self.hook.artifact_root,
            poll_s=self.poll_for(backend),
            ledger_extra=self.ledger_extra(context),
            warm_start=self.warm_start(),
            lease_label=lease_label(self, context),
            store=self.store,
        )

    def poll_for(self, backend: Any) -> float:
        """The task's ``poll_interval``, else the backend's default (30 s on SageMaker, 2 s locally)."""
        return float(self.poll_interval) if self.poll_interval is not None else float(backend.default_poll_s)

    def warm_start(self):
        """The run's warm start (:class:`cvtune.warmstart.WarmStart`), ``None`` for a cold start."""
        return None

    def ledger_extra(self, context: Any) -> dict[str, Any]:
        dag_id, run_id, task_id, map_index = self.ids(context)
        # the connection too: whoever drives the run later (TuningRunSensor) needs its backend
        return {"airflow": {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index,
                            "cvtune_conn_id": self.cvtune_conn_id}}

    def driver(self, context: Any, mode: str) -> dict[str, Any]:
        """How the ledger names this task while it drives the run (see the class docstring)."""
        dag_id, run_id, task_id, map_index = self.ids(context)
        return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index, "mode": mode}

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.driving import abandon_on_failure

        with abandon_on_failure(self):
            return self._run(context)

    def _run(self, context: Any) -> dict[str, Any]:
        from cvtune.driving import drive_step
        from cvtune.folds import load_manifest

        assumptions = self.checked_plan_assumptions()
        config = self.load_config()
        manifest = load_manifest(self.manifest_uri, self.store)
        if self.plan_only:
            return self.plan_dry_run(context, config, manifest, assumptions)
        with self.hook.get_conn() as backend:
            mode = self.execution_mode(backend)
            self._tuner = self.make_tuner(context, backend, config, manifest)
            self.log.info(
                "tuning run %s: %s strategy, %d trials, %d in parallel, %d folds → ledger %s",
                self._tuner.run_id, config.strategy, config.max_trials, config.max_parallel_trials,
                len(manifest["folds"]), self._tuner.uri,
            )
            # saved by the tuner's first step; "launch" hands the run over, so it names no driver
            self._tuner.ledger.data["driver"] = None if mode == "launch" else self.driver(context, mode)
            if mode == "wait":
                summary = self._tuner.run()
            else:
                summary = drive_step(self._tuner, self.defer_on if mode == "defer" else None)
                if summary is None:  # launched, not waiting
                    inflight = self._tuner.in_flight()
                    self.log.info("launched; %d fold job(s) in flight, not waiting", len(inflight))
                    return {"run_id": self._tuner.run_id, "ledger": self._tuner.uri,
                            "status": self._tuner.ledger.status, "in_flight": len(inflight)}
        self.log_best(summary, config)
        return summary

    def checked_plan_assumptions(self) -> dict[str, float]:
        """``plan_assumptions`` validated (names and values) before anything is read or launched."""
        if self.plan_assumptions is None:
            return {}
        from cvtune.errors import ConfigError
        from cvtune.sagemaker.plan import Assumptions

        if not self.plan_only:
            raise ConfigError("plan_assumptions", "only shape the dry-run plan", "set plan_only=True, or drop them")
        checked = Assumptions.from_mapping(self.plan_assumptions, "plan_assumptions")
        return {k: v for k, v in vars(checked).items() if k in self.plan_assumptions and v is not None}

    def plan_dry_run(self, context: Any, config: Any, manifest: dict[str, Any],
                     assumptions: dict[str, float] | None = None) -> dict[str, Any]:
        import json

        plan = self.platform.plan(config, manifest, run_id=self.derive_run_id(context), assumptions=assumptions)
        self.log.info("dry run, nothing sent:\n%s", json.dumps(plan, indent=2, default=str))
        return plan

    def link_info(self, result: dict[str, Any]) -> dict[str, Any] | None:
        from cvtune.links import tuning_info

        if "run_id" not in result:  # a dry run: nothing to link to
            return None
        return tuning_info(result, self.sagemaker_region())

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """In: the fold manifest and its folds, the warm-start parents' ledgers. Out: the run's
        ledger. Run facet ``cvtune_tuning``: trial counts and the best trial's metrics."""
        from cvtune import lineage
        from cvtune.ledger import RunLedger

        result = self._result
        if not isinstance(result, dict) or "ledger" not in result:
            return lineage.operator_lineage([], [])
        ledger = RunLedger.load(result["ledger"], self.store)
        inputs = []
        if ledger.data.get("manifest_uri"):
            found = lineage.manifest_datasets(self.store.read_json(ledger.data["manifest_uri"]))
            inputs += [found[k] for k in ("manifest", "folds") if k in found]
        parents = (ledger.data.get("warm_start") or {}).get("parents") or []
        inputs += [lineage.dataset(uri, **lineage.doc("warm-start parent run ledger")) for uri in parents]
        outputs = [lineage.dataset(ledger.uri, **lineage.doc(f"cvtune run ledger of {ledger.run_id}"))]
        facets = {"cvtune_tuning": lineage.tuning_facet({**ledger.summary(), **result})}
        return lineage.operator_lineage(inputs, outputs, facets)

    def log_best(self, summary: dict[str, Any], config: Any) -> None:
        best = summary["best"]
        self.log.info(
            "best: trial %s, %s %.6f ± %.6f, hyperparameters %s",
            best["trial"], config.objective.metric, best["mean"], best["std"], best["hyperparameters"],
        )

    # -- deferral ----------------------------------------------------------------------------
    def execution_mode(self, backend: Any) -> str:
        """``wait`` (poll in the worker), ``defer`` or ``launch`` (wait_for_completion=False)."""
        from cvtune.errors import ConfigError

        if self.wait_for_completion and not self.deferrable:
            return "wait"
        reason = getattr(backend, "cannot_defer_reason", None)
        if reason is None:
            return "defer" if self.wait_for_completion else "launch"
        if not self.wait_for_completion:
            raise ConfigError(
                "wait_for_completion",
                f"the {backend.name} backend cannot leave a run to other processes: {reason}",
                "set wait_for_completion=True, or use the sagemaker backend",
            )
        if self._deferrable_requested:
            raise ConfigError(
                "deferrable",
                f"the {backend.name} backend cannot defer: {reason}",
                "set deferrable=False (the task polls in the worker), or use the sagemaker backend",
            )
        self.log.info(
            "[operators] default_deferrable is on, but the %s backend cannot defer (%s); polling in the worker",
            backend.name, reason,
        )
        return "wait"

    def defer_on(self, inflight: list[str]) -> NoReturn:
        """Hand the in-flight jobs to a TuningJobsTrigger; resumes in :meth:`execute_complete`."""
        from cvtune.triggers.tuning import defer_on_jobs

        defer_on_jobs(self, self._tuner, inflight, cvtune_conn_id=self.cvtune_conn_id,
                      poll_interval=self.poll_for(self._tuner.backend))

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger fired: record ended jobs, launch more, defer again or finish."""
        from cvtune.driving import abandon_on_failure, drive_step, lease_label
        from cvtune.triggers.tuning import check_jobs_event
        from cvtune.tuner import CVTuner, ledger_uri

        run_id = self.derive_run_id(context)
        check_jobs_event(event, run_id)
        assert event is not None
        with self.hook.get_conn() as backend, abandon_on_failure(self):
            self._tuner = tuner = CVTuner.resume(
                ledger_uri(self.hook.artifact_root, run_id), backend, poll_s=self.poll_for(backend),
                lease_label=lease_label(self, context), store=self.store,
            )
            self.log.info("run %s resumed: fold job(s) ended: %s", run_id, ", ".join(event.get("ended", [])))
            summary = drive_step(tuner, self.defer_on)
        assert summary is not None  # with a defer callback, drive_step finishes or defers
        self.log_best(summary, tuner.config)
        self.finished(context, summary)
        return summary

    def on_kill(self) -> None:
        if self._tuner is not None:
            self._tuner.stop("the Airflow task was killed")
