"""The tuning config: a YAML/JSON file (or dict) in SageMaker's own shapes where they exist.

Keys: ``entry_point``, ``static_hyperparameters``, ``objective: {metric, type}`` (SageMaker's
``{MetricName, Type}`` also accepted), ``metric_definitions: [{Name, Regex}]``,
``parameter_ranges`` (the ``ParameterRanges`` shape), ``strategy``, ``max_trials``,
``max_parallel_trials``, ``max_parallel_jobs``, ``max_failed_trials``, ``max_runtime_s``, ``seed``,
``environment`` (the jobs' environment variables, SageMaker's ``Environment``),
``early_stopping`` (fold level, :mod:`cvtune.stopping`) and the run-level completion criteria
``target_value``, ``max_trials_not_improving``, ``min_improvement``, ``convergence``
(:mod:`cvtune.completion`).
Everything is validated before any job is launched; errors name the key and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cvtune.completion import CompletionCriteria
from cvtune.errors import ConfigError
from cvtune.metrics import validate_metric_definitions
from cvtune.space import SearchSpace
from cvtune.stopping import EarlyStopping

STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")
OBJECTIVE_TYPES = ("Maximize", "Minimize")
# Metrics whose direction is not a matter of taste (the generic script's and common ones).
KNOWN_DIRECTIONS = {
    "Maximize": {"auc", "accuracy", "f1", "r2", "precision", "recall", "balanced_accuracy"},
    "Minimize": {"rmse", "mse", "mae", "logloss", "error", "mape", "rmsle"},
}
KEYS = (
    "entry_point",
    "static_hyperparameters",
    "objective",
    "metric_definitions",
    "parameter_ranges",
    "strategy",
    "max_trials",
    "max_parallel_trials",
    "max_parallel_jobs",
    "max_failed_trials",
    "max_runtime_s",
    "seed",
    "early_stopping",
    "environment",
    "target_value",
    "max_trials_not_improving",
    "min_improvement",
    "convergence",
)
# settings that only decide when the run ends, not what a trial scores: free to change on resume
BUDGET_KEYS = (
    "max_trials", "max_parallel_trials", "max_parallel_jobs", "max_failed_trials", "max_runtime_s",
    "target_value", "max_trials_not_improving", "min_improvement", "convergence",
)
# SageMaker's limits on CreateTrainingJob's Environment (TrainingEnvironmentMap in the API model)
ENV_MAX_ENTRIES = 100
ENV_MAX_LEN = 512
ENV_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(frozen=True)
class Objective:
    metric: str
    type: str = "Maximize"

    @property
    def direction(self) -> str:
        return "maximize" if self.type == "Maximize" else "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when score ``a`` is strictly better than ``b``."""
        return a > b if self.type == "Maximize" else a < b


