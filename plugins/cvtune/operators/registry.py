"""RegisterModelOperator: a model package version with a champion/challenger approval gate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.links import SageMakerModelPackageLink
from cvtune.operators.base import CvtuneBaseOperator


class RegisterModelOperator(CvtuneBaseOperator):
    """Register the final model in a model package group (SageMaker model registry shape).

    The registry follows the connection's backend: SageMaker model package groups for
    ``sagemaker`` (see :mod:`cvtune.sagemaker.registry`), versions on the artifact store otherwise.
    Approved automatically only when the holdout metric reaches ``approval_threshold`` (in the
    metric's direction) and beats the currently approved version by ``champion_margin`` (0: not
    worse); otherwise ``PendingManualApproval``, with the reason.
    A retry of the task returns the version it registered before instead of adding another.

    :param model: ``TrainModelOperator``'s output.
    :param model_package_group: group name (letters, digits, hyphens).
    :param holdout_metric: the metric judged, as the final job's ``test:`` metric without the
        prefix (``auc``, ``rmse`` …) or with it (``test:rmse``). Empty: the tuning objective's
        metric on the holdout (objective ``validation:rmse`` → ``rmse``).
    :param approval_direction: ``Maximize`` or ``Minimize``. Empty: the tuning objective's type.
    :param approval_threshold: the holdout value needed: a minimum when maximizing, a maximum when
        minimizing. Empty: no threshold.
    :param champion_margin: how much better than the champion's holdout value the new version must
        be (>= 0; 0 approves a tie).
    :param runs: the tuning runs behind the model (summaries or ledger URIs); recorded in the
        version so the next run can warm-start from them.
    """

    template_fields: Sequence[str] = (
        "model", "model_package_group", "holdout_metric", "approval_direction", "approval_threshold",
        "champion_margin", "runs", "cvtune_conn_id",
    )
    ui_color = "#eadcf8"
    operator_extra_links = (SageMakerModelPackageLink(),)

    def __init__(
        self,
        *,
        model: dict[str, Any],
        model_package_group: str,
        holdout_metric: str | None = None,
        approval_direction: str | None = None,
        approval_threshold: float | str | None = None,
        champion_margin: float | str = 0.0,
        maximize: bool | None = None,
        runs: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.runs = runs
        self.model = model
        self.model_package_group = model_package_group
        self.holdout_metric = holdout_metric
        self.approval_direction = approval_direction
        self.approval_threshold = approval_threshold
        self.champion_margin = champion_margin
        self.maximize = maximize

    def link_info(self, result: dict[str, Any]) -> dict[str, Any] | None:
        return {
            "region": self.sagemaker_region(),
            "model_package_group": result.get("model_package_group"),
            "model_package_version": result.get("version"),
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """In: the trained model. Out: the model package version (and the registry's model copy)."""
        from cvtune import lineage

        result = self._result
        if not isinstance(result, dict):
            return lineage.operator_lineage([], [])
        source = self.model.get("model_uri") if isinstance(self.model, dict) else None
        inputs = [lineage.dataset(source, **lineage.doc("model artifacts"))] if source else []
        outputs = [lineage.model_package(result.get("model_package_arn"), result["model_package_group"], result["version"])]
        if result.get("model_uri") and result["model_uri"] != source:
            outputs.append(lineage.dataset(result["model_uri"], **lineage.doc("registered model artifacts")))
        facet = lineage.CvtuneModelRunFacet(
            metrics=dict(result.get("holdout_metrics") or {}), modelPackageGroup=result["model_package_group"],
            version=result["version"], approvalStatus=result.get("approval_status"),
        )
        return lineage.operator_lineage(inputs, [o for o in outputs if o is not None], {"cvtune_model": facet})

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.best import ledger_uris
        from cvtune.errors import ConfigError
        from cvtune.registry import decide_approval

        if not isinstance(self.model, dict) or "model_uri" not in self.model:
            raise ConfigError("model", "expected TrainModelOperator's output (a dict with model_uri)")
        metric, maximize = approval_rule(self.model, self.holdout_metric, self.approval_direction, self.maximize)
        threshold = optional_number("approval_threshold", self.approval_threshold)
        margin = optional_number("champion_margin", self.champion_margin) or 0.0
        registry = self.platform.registry()  # model package groups on SageMaker, files locally
        group = self.model_package_group
        champion = registry.approved(group)
        value = (self.model.get("holdout_metrics") or {}).get(metric)
        status, reason = decide_approval(metric, value, threshold, champion, maximize, margin)
        self.log.info(
            "approval judged by holdout %s (%s), threshold %s, champion margin %g: %s",
            metric, "Maximize" if maximize else "Minimize", threshold, margin, reason,
        )
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
            "approval_metric": metric,
            "approval_direction": "Maximize" if maximize else "Minimize",
            "model_uri": version["model_uri"],
            "entry_point": self.model.get("entry_point"),
            "hyperparameters": version["hyperparameters"],
            "holdout_metrics": version["holdout_metrics"],
        }


def optional_number(name: str, value: Any) -> float | None:
    """A templated number param: ``None``/empty → ``None``, else a float (or a ConfigError)."""
    from cvtune.errors import ConfigError

    if value in ("", None, "None"):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, f"expected a number, got {value!r}") from None


def approval_rule(
    model: dict[str, Any], metric: str | None, direction: str | None, maximize: bool | None = None
) -> tuple[str, bool]:
    """The holdout metric judged and whether larger is better.

    Defaults come from the tuning objective the model was chosen by (``model["cv"]["objective"]``):
    ``validation:rmse`` / ``Minimize`` → ``rmse``, minimized.
    """
    from cvtune.errors import ConfigError

    objective = ((model.get("cv") or {}).get("objective")) or {}
    if metric in (None, "", "None"):
        name = objective.get("metric")
        if not name:
            raise ConfigError(
                "holdout_metric", "is empty and the model carries no tuning objective to default to",
                "name the holdout metric, e.g. auc or rmse",
            )
        metric = name.split(":", 1)[1] if ":" in name else name
    metric = str(metric)
    if metric.startswith("test:"):
        metric = metric[len("test:"):]
    if maximize is None:
        if direction in (None, "", "None"):
            direction = objective.get("type")
            if direction is None:
                raise ConfigError(
                    "approval_direction", "is empty and the model carries no tuning objective to default to",
                    "pass Maximize or Minimize",
                )
        if direction not in ("Maximize", "Minimize"):
            raise ConfigError("approval_direction", f"must be Maximize or Minimize, got {direction!r}")
        maximize = direction == "Maximize"
    return metric, bool(maximize)
