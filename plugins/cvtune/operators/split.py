"""FoldSplitOperator: k-fold split into a fold manifest in the artifact store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.operators.base import CvtuneBaseOperator


class FoldSplitOperator(CvtuneBaseOperator):
    """Split a tabular dataset into K folds (plus full-train and holdout sets).

    Returns ``{"manifest": uri, "fingerprint", "rows", "folds", ...}``. The output location
    defaults to ``{artifact_root}/folds/{dag_id}/{id}``, the same for every retry of a run, so a
    retried split rewrites identical files.

    :param data_uri: CSV/Parquet file or directory, local path or URI (templated, e.g.
        ``s3://bucket/raw/dt={{ ds }}/``), or a list of them (concatenated: several partitions).
    :param target: target column.
    :param folds: number of folds K.
    :param strategy: ``kfold``, ``stratified`` (default for classification), ``group``,
        ``timeseries``.
    :param group_column: strategy ``group``: rows sharing its value stay in one fold.
    :param time_column: strategy ``timeseries``: folds follow this column's order (numbers or
        dates), every validation row later than every training row of its fold; empty: file order.
    :param file_format: ``csv`` or ``parquet`` fold files; empty: the input's format. Parquet folds
        are written and read several times faster than CSV (no float formatting and parsing) —
        worth it for large data; CSV stays the default for CSV input because every training
        script (and the SageMaker framework images' pandas) reads it.
    """

    template_fields: Sequence[str] = (
        "data_uri", "target", "folds", "strategy", "group_column", "time_column", "holdout", "seed", "task", "output_uri",
        "file_format", "cvtune_conn_id",
    )

    def __init__(
        self,
        *,
        data_uri: str,
        target: str,
        folds: int | str = 5,
        strategy: str | None = None,
        group_column: str | None = None,
        time_column: str | None = None,
        holdout: float | str = 0.0,
        seed: int | str = 0,
        task: str | None = None,
        output_uri: str | None = None,
        file_format: str | None = None,
        **kwargs: Any,
    ) -> None:
        # each key is its own XCom too, so downstream tasks can take split.output["manifest"]
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.target = target
        self.folds = folds
        self.strategy = strategy
        self.group_column = group_column
        self.time_column = time_column
        self.holdout = holdout
        self.seed = seed
        self.task = task
        self.output_uri = output_uri
        self.file_format = file_format

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """In: the data (schema, rows). Out: the fold manifest, the folds, the holdout."""
        from cvtune import lineage

        result = self._result
        if not isinstance(result, dict):
            return lineage.operator_lineage([], [])
        manifest = self.store.read_json(result["manifest"])
        found = lineage.manifest_datasets(manifest)
        rows = (manifest.get("dataset") or {}).get("rows")
        # the row count belongs to the data as a whole: it is given when there is one input
        inputs = [lineage.with_rows(d, rows if len(found["data"]) == 1 else None, output=False) for d in found["data"]]
        outputs = [found["manifest"]]
        if "folds" in found:
            outputs.append(lineage.with_rows(found["folds"], (manifest.get("full_train") or {}).get("rows"), output=True))
        if "holdout" in found:
            outputs.append(lineage.with_rows(found["holdout"], manifest["holdout"].get("rows"), output=True))
        return lineage.operator_lineage(inputs, outputs)

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.errors import ConfigError
        from cvtune.folds import manifest_summary, split_dataset
        from cvtune.naming import derive_id

        dag_id, run_id, task_id, map_index = self.ids(context)
        out = self.output_uri or self.store.join(
            self.hook.artifact_root, "folds", dag_id, derive_id(dag_id, run_id, task_id, map_index, prefix=run_id)
        )

        def number(name: str, value: Any, kind: type) -> Any:
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ConfigError(name, f"expected {kind.__name__}, got {value!r}") from None

        manifest = split_dataset(
            [self.resolve_path(str(u)) for u in self.data_uri] if isinstance(self.data_uri, (list, tuple))
            else self.resolve_path(str(self.data_uri)),
            out,
            target=self.target,
            folds=number("folds", self.folds, int),
            strategy=self.strategy or None,
            group_column=self.group_column or None,
            time_column=self.time_column or None,
            holdout=number("holdout", self.holdout, float),
            seed=number("seed", self.seed, int),
            task=self.task or None,
            file_format=self.file_format or None,
            store=self.store,
        )
        summary = manifest_summary(manifest)
        self.log.info("fold manifest %s: %s", manifest["manifest_uri"], summary)
        holdout = manifest.get("holdout")
        return {
            "manifest": manifest["manifest_uri"],
            "data_uri": self.data_uri if isinstance(self.data_uri, (list, tuple)) else str(self.data_uri),
            "holdout_uri": holdout["uri"] if holdout else None,
            # what batch transform scores: the holdout rows, or the training rows without one
            "scoring_uri": holdout["uri"] if holdout else manifest["full_train"]["uri"],
            **summary,
        }