@dataclass(frozen=True)
class TuningConfig:
    entry_point: str
    objective: Objective
    metric_definitions: list[dict[str, str]]
    space: SearchSpace
    strategy: str = "Bayesian"
    max_trials: int = 20
    max_parallel_trials: int = 2
    max_parallel_jobs: int | None = None
    max_failed_trials: int = 3
    max_runtime_s: int = 3600
    seed: int = 0
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    environment: dict[str, str] = field(default_factory=dict)
    completion: CompletionCriteria = field(default_factory=CompletionCriteria)
    source: str | None = field(default=None, compare=False)

    @property
    def static_hyperparameters(self) -> dict[str, Any]:
        return dict(self.space.static)

    def to_dict(self) -> dict[str, Any]:
        """The canonical config, in the same shape it was read from."""
        return {
            "entry_point": self.entry_point,
            "static_hyperparameters": self.static_hyperparameters,
            "objective": {"metric": self.objective.metric, "type": self.objective.type},
            "metric_definitions": self.metric_definitions,
            "parameter_ranges": self.space.to_parameter_ranges(),
            "strategy": self.strategy,
            "max_trials": self.max_trials,
            "max_parallel_trials": self.max_parallel_trials,
            "max_parallel_jobs": self.max_parallel_jobs,
            "max_failed_trials": self.max_failed_trials,
            "max_runtime_s": self.max_runtime_s,
            "seed": self.seed,
            "early_stopping": self.early_stopping.to_dict(),
            "environment": dict(self.environment),
            **self.completion.to_dict(),
        }

    def fingerprint(self) -> str:
        """Hash of what decides the trials' results; budget and parallelism excluded."""
        d = self.to_dict()
        for key in ("max_trials", "max_parallel_trials", "max_parallel_jobs", "max_failed_trials",
                    "target_value", "max_trials_not_improving", "min_improvement", "convergence"):
            d.pop(key, None)
        if not d["environment"]:  # runs started before the key existed keep their fingerprint
            d.pop("environment")
        d["entry_point_sha256"] = entry_point_sha256(self.entry_point)
        d.pop("entry_point")
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()

    def with_overrides(self, **overrides: Any) -> TuningConfig:
        """A copy with some keys replaced (``None`` values ignored), validated like a file."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if not overrides:
            return self
        data = self.to_dict()
        data.update(overrides)
        return parse_config(data, base_dir=None, source=self.source)


def entry_point_sha256(path: str) -> str:
    """Content hash of the training code: the entry point file or, for a directory, all its files."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode())
                with open(full, "rb") as f:
                    h.update(f.read())
    elif os.path.exists(path):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def load_config(source: str | dict[str, Any], **overrides: Any) -> TuningConfig:
    """Read and validate a tuning config from a YAML/JSON file path or a dict.

    A relative ``entry_point`` is resolved against the config file's directory (or the current
    directory for a dict), so a config works wherever the command is run from.
    """
    if isinstance(source, dict):
        data, base_dir, name = dict(source), os.getcwd(), None
    else:
        path = str(source)
        if not os.path.exists(path):
            raise ConfigError("config", f"file {path} does not exist", "pass the path of a YAML or JSON tuning config")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            if path.endswith(".json"):
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:  # noqa: BLE001 - any parse error becomes a config error
            raise ConfigError("config", f"cannot parse {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError("config", f"{path} must hold a mapping of settings")
        base_dir, name = os.path.dirname(os.path.abspath(path)), path
    data.update({k: v for k, v in overrides.items() if v is not None})
    return parse_config(data, base_dir=base_dir, source=name)


def _given_int(data: dict[str, Any], key: str, default: int, minimum: int) -> int:
    """:func:`_int` of a key with a default: an explicit null is an error, not "unset"."""
    value = _int(data, key, default, minimum)
    if value is None:
        raise ConfigError(key, "expected an integer, got null", f"give a number, or leave it out for {default}")
    return value


def _int(data: dict[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise ConfigError(key, f"expected an integer, got {value!r}")
    try:
        number = int(value)
        if float(value) != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(key, f"must be at least {minimum}, got {number}")
    return number


def parse_config(data: dict[str, Any], base_dir: str | None, source: str | None = None) -> TuningConfig:
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, KEYS, n=1)
        fix = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KEYS)}"
        raise ConfigError(key, "unknown setting", fix)

    entry_point = data.get("entry_point")
    if not entry_point or not isinstance(entry_point, str):
        raise ConfigError("entry_point", "is required", "give the path of the training script, e.g. include/training/train.py")
    if base_dir is not None and not os.path.isabs(entry_point):
        entry_point = os.path.normpath(os.path.join(base_dir, entry_point))
    if not os.path.isfile(entry_point):
        raise ConfigError("entry_point", f"training script {entry_point} does not exist", "fix the path (relative paths start at the config file's folder)")

    static = data.get("static_hyperparameters") or {}
    if not isinstance(static, dict):
        raise ConfigError("static_hyperparameters", "expected a mapping of name: value")

    objective = data.get("objective")
    if not isinstance(objective, dict):
        raise ConfigError("objective", "is required", "write objective: {metric: validation:auc, type: Maximize}")
    metric = objective.get("metric", objective.get("MetricName"))
    otype = objective.get("type", objective.get("Type", "Maximize"))
    if not isinstance(metric, str) or not metric:
        raise ConfigError("objective.metric", "is required", "name the metric to optimize, e.g. validation:auc")
    if otype not in OBJECTIVE_TYPES:
        raise ConfigError("objective.type", f"must be Maximize or Minimize, got {otype!r}")

    definitions = validate_metric_definitions(data.get("metric_definitions") or [])
    if metric not in {d["Name"] for d in definitions}:
        raise ConfigError(
            "metric_definitions",
            f"the objective metric {metric!r} has no definition",
            f'add {{Name: "{metric}", Regex: "{metric}=([-+0-9.eE]+);"}}',
        )

    bare = metric.split(":", 1)[-1].lower()
    wanted = next((kind for kind, names in KNOWN_DIRECTIONS.items() if bare in names), None)
    if wanted is not None and otype != wanted:
        # tuning toward the worst model is never meant, and costs the whole budget
        raise ConfigError(
            "objective.type", f"{otype} of {metric!r}, a metric where {'larger' if wanted == 'Maximize' else 'smaller'} is better",
            f"use type: {wanted}",
        )

    if "parameter_ranges" not in data:
        raise ConfigError("parameter_ranges", "is required", "paste SageMaker ParameterRanges (ContinuousParameterRanges, ...)")
    space = SearchSpace.from_parameter_ranges(data["parameter_ranges"], static)

    strategy = data.get("strategy", "Bayesian")
    if strategy not in STRATEGIES:
        raise ConfigError("strategy", f"unknown strategy {strategy!r}", f"use one of {', '.join(STRATEGIES)}")

    grid_size = None
    if strategy == "Grid":
        grid_size = len(space.grid())
    max_trials = _given_int(data, "max_trials", grid_size or 20, 1)
    if grid_size is not None and max_trials > grid_size:
        max_trials = grid_size
    max_parallel_trials = _given_int(data, "max_parallel_trials", 2, 1)
    max_parallel_jobs = _int(data, "max_parallel_jobs", None, 1)
    max_failed_trials = _given_int(data, "max_failed_trials", 3, 1)
    max_runtime_s = _given_int(data, "max_runtime_s", 3600, 1)
    seed = _given_int(data, "seed", 0, 0)
    early_stopping = EarlyStopping.parse(data.get("early_stopping"))
    environment = parse_environment(data.get("environment"))
    if strategy == "Hyperband" and early_stopping.rule != "off":
        raise ConfigError(
            "early_stopping.rule",
            f"the Hyperband strategy stops trials itself; rule {early_stopping.rule!r} would stop them twice",
            "set rule: off (keep reduction_factor / min_folds for Hyperband) or use strategy Bayesian",
        )

    completion = CompletionCriteria.parse(data)

    return TuningConfig(
        entry_point=entry_point,
        objective=Objective(metric, otype),
        metric_definitions=definitions,
        space=space,
        strategy=strategy,
        max_trials=max_trials,
        max_parallel_trials=max_parallel_trials,
        max_parallel_jobs=max_parallel_jobs,
        max_failed_trials=max_failed_trials,
        max_runtime_s=max_runtime_s,
        seed=seed,
        early_stopping=early_stopping,
        environment=environment,
        completion=completion,
        source=source,
    )


def parse_environment(value: Any, field_name: str = "environment") -> dict[str, str]:
    """The jobs' extra environment variables: name → string, within SageMaker's limits."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(field_name, f"expected a mapping of NAME: value, got {type(value).__name__}",
                          "write environment: {MY_FLAG: \"1\"}")
    if len(value) > ENV_MAX_ENTRIES:
        raise ConfigError(field_name, f"{len(value)} variables; SageMaker allows at most {ENV_MAX_ENTRIES}")
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_KEY_RE.match(key) or len(key) > ENV_MAX_LEN:
            raise ConfigError(f"{field_name}.{key}", "not a valid variable name",
                              f"use letters, digits and underscores, not starting with a digit (at most {ENV_MAX_LEN})")
        if not isinstance(item, str):
            raise ConfigError(f"{field_name}.{key}", f"expected a string, got {type(item).__name__} {item!r}",
                              f"quote it: {key}: \"{item}\"")
        if len(item) > ENV_MAX_LEN:
            raise ConfigError(f"{field_name}.{key}", f"{len(item)} characters; SageMaker allows at most {ENV_MAX_LEN}")
    return dict(value)


__all__ = ["Objective", "TuningConfig", "load_config", "parse_config", "entry_point_sha256"]
