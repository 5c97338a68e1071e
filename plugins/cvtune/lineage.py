"""OpenLineage for the cvtune operators: the datasets each step reads and writes, with facets.

Imported only from the operators' ``get_openlineage_facets_on_complete`` — the OpenLineage
listener calls it after ``execute`` when ``apache-airflow-providers-openlineage`` is installed
and configured — never at DAG-parse time. As the amazon provider's SageMaker operators do, the
facet classes come from ``airflow.providers.common.compat.openlineage.facet`` and
``OperatorLineage`` from the OpenLineage provider, both imported here lazily.

Dataset names follow the OpenLineage naming spec: ``s3://{bucket}`` / key for S3, ``file`` /
absolute path for the local artifact store; a SageMaker model package is named by its ARN
(namespace ``arn:aws:sagemaker:{region}:{account}``, name ``model-package/{group}/{version}``),
the local registry's by ``cvtune-registry`` / ``model-package/{group}/{version}``.

Facets: ``schema`` (the dataset's columns, from the fold manifest), ``inputStatistics`` /
``outputStatistics`` (row counts), ``documentation``, and the run facet ``cvtune_tuning`` with
the best trial's metrics (mean, std, per-fold scores, hyperparameters) and the trial counts.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from airflow.providers.common.compat.openlineage.facet import (
    Dataset,
    DocumentationDatasetFacet,
    OutputStatisticsOutputDatasetFacet,
    RunFacet,
    SchemaDatasetFacet,
    SchemaDatasetFacetFields,
)

from cvtune import __version__, store

PRODUCER = f"https://github.com/cvtune/cvtune/tree/{__version__}"
SCHEMA_URL = "https://github.com/cvtune/cvtune/blob/main/docs/lineage.json#/$defs/"
LOCAL_REGISTRY_NAMESPACE = "cvtune-registry"


@attrs.define
class CvtuneTuningRunFacet(RunFacet):
    """The tuning run behind a task: its id and ledger, the trial counts and the best trial."""

    runId: str  # noqa: N815 - OpenLineage facets are camelCase
    ledger: str
    objective: dict[str, Any]
    trials: dict[str, int]
    foldJobs: int  # noqa: N815
    best: dict[str, Any] | None = None

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL + "CvtuneTuningRunFacet"


@attrs.define
class CvtuneModelRunFacet(RunFacet):
    """The model a task trained, registered or used: holdout metrics, version, approval."""

    metrics: dict[str, Any] = attrs.field(factory=dict)
    modelPackageGroup: str | None = None  # noqa: N815
    version: int | None = None
    approvalStatus: str | None = None  # noqa: N815
    trainingJob: str | None = None  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL + "CvtuneModelRunFacet"


def operator_lineage(inputs: list[Any], outputs: list[Any], run_facets: dict[str, Any] | None = None):
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets or {})


def dataset(uri: str, **facets: Any) -> Dataset:
    """The OpenLineage dataset of an artifact-store URI (``s3://`` or local)."""
    if uri.startswith("s3://"):
        bucket, key = store.split_s3_uri(uri)
        return Dataset(namespace=f"s3://{bucket}", name=key.rstrip("/") or "/", facets=facets)
    path = os.path.abspath(store.local_path(uri)) if store.is_local(uri) else uri
    return Dataset(namespace="file", name=path.rstrip("/") or "/", facets=facets)


def with_rows(ds: Dataset, rows: int | None, *, output: bool) -> Dataset:
    """``ds`` with its row count: ``outputStatistics`` for an output, ``inputStatistics`` for an input."""
    if rows is None:
        return ds
    if output:
        from airflow.providers.common.compat.openlineage.facet import OutputDataset

        return OutputDataset(namespace=ds.namespace, name=ds.name, facets=ds.facets,
                             outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=int(rows))})
    from airflow.providers.common.compat.openlineage.facet import InputDataset

    try:  # newer clients only; without it the count is left out rather than misfiled
        from openlineage.client.generated.input_statistics_input_dataset import (
            InputStatisticsInputDatasetFacet,
        )
    except ImportError:
        return ds
    return InputDataset(namespace=ds.namespace, name=ds.name, facets=ds.facets,
                        inputFacets={"inputStatistics": InputStatisticsInputDatasetFacet(rowCount=int(rows))})


def schema(columns: list[str] | None) -> dict[str, Any]:
    """A ``schema`` facet with the column names (types are not recorded in the manifest)."""
    if not columns:
        return {}
    return {"schema": SchemaDatasetFacet(fields=[SchemaDatasetFacetFields(name=str(c)) for c in columns])}


def doc(text: str) -> dict[str, Any]:
    return {"documentation": DocumentationDatasetFacet(description=text)}


def manifest_datasets(manifest: dict[str, Any]) -> dict[str, Any]:
    """The data (``data``: a list, one per partition read), the manifest, the folds (their common
    folder), full train set and holdout."""
    data = manifest.get("dataset") or {}
    uris = data["uri"] if isinstance(data.get("uri"), list) else [data["uri"]]
    out: dict[str, Any] = {
        "data": [dataset(u, **schema(data.get("columns"))) for u in uris],
        "manifest": dataset(manifest["manifest_uri"], **doc("cvtune fold manifest")),
    }
    folds_root = _common_folder([f["train_uri"] for f in manifest.get("folds") or []]
                                + [f["validation_uri"] for f in manifest.get("folds") or []])
    if folds_root:
        out["folds"] = dataset(folds_root, **schema(data.get("columns")),
                               **doc(f"{len(manifest['folds'])} cross-validation folds (train/validation)"))
    if manifest.get("full_train"):
        out["full_train"] = dataset(manifest["full_train"]["uri"], **schema(data.get("columns")))
    if manifest.get("holdout"):
        out["holdout"] = dataset(manifest["holdout"]["uri"], **schema(data.get("columns")))
    return out


def _common_folder(uris: list[str]) -> str | None:
    if not uris:
        return None
    parts = [u.rstrip("/").split("/") for u in uris]
    common = []
    for segment in zip(*parts, strict=False):
        if len(set(segment)) != 1:
            break
        common.append(segment[0])
    return "/".join(common) or None


def tuning_facet(summary: dict[str, Any]) -> CvtuneTuningRunFacet:
    best = summary.get("best")
    return CvtuneTuningRunFacet(
        runId=summary["run_id"],
        ledger=summary["ledger"],
        objective=dict(summary.get("objective") or {}),
        trials={str(k): int(v) for k, v in (summary.get("trials") or {}).items()},
        foldJobs=int(summary.get("fold_jobs") or 0),
        best=None if not best else {
            "runId": best.get("run_id") or summary["run_id"],
            "trial": best["trial"],
            "mean": best["mean"],
            "std": best["std"],
            "foldScores": best.get("fold_scores"),
            "hyperparameters": best.get("hyperparameters"),
        },
    )


def model_package(arn: str | None, group: str | None, version: Any) -> Dataset | None:
    if arn and arn.startswith("arn:"):
        prefix, _, resource = arn.partition(":model-package/")
        return Dataset(namespace=prefix, name=f"model-package/{resource}", facets={})
    if group is None or version is None:
        return None
    return Dataset(namespace=LOCAL_REGISTRY_NAMESPACE, name=f"model-package/{group}/{version}", facets={})
