"""WarmStartTuningOperator and the refinement decision that precedes it in the DAG."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseBranchOperator

from cvtune.hooks.cvtune import UsesConnection
from cvtune.operators.tuning import CVTuningOperator


class WarmStartTuningOperator(CVTuningOperator):
    """A tuning run seeded from parent runs (any number; ``transitive`` follows their parents).

    :param parents: run summaries and/or ledger URIs (``None`` entries ignored).
    :param warm_start_type: ``IDENTICAL_DATA_AND_ALGORITHM`` (same folds and script: parents'
        trials are observations and count for the best) or ``TRANSFER_LEARNING`` (new data:
        parents' best configurations run first, their history informs the sampler).
    :param previous_from_group: also take the tuning runs behind the latest version registered
        in this model package group (nightly retuning learns from last night). With no earlier
        version the run starts from scratch and says so.
    :param parameter_ranges: narrowed ranges (e.g. from ``RefinementDecisionOperator``);
        replaces the config's ranges.
    """

    template_fields: Sequence[str] = (
        *CVTuningOperator.template_fields, "parents", "warm_start_type", "previous_from_group", "parameter_ranges",
    )
    ui_color = "#b9d7f7"

    def __init__(
        self,
        *,
        parents: Any = None,
        warm_start_type: str = "IDENTICAL_DATA_AND_ALGORITHM",
        transitive: bool = False,
        previous_from_group: str | None = None,
        parameter_ranges: dict[str, Any] | None = None,
        top_per_parent: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parents = parents
        self.warm_start_type = warm_start_type
        self.transitive = transitive
        self.previous_from_group = previous_from_group
        self.parameter_ranges = parameter_ranges
        self.top_per_parent = top_per_parent

    def load_config(self):
        config = super().load_config()
        if self.parameter_ranges:
            config = config.with_overrides(parameter_ranges=self.parameter_ranges)
        return config

    def parent_uris(self) -> list[str]:
        from cvtune.best import ledger_uris

        uris = ledger_uris(self.parents)
        if self.previous_from_group:
            registry = self.platform.registry()  # model package groups on SageMaker
            previous = [v for v in registry.versions(self.previous_from_group) if (v.get("metadata") or {}).get("tuning_ledgers")]
            if previous:
                latest = previous[-1]
                self.log.info(
                    "warm start from the runs behind %s version %s: %s",
                    self.previous_from_group, latest["version"], latest["metadata"]["tuning_ledgers"],
                )
                uris += [u for u in latest["metadata"]["tuning_ledgers"] if u not in uris]
            else:
                self.log.info(
                    "first run: no earlier successful run of %s to warm-start from; tuning from scratch",
                    self.previous_from_group,
                )
        return uris

    def warm_start(self):
        from cvtune.warmstart import WarmStart, load_parents

        uris = self.parent_uris()
        if not uris:
            return None
        return WarmStart(
            self.warm_start_type, load_parents(uris, self.transitive, store=self.store), top_per_parent=self.top_per_parent, uris=uris
        )


class RefinementDecisionOperator(UsesConnection, BaseBranchOperator):
    """Branch to ``refine_task_id`` when a refinement condition holds, else to ``skip_task_id``.

    Pushes the decision (``refine``, ``reasons``, narrowed ``parameter_ranges``) as XCom key
    ``plan`` for the refine task.
    """

    template_fields: Sequence[str] = ("run", "target", "boundary", "top_k", "narrowing", "cvtune_conn_id")
    ui_color = "#fff3c4"

    def __init__(
        self,
        *,
        run: Any,
        refine_task_id: str = "refine",
        skip_task_id: str = "best_params",
        target: float | str | None = None,
        boundary: float | str | None = 0.05,
        top_k: int | str | None = 3,
        narrowing: float | str = 0.5,
        cvtune_conn_id: str = "cvtune_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cvtune_conn_id = cvtune_conn_id
        self._hook = None
        self.run = run
        self.refine_task_id = refine_task_id
        self.skip_task_id = skip_task_id
        self.target = target
        self.boundary = boundary
        self.top_k = top_k
        self.narrowing = narrowing

    def choose_branch(self, context: Any) -> str:
        from cvtune.operators.base import fail_fast_on_config_errors

        with fail_fast_on_config_errors():
            return self._choose(context)

    def _choose(self, context: Any) -> str:
        from cvtune.best import ledger_uris
        from cvtune.errors import ConfigError
        from cvtune.ledger import RunLedger
        from cvtune.refinement import reasons_of, refinement_plan, refinement_rules

        def number(name: str, value: Any, kind: type) -> Any:
            if value in (None, "", "None"):
                return None
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ConfigError(name, f"expected {kind.__name__} or empty, got {value!r}") from None

        [uri] = ledger_uris(self.run)
        ledger = RunLedger.load(uri, self.store)
        rules = refinement_rules(
            ledger,
            target=number("target", self.target, float),
            boundary=number("boundary", self.boundary, float),
            top_k=number("top_k", self.top_k, int),
        )
        reasons = reasons_of(rules)
        plan = refinement_plan(ledger, reasons, number("narrowing", self.narrowing, float) or 0.5, rules)
        context["ti"].xcom_push(key="plan", value=plan)
        if reasons:
            self.log.info("refining: %s", "; ".join(reasons))
            return self.refine_task_id
        self.log.info("no refinement condition holds; skipping to %s", self.skip_task_id)
        return self.skip_task_id
