"""RegisterModelOperator: a model package version with a champion/challenger approval gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.operators.base import CvtuneBaseOperator

MINIMIZED = {"rmse", "mae", "logloss", "mse", "error"}


class RegisterModelOperator(CvtuneBaseOperator):
    """Register the final model in a model package group (SageMaker model registry shape).

    The registry follows the connection's backend: SageMaker model package groups for
    ``sagemaker`` (see :mod:`cvtune.sagemaker.registry`), versions on the artifact store otherwise.
    Approved automatically only when the holdout metric reaches ``approval_threshold`` and is
    not worse than the currently approved version; otherwise ``PendingManualApproval``.
    A retry of the task returns the version it registered before instead of adding another.

    :param model: ``TrainModelOperator``'s output.
    :param model_package_group: group name (letters, digits, hyphens).
    :param holdout_metric: metric name without channel prefix (``auc``, ``rmse`` …).
    :param approval_threshold: minimum (or, for minimized metrics, maximum) holdout value.
    :param runs: the tuning runs behind the model (summaries or ledger URIs); recorded in the
        version so the next run can warm-start from them.
    """

    template_fields: Sequence[str] = (
        "model", "model_package_group", "holdout_metric", "approval_threshold", "runs", "cvtune_conn_id",
    )
    ui_color = "#eadcf8"

    def __init__(
        self,
        *,
        model: dict[str, Any],
        model_package_group: str,
        holdout_metric: str = "auc",
        approval_threshold: float | str | None = None,
        maximize: bool | None = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runs = runs
        self.model = model
        self.model_package_group = model_package_group
        self.holdout_metric = holdout_metric
        self.approval_threshold = approval_threshold
        self.maximize = maximize

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.best import ledger_uris
        from cvtune.errors import ConfigError
        from cvtune.registry import decide_approval, open_registry

        if not isinstance(self.model, dict) or "model_uri" not in self.model:
            raise ConfigError("model", "expected TrainModelOperator's output (a dict with model_uri)")
        threshold = self.approval_threshold
        if threshold in ("", None):
            threshold = None
        else:
            try:
                threshold = float(threshold)
            except (TypeError, ValueError):
                raise ConfigError("approval_threshold", f"expected a number, got {threshold!r}") from None
        metric = self.holdout_metric
        maximize = self.maximize if self.maximize is not None else metric not in MINIMIZED
        registry = open_registry(self.hook.settings)  # model package groups on SageMaker, files locally
        group = self.model_package_group
        champion = registry.approved(group)
        value = (self.model.get("holdout_metrics") or {}).get(metric)
        status, reason = decide_approval(metric, value, threshold, champion, maximize)
        dag_id, run_id, task_id, map_index = self.ids(context)
        version = registry.register(
            group,
            model_uri=self.model["model_uri"],
            hyperparameters=self.model.get("hyperparameters", {}),
            cv_metrics=self.model.get("cv") or {},
            holdout_metrics=self.model.get("holdout_metrics") or {},
            data_fingerprint=self.model.get("manifest_fingerprint"),
            approval_status=status,
            approval_reason=reason,
            idempotency_key=f"{dag_id}/{run_id}/{task_id}/{map_index}",
            metadata={
                "entry_point": self.model.get("entry_point"),
                "training_job": self.model.get("job_name"),
                "tuning_ledgers": ledger_uris(self.runs),
                "dag_run_id": run_id,
            },
        )
        self.log.info("registered %s version %s: %s (%s)", group, version["version"], version["approval_status"], version["approval_reason"])
        return {
            "model_package_group": group,
            "version": version["version"],
            "model_package_arn": version["model_package_arn"],
            "approval_status": version["approval_status"],
            "approval_reason": version["approval_reason"],
            "model_uri": version["model_uri"],
            "entry_point": self.model.get("entry_point"),
            "hyperparameters": version["hyperparameters"],
            "holdout_metrics": version["holdout_metrics"],
        }
