"""CVTuningOperator: a cross-validated tuning run where every fold is its own training job."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    """

    template_fields: Sequence[str] = (
        "manifest_uri", "tuning_config", "run_id", "strategy", "max_trials", "max_parallel_trials",
        "max_parallel_jobs", "seed", "cvtune_conn_id",
    )
    template_fields_renderers = {"tuning_config": "json"}
    ui_color = "#cfe3fa"

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
        poll_interval: float = 2.0,
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
        self.poll_interval = poll_interval
        self._tuner = None

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
        }
        return load_config(source, **{k: v for k, v in overrides.items() if v not in (None, "")})

    def derive_run_id(self, context: Any) -> str:
        from cvtune.naming import derive_id

        dag_id, run_id, task_id, map_index = self.ids(context)
        return self.run_id or derive_id(dag_id, run_id, task_id, map_index, prefix=task_id)

    def make_tuner(self, context: Any, backend: Any, config: Any, manifest: dict[str, Any]):
        from cvtune.tuner import CVTuner

        return CVTuner(
            config,
            manifest,
            backend,
            run_id=self.derive_run_id(context),
            artifact_root=self.hook.artifact_root,
            poll_s=self.poll_interval,
            ledger_extra=self.ledger_extra(context),
        )

    def ledger_extra(self, context: Any) -> dict[str, Any]:
        dag_id, run_id, task_id, map_index = self.ids(context)
        return {"airflow": {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}}

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.folds import load_manifest

        config = self.load_config()
        manifest = load_manifest(self.manifest_uri)
        with self.hook.get_conn() as backend:
            self._tuner = self.make_tuner(context, backend, config, manifest)
            self.log.info(
                "tuning run %s: %s strategy, %d trials, %d in parallel, %d folds → ledger %s",
                self._tuner.run_id, config.strategy, config.max_trials, config.max_parallel_trials,
                len(manifest["folds"]), self._tuner.uri,
            )
            summary = self._tuner.run()
        best = summary["best"]
        self.log.info(
            "best: trial %s, %s %.6f ± %.6f, hyperparameters %s",
            best["trial"], config.objective.metric, best["mean"], best["std"], best["hyperparameters"],
        )
        return summary

    def on_kill(self) -> None:
        if self._tuner is not None:
            self._tuner.stop("the Airflow task was killed")
