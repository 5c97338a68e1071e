"""TrainModelOperator: the final training job on the full training set, evaluated on the holdout."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.links import SageMakerFinalTrainingJobLink
from cvtune.operators.base import CvtuneBaseOperator


class TrainModelOperator(CvtuneBaseOperator):
    """Train once with the given hyperparameters on the manifest's full-train set.

    The holdout set (if the split made one) is the job's ``test`` channel, so the returned
    ``holdout_metrics`` are the final model's evaluation on rows no tuning decision saw.

    :param manifest_uri: the fold manifest.
    :param hyperparameters: a dict of hyperparameters, or ``BestParamsOperator``'s output
        (its ``hyperparameters``, ``entry_point`` and ``metric_definitions`` are used).
    :param entry_point: the training script; defaults to the one the best run used.
    :param release_pool: end the warm pool the job leaves behind as soon as it ends (SageMaker
        with ``release_pools: auto``; nothing after this step trains on it). ``False`` keeps it
        for its keep-alive, e.g. when another training job of the same shape follows.
    """

    template_fields: Sequence[str] = ("manifest_uri", "hyperparameters", "entry_point", "job_name", "cvtune_conn_id")
    ui_color = "#d9f2e3"
    operator_extra_links = (SageMakerFinalTrainingJobLink(),)

    def __init__(
        self,
        *,
        manifest_uri: str,
        hyperparameters: dict[str, Any],
        entry_point: str | None = None,
        job_name: str | None = None,
        max_runtime_s: int = 3600,
        poll_interval: float | None = None,
        release_pool: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.release_pool = release_pool
        self.manifest_uri = manifest_uri
        self.hyperparameters = hyperparameters
        self.entry_point = entry_point
        self.job_name = job_name
        self.max_runtime_s = max_runtime_s
        self.poll_interval = poll_interval

    def link_info(self, result: dict[str, Any]) -> dict[str, Any] | None:
        return {"region": self.sagemaker_region(), "training_job": result.get("job_name")}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """In: the manifest, the full training set and the holdout. Out: the model. Run facet
        ``cvtune_model``: the holdout metrics."""
        from cvtune import lineage

        result = self._result
        if not isinstance(result, dict):
            return lineage.operator_lineage([], [])
        manifest = self.store.read_json(self.manifest_uri)
        found = lineage.manifest_datasets(manifest)
        inputs = [found["manifest"]]
        if "full_train" in found:
            inputs.append(lineage.with_rows(found["full_train"], manifest["full_train"].get("rows"), output=False))
        if "holdout" in found:
            inputs.append(lineage.with_rows(found["holdout"], manifest["holdout"].get("rows"), output=False))
        outputs = [lineage.dataset(result["model_uri"], **lineage.doc("final model artifacts"))]
        facet = lineage.CvtuneModelRunFacet(metrics=dict(result.get("metrics") or {}), trainingJob=result.get("job_name"))
        return lineage.operator_lineage(inputs, outputs, {"cvtune_model": facet})

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.errors import ConfigError
        from cvtune.folds import load_manifest
        from cvtune.naming import derive_id
        from cvtune.training import train_final

        source = self.hyperparameters
        if not isinstance(source, dict):
            raise ConfigError("hyperparameters", f"expected a dict, got {type(source).__name__}", "pass BestParamsOperator's output")
        best = source if "hyperparameters" in source else {}
        hyperparameters = best.get("hyperparameters", source)
        entry_point = self.entry_point or best.get("entry_point")
        if not entry_point:
            raise ConfigError("entry_point", "is required when hyperparameters is a plain dict", "pass the training script path")
        dag_id, run_id, task_id, map_index = self.ids(context)
        job_name = self.job_name or derive_id(dag_id, run_id, task_id, map_index, prefix=f"{task_id}", limit=63)
        manifest = load_manifest(self.manifest_uri, self.store)
        tags = {"cvtune:dag": dag_id[:128], "cvtune:task": task_id[:128]}
        if best.get("run_id"):
            # the tuning run whose model this is (and whose fold pool the job usually takes)
            tags["cvtune:run"] = str(best["run_id"])[:256]
        with self.hook.get_conn() as backend:
            result = train_final(
                backend,
                manifest,
                entry_point=self.resolve_path(entry_point),
                hyperparameters=hyperparameters,
                job_name=job_name,
                metric_definitions=best.get("metric_definitions"),
                max_runtime_s=self.max_runtime_s,
                tags=tags,
                poll_s=float(self.poll_interval) if self.poll_interval is not None else backend.default_poll_s,
                release_pool=self.release_pool,
                environment=best.get("environment"),
            )
        result["cv"] = {k: best.get(k) for k in ("mean", "std", "fold_scores", "run_id", "trial", "objective")} if best else None
        result["manifest_fingerprint"] = manifest.get("fingerprint")
        self.log.info("final model %s: holdout %s", result["model_uri"], result["holdout_metrics"] or "(no holdout set)")
        return result
