"""TuningReportOperator: ``summary.json`` and a self-contained HTML report of the pipeline run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.links import RunLedgerLink, TuningReportLink
from cvtune.operators.base import CvtuneBaseOperator


class TuningReportOperator(CvtuneBaseOperator):
    """Write ``summary.json`` and ``report.html`` for one pipeline run.

    :param runs: tuning run summaries or ledger URIs (skipped branches' ``None`` ignored).
    :param best_params, final_model, registration, predictions: the outputs of those tasks.
    :param stages: stage name → that task's output; its ``elapsed_s`` is the stage's wall time.
    :param refinement: the refinement decision (``RefinementDecisionOperator``'s XCom ``plan``):
        the report shows every rule's verdict and the narrowed ranges.
    """

    template_fields: Sequence[str] = (
        "runs", "best_params", "final_model", "registration", "predictions", "stages", "refinement", "output_uri",
        "cvtune_conn_id",
    )
    ui_color = "#eeeeee"
    operator_extra_links = (TuningReportLink(), RunLedgerLink())

    def __init__(
        self,
        *,
        runs: Any,
        best_params: dict[str, Any],
        final_model: dict[str, Any] | None = None,
        registration: dict[str, Any] | None = None,
        predictions: dict[str, Any] | None = None,
        stages: dict[str, Any] | None = None,
        refinement: dict[str, Any] | None = None,
        output_uri: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runs = runs
        self.best_params = best_params
        self.final_model = final_model
        self.registration = registration
        self.predictions = predictions
        self.stages = stages
        self.refinement = refinement
        self.output_uri = output_uri

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.best import ledger_uris
        from cvtune.ledger import RunLedger
        from cvtune.naming import derive_id
        from cvtune.report import build_summary, write_report

        ledgers = [RunLedger.load(uri, self.store) for uri in ledger_uris(self.runs)]
        stage_seconds = {
            name: out["elapsed_s"]
            for name, out in (self.stages or {}).items()
            if isinstance(out, dict) and out.get("elapsed_s") is not None
        }
        dag_id, run_id, task_id, map_index = self.ids(context)
        summary = build_summary(
            ledgers=ledgers,
            best=self.best_params,
            final_model=self.final_model,
            registration=self.registration,
            predictions=self.predictions,
            stage_seconds=stage_seconds,
            extra={"dag_id": dag_id, "dag_run_id": run_id},
            refinement=self.refinement if isinstance(self.refinement, dict) else None,
        )
        out = self.output_uri or self.store.join(
            self.hook.artifact_root, "reports", dag_id, derive_id(dag_id, run_id, task_id, map_index, prefix=run_id)
        )
        paths = write_report(out, summary, ledgers, self.store)
        self.log.info("report: %s, summary: %s", paths["report"], paths["summary"])
        return {**paths, "headline": headline(summary), "run_id": (summary.get("best") or {}).get("run_id")}

    def link_info(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """The report folder under ``{artifact root}/reports/`` (the view serves nothing outside it)."""
        from cvtune import store
        from cvtune.report import REPORT_NAME

        root = store.join(self.hook.artifact_root, "reports", "")
        folder = result["report"][: -len(REPORT_NAME)].rstrip("/")
        relative = folder[len(root):].lstrip("/") if folder.startswith(root.rstrip("/") + "/") else None
        return {"report": relative, "run_id": result.get("run_id")}


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few numbers the demo prints."""
    best = summary.get("best") or {}
    return {
        "best_hyperparameters": best.get("hyperparameters"),
        "cv_objective": summary.get("cv_objective"),
        "holdout": summary.get("holdout"),
        "model": summary.get("model"),
        "predictions_uri": summary.get("predictions_uri"),
    }
