"""BatchTransformOperator: batch predictions with a registered model, SageMaker transform style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.links import SageMakerTransformJobLink
from cvtune.operators.base import CvtuneBaseOperator


class BatchTransformOperator(CvtuneBaseOperator):
    """One ``<input>.out`` per input file, records split by line and scored in batches.

    :param model: ``RegisterModelOperator``'s (or ``TrainModelOperator``'s) output; its
        ``model_uri`` and ``entry_point`` are used.
    :param input_uri: a file or directory of CSV files.
    :param output_uri: where the ``.out`` files go (default: next to the model's artifacts).
    :param header: the input files start with a header line (dropped before scoring).
    :param exclude_columns: columns removed by name before scoring (e.g. the target).
    :param instance_type: SageMaker only: the transform instance type (default: the
        connection's ``instance_type``).
    :param instance_count: SageMaker only: transform instances.

    :param deferrable: SageMaker only: free the worker slot while the transform job runs (the
        triggerer polls it). Default: ``[operators] default_deferrable``. The local transform runs
        in the worker and never defers.

    On the ``sagemaker`` backend this is ``CreateModel`` + ``CreateTransformJob`` with the
    training job's container (:mod:`cvtune.sagemaker.transform`). ``max_records`` applies to the
    local transform only.
    """

    template_fields: Sequence[str] = ("model", "input_uri", "output_uri", "exclude_columns", "cvtune_conn_id")
    ui_color = "#fde2e1"
    operator_extra_links = (SageMakerTransformJobLink(),)

    def __init__(
        self,
        *,
        model: dict[str, Any],
        input_uri: str,
        output_uri: str | None = None,
        header: bool = False,
        exclude_columns: list[str] | None = None,
        max_records: int = 1000,
        instance_type: str | None = None,
        instance_count: int = 1,
        poll_interval: float | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.header = header
        self.exclude_columns = exclude_columns
        self.max_records = max_records
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.poll_interval = poll_interval
        self._job: tuple[Any, str] | None = None
        if deferrable is None:
            from airflow.sdk import conf

            deferrable = conf.getboolean("operators", "default_deferrable", fallback=False)
        self.deferrable = bool(deferrable)

    def link_info(self, result: dict[str, Any]) -> dict[str, Any] | None:
        return {"region": self.sagemaker_region(), "transform_job": result.get("transform_job")}

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """In: the scored data and the model. Out: the predictions, with their row count."""
        from cvtune import lineage

        result, model = self._result, self.model if isinstance(self.model, dict) else {}
        if not isinstance(result, dict):
            return lineage.operator_lineage([], [])
        records = result.get("records")
        inputs = [lineage.with_rows(lineage.dataset(self.input_uri), records, output=False)]
        if model.get("model_uri"):
            inputs.append(lineage.dataset(model["model_uri"], **lineage.doc("model artifacts")))
        package = lineage.model_package(model.get("model_package_arn"), model.get("model_package_group"),
                                        model.get("version"))
        inputs += [package] if package is not None else []
        outputs = [lineage.with_rows(lineage.dataset(result["output_uri"], **lineage.doc("batch predictions")),
                                     records, output=True)]
        return lineage.operator_lineage(inputs, outputs)

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.errors import ConfigError
        from cvtune.naming import derive_id

        if not isinstance(self.model, dict) or not self.model.get("model_uri") or not self.model.get("entry_point"):
            raise ConfigError("model", "expected a dict with model_uri and entry_point", "pass RegisterModelOperator's output")
        dag_id, run_id, task_id, map_index = self.ids(context)
        output = self.output_uri or self.store.join(
            self.hook.artifact_root, "predictions", dag_id, derive_id(dag_id, run_id, task_id, map_index, prefix=run_id)
        )
        job_name = derive_id(dag_id, run_id, task_id, map_index, prefix=task_id, limit=63)
        transform = self.platform.batch_transform(poll_s=self.poll_interval)
        self.poll_interval = transform.poll_s  # the platform's default when none was given
        self._job = (transform, job_name)
        state = transform.launch_model(
            model=self.model,
            entry_point=self.resolve_path(self.model["entry_point"]),
            input_uri=self.input_uri,
            output_uri=output,
            job_name=job_name,
            header=self.header,
            exclude_columns=list(self.exclude_columns or []),
            max_records=self.max_records,
            instance_type=self.instance_type,
            instance_count=self.instance_count,
            tags={"cvtune:dag": dag_id[:128], "cvtune:task": task_id[:128]},
        )
        if self.deferrable and transform.deferrable:
            outcome = transform.poll(job_name)
            if outcome is None:  # still running
                self._defer_on(job_name)
            retried = transform.retry(state, outcome)
            if retried is not None:
                self._job = (transform, retried["job_name"])
                self._defer_on(retried["job_name"])
        else:
            state, outcome = transform.wait_retrying(state)
        result = transform.finish(state, outcome)
        self.log.info("batch transform: %d records in %d files → %s", result["records"], len(result["files"]), output)
        return {**result, "model_package_group": self.model.get("model_package_group"), "version": self.model.get("version")}

    def _defer_on(self, job_name: str) -> None:
        from cvtune.triggers.transform import TransformJobTrigger

        self.defer(
            trigger=TransformJobTrigger(cvtune_conn_id=self.cvtune_conn_id, job_name=job_name,
                                        poll_interval=30.0 if self.poll_interval is None else self.poll_interval),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Back from the triggerer: check the ended job's output like the worker would have."""
        import time

        from cvtune.errors import RunFailedError

        if not event or event.get("status") == "error":
            raise RunFailedError(f"waiting for the batch transform job failed: {(event or {}).get('message', event)}")
        runner = self.platform.batch_transform(poll_s=self.poll_interval)
        state = runner.load_state(event["job_name"])
        retried = runner.retry(state, event)  # an InternalServerError: the next attempt, deferred again
        if retried is not None:
            self.poll_interval = runner.poll_s
            self._defer_on(retried["job_name"])
        result = runner.finish(state, event)  # the event is the job's outcome (aws.transform.job_outcome)
        self.log.info("batch transform: %d records in %d files → %s", result["records"], len(result["files"]), state["output_uri"])
        result = {
            **result,
            "model_package_group": self.model.get("model_package_group"),
            "version": self.model.get("version"),
            "elapsed_s": round(time.time() - state["started"], 3),  # launch to now, deferral included
        }
        self.finished(context, result)
        return result

    def on_kill(self) -> None:
        if self._job is not None:
            transform, job_name = self._job
            self.log.info("stopping batch transform job %s", job_name)
            transform.stop(job_name)
