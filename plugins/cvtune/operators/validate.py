"""ValidateInputsOperator: the cheap checks that run before the first byte is split or job launched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.operators.base import CvtuneBaseOperator


class ValidateInputsOperator(CvtuneBaseOperator):
    """Fail fast, once, on user mistakes: everything here costs a header read and a config parse.

    Checks, each failing with ``field: problem — fix`` and without retry:

    * the DAG run's conf names only known params (a typo gets a "did you mean");
    * the tuning config parses and validates (ranges, metric definitions, objective);
    * the target, group and time columns exist in the data (its header or Parquet schema);
    * the split agrees with the config: ``group_column`` only with strategy ``group`` (required
      there), ``time_column`` only with ``timeseries``; the config's static ``target`` equals the
      target param; a ``regression`` task is not split ``stratified``; ``exclude_columns`` exist
      and do not name the target;
    * the approval metric can be measured on the holdout: the generic script reports it, or the
      config defines ``test:X`` (or a ``validation:X`` whose regex names its channel).

    Returns what it checked (columns, objective, approval metric) for the log and the report.
    """

    template_fields: Sequence[str] = (
        "data_uri", "target", "strategy", "group_column", "time_column", "tuning_config", "approval_metric",
        "cvtune_conn_id",
    )
    ui_color = "#f4f4d0"

    def __init__(
        self,
        *,
        data_uri: Any,
        target: str,
        tuning_config: str | dict[str, Any],
        strategy: str | None = None,
        group_column: str | None = None,
        time_column: str | None = None,
        approval_metric: str | None = None,
        check_conf_keys: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_uri = data_uri
        self.target = target
        self.tuning_config = tuning_config
        self.strategy = strategy
        self.group_column = group_column
        self.time_column = time_column
        self.approval_metric = approval_metric
        self.check_conf_keys = check_conf_keys

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.config import load_config

        if self.check_conf_keys:
            check_conf_keys(context)
        source = self.tuning_config
        config = load_config(self.resolve_path(source) if isinstance(source, str) else source)
        uris = self.data_uri if isinstance(self.data_uri, (list, tuple)) else [self.data_uri]
        from cvtune.folds import read_columns

        columns = read_columns(self.resolve_path(str(uris[0])), self.store)
        check_split(columns, self.target, self.strategy or None, self.group_column or None, self.time_column or None)
        check_config_against_split(config, columns, self.target, self.strategy or None)
        metric = check_approval_metric(config, self.approval_metric or None)
        self.log.info(
            "inputs valid: %d columns, target %r, objective %s (%s), approval by holdout %s; data %s",
            len(columns), self.target, config.objective.metric, config.objective.type, metric, uris,
        )
        return {"columns": columns, "objective": {"metric": config.objective.metric, "type": config.objective.type},
                "approval_metric": metric, "data_uri": self.data_uri}


def _close(word: str, options: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(options))}"


def check_conf_keys(context: Any) -> None:
    """Refuse conf keys that name no param: Airflow ignores them, so a typo silently did nothing."""
    from cvtune.errors import ConfigError

    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    # the DAG's declared params: the run's context params already hold the conf's keys, typos too
    dag = context.get("dag")
    known = list(dag.params) if dag is not None else list(context.get("params") or {})
    unknown = [key for key in conf if key not in known]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"conf.{key}", "is not a param of this DAG (Airflow would ignore it)", _close(key, known))


def check_split(
    columns: list[str], target: str, strategy: str | None, group_column: str | None, time_column: str | None
) -> None:
    from cvtune.errors import ConfigError, DataError

    def column(field: str, name: str) -> None:
        if name not in columns:
            raise DataError(field, f"column {name!r} is not in the data (columns: {', '.join(columns)})", _close(name, columns))

    if not target:
        raise ConfigError("target", "is empty", "name the label column")
    column("target", target)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise DataError("data_uri", f"the data repeats column name(s) {repeated}", "give every column a unique name")
    if strategy == "group" and not group_column:
        raise ConfigError("group_column", "split strategy 'group' needs a group column", "set group_column to the column whose rows must stay together")
    if group_column:
        if strategy != "group":
            raise ConfigError("group_column", f"is only used by split strategy 'group' (strategy is {strategy!r})", "set split_strategy to group, or clear group_column")
        column("group_column", group_column)
    if time_column:
        if strategy != "timeseries":
            raise ConfigError("time_column", f"is only used by split strategy 'timeseries' (strategy is {strategy!r})", "set split_strategy to timeseries, or clear time_column")
        column("time_column", time_column)


def check_config_against_split(config: Any, columns: list[str], target: str, strategy: str | None) -> None:
    """The tuning config's static hyperparameters must describe the same problem as the split."""
    from cvtune.errors import ConfigError

    static = config.static_hyperparameters
    if "target" in static and str(static["target"]) != target:
        raise ConfigError(
            "static_hyperparameters.target",
            f"is {static['target']!r} but the split's target is {target!r}",
            "use one target: set the target param and the config's target to the same column",
        )
    if static.get("task") == "regression" and strategy == "stratified":
        raise ConfigError(
            "split_strategy", "'stratified' needs a class label, but the config's task is regression",
            "use split_strategy kfold (or group/timeseries)",
        )
    excluded = static.get("exclude_columns")
    if excluded:
        names = excluded if isinstance(excluded, list) else [c.strip() for c in str(excluded).split(",") if c.strip()]
        if target in names:
            raise ConfigError("static_hyperparameters.exclude_columns", f"names the target {target!r}", "list only non-feature columns (ids, dates)")
        for name in names:
            if name not in columns:
                raise ConfigError("static_hyperparameters.exclude_columns", f"column {name!r} is not in the data", _close(name, columns))


def check_approval_metric(config: Any, approval_metric: str | None) -> str:
    """The holdout metric approval will read (``test:X``), checked to be measurable."""
    from cvtune.errors import ConfigError
    from cvtune.training import METRIC_NAMES, final_metric_definitions

    name = approval_metric or config.objective.metric
    bare = name.split(":", 1)[1] if ":" in name else name
    measured = {d["Name"] for d in final_metric_definitions(config.metric_definitions)}
    if f"test:{bare}" not in measured:
        raise ConfigError(
            "approval_metric" if approval_metric else "metric_definitions",
            f"nothing measures test:{bare} on the holdout: the generic script reports {', '.join(METRIC_NAMES)}, "
            f"and the config defines no test:{bare} (nor a validation:{bare} whose regex names its channel)",
            f'add {{Name: "test:{bare}", Regex: ...}} to metric_definitions, or pick another approval_metric',
        )
    return bare
