"""BatchTransformOperator: batch predictions with a registered model, SageMaker transform style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.operators.base import CvtuneBaseOperator


class BatchTransformOperator(CvtuneBaseOperator):
    """One ``<input>.out`` per input file, records split by line and scored in batches.

    :param model: ``RegisterModelOperator``'s (or ``TrainModelOperator``'s) output; its
        ``model_uri`` and ``entry_point`` are used.
    :param input_uri: a file or directory of CSV files.
    :param output_uri: where the ``.out`` files go (default: next to the model's artifacts).
    :param header: the input files start with a header line (dropped before scoring).
    :param exclude_columns: columns removed by name before scoring (e.g. the target).
    """

    template_fields: Sequence[str] = ("model", "input_uri", "output_uri", "exclude_columns", "cvtune_conn_id")
    ui_color = "#fde2e1"

    def __init__(
        self,
        *,
        model: dict[str, Any],
        input_uri: str,
        output_uri: str | None = None,
        header: bool = False,
        exclude_columns: list[str] | None = None,
        max_records: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.input_uri = input_uri
        self.output_uri = output_uri
        self.header = header
        self.exclude_columns = exclude_columns
        self.max_records = max_records

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune import store
        from cvtune.errors import ConfigError
        from cvtune.naming import derive_id
        from cvtune.transform import batch_transform

        if not isinstance(self.model, dict) or not self.model.get("model_uri") or not self.model.get("entry_point"):
            raise ConfigError("model", "expected a dict with model_uri and entry_point", "pass RegisterModelOperator's output")
        dag_id, run_id, task_id, map_index = self.ids(context)
        output = self.output_uri or store.join(
            self.hook.artifact_root, "predictions", dag_id, derive_id(dag_id, run_id, task_id, map_index, prefix=run_id)
        )
        result = batch_transform(
            entry_point=self.resolve_path(self.model["entry_point"]),
            model_uri=self.model["model_uri"],
            input_uri=self.input_uri,
            output_uri=output,
            header=self.header,
            exclude_columns=list(self.exclude_columns or []),
            max_records=self.max_records,
        )
        self.log.info("batch transform: %d records in %d files → %s", result["records"], len(result["files"]), output)
        return {**result, "model_package_group": self.model.get("model_package_group"), "version": self.model.get("version")}
