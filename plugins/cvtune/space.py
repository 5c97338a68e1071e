"""The search space: SageMaker ``ParameterRanges`` in, Optuna distributions out.

Users paste the ``ParameterRanges`` block of an existing SageMaker tuning job::

    ContinuousParameterRanges: [{Name: eta, MinValue: "0.01", MaxValue: "0.3", ScalingType: Logarithmic}]
    IntegerParameterRanges:    [{Name: max_depth, MinValue: "2", MaxValue: "10"}]
    CategoricalParameterRanges: [{Name: booster, Values: [gbtree, dart]}]

Scaling follows SageMaker: ``Linear``, ``Logarithmic`` (needs min > 0), ``ReverseLogarithmic``
(continuous only, needs max < 1: dense near 1, e.g. momentum) and ``Auto``, which here means
Logarithmic when min > 0 and max/min ≥ 100, else Linear. One extension: a continuous range may
carry ``GridValues`` so the ``Grid`` strategy can enumerate it.

Optuna works in an *internal* representation: identical to the natural value except for
ReverseLogarithmic parameters, which are sampled as ``1 - x`` on a log scale.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cvtune.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

SCALINGS = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
RANGE_KINDS = ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges")
MAX_GRID_SIZE = 100_000


def _number(value: Any, where: str, integer: bool = False) -> float | int:
    if isinstance(value, bool):
        raise ConfigError(where, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(where, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(where, f"must be finite, got {value!r}")
    if integer:
        if number != int(number):
            raise ConfigError(where, f"integer ranges need integral bounds, got {value!r}", "use a whole number")
        return int(number)
    return number


def _effective_scaling(scaling: str, low: float, high: float) -> str:
    """``Auto`` resolved: Logarithmic when min > 0 and max/min >= 100, else Linear."""
    if scaling == "Auto":
        return "Logarithmic" if low > 0 and high / low >= 100 else "Linear"
    return scaling


@dataclass(frozen=True)
class ContinuousParameter:
    name: str
    min_value: float
    max_value: float
    scaling: str = "Auto"
    grid_values: tuple[float, ...] | None = None

    kind = "continuous"

    @property
    def effective_scaling(self) -> str:
        return _effective_scaling(self.scaling, self.min_value, self.max_value)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution

        scaling = self.effective_scaling
        if scaling == "ReverseLogarithmic":
            return FloatDistribution(1.0 - self.max_value, 1.0 - self.min_value, log=True)
        return FloatDistribution(self.min_value, self.max_value, log=scaling == "Logarithmic")

    def to_internal(self, value: Any) -> float:
        value = float(value)
        return 1.0 - value if self.effective_scaling == "ReverseLogarithmic" else value

    def from_internal(self, value: Any) -> float:
        value = float(value)
        if self.effective_scaling == "ReverseLogarithmic":
            value = 1.0 - value
        # float error in 1 - (1 - x) must not push a value outside the user's range
        return min(max(value, self.min_value), self.max_value)

    def contains(self, value: Any) -> bool:
        try:
            return self.min_value <= float(value) <= self.max_value
        except (TypeError, ValueError):
            return False

    def grid(self) -> list[float]:
        if self.grid_values is None:
            raise ConfigError(
                f"parameter_ranges.ContinuousParameterRanges[{self.name}]",
                "the Grid strategy cannot enumerate a continuous range",
                "add GridValues: [...] to the range, make it categorical, or use strategy Bayesian/Random",
            )
        return list(self.grid_values)

    def to_range(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Name": self.name,
            "MinValue": repr(self.min_value),
            "MaxValue": repr(self.max_value),
            "ScalingType": self.scaling,
        }
        if self.grid_values is not None:
            out["GridValues"] = list(self.grid_values)
        return out


@dataclass(frozen=True)
class IntegerParameter:
    name: str
    min_value: int
    max_value: int
    scaling: str = "Auto"

    kind = "integer"

    @property
    def effective_scaling(self) -> str:
        return _effective_scaling(self.scaling, self.min_value, self.max_value)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.min_value, self.max_value, log=self.effective_scaling == "Logarithmic")

    def to_internal(self, value: Any) -> int:
        return int(value)

    def from_internal(self, value: Any) -> int:
        return int(value)

    def contains(self, value: Any) -> bool:
        try:
            return float(value) == int(float(value)) and self.min_value <= int(float(value)) <= self.max_value
        except (TypeError, ValueError):
            return False

    def grid(self) -> list[int]:
        return list(range(self.min_value, self.max_value + 1))

    def to_range(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "MinValue": str(self.min_value),
            "MaxValue": str(self.max_value),
            "ScalingType": self.scaling,
        }


@dataclass(frozen=True)
class CategoricalParameter:
    name: str
    values: tuple[Any, ...]

    kind = "categorical"
    scaling = "Linear"

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.values)

    def to_internal(self, value: Any) -> Any:
        return value

    def from_internal(self, value: Any) -> Any:
        return value

    def contains(self, value: Any) -> bool:
        return value in self.values or str(value) in {str(v) for v in self.values}

    def grid(self) -> list[Any]:
        return list(self.values)

    def to_range(self) -> dict[str, Any]:
        return {"Name": self.name, "Values": [str(v) for v in self.values]}


Parameter = ContinuousParameter | IntegerParameter | CategoricalParameter


@dataclass(frozen=True)
class SearchSpace:
    """Tuned parameters plus the static hyperparameters every trial shares."""

    parameters: tuple[Parameter, ...]
    static: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def __getitem__(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @classmethod
    def from_parameter_ranges(
        cls, ranges: dict[str, Any], static: dict[str, Any] | None = None, field: str = "parameter_ranges"
    ) -> SearchSpace:
        """Build and validate a space from SageMaker's ``ParameterRanges`` shape."""
        static = dict(static or {})
        if not isinstance(ranges, dict):
            raise ConfigError(field, f"expected a mapping with {', '.join(RANGE_KINDS)}, got {type(ranges).__name__}")
        unknown = set(ranges) - set(RANGE_KINDS)
        if unknown:
            raise ConfigError(
                f"{field}.{sorted(unknown)[0]}",
                "unknown range type",
                f"use one of {', '.join(RANGE_KINDS)}",
            )
        params: list[Parameter] = []
        seen: set[str] = set()
        for kind in RANGE_KINDS:
            entries = ranges.get(kind) or []
            if not isinstance(entries, list):
                raise ConfigError(f"{field}.{kind}", "expected a list of ranges")
            for i, entry in enumerate(entries):
                where = f"{field}.{kind}[{i}]"
                if not isinstance(entry, dict) or not isinstance(entry.get("Name"), str) or not entry["Name"]:
                    raise ConfigError(f"{where}.Name", "every range needs a Name", "add Name: <hyperparameter>")
                name = entry["Name"]
                where = f"{field}.{kind}[{name}]"
                if name in seen:
                    raise ConfigError(where, f"{name!r} has more than one range", "keep one range per hyperparameter")
                if name in static:
                    raise ConfigError(
                        where,
                        f"{name!r} is both static and tuned",
                        f"remove it from static_hyperparameters or from {kind}",
                    )
                seen.add(name)
                params.append(_parse_range(kind, entry, where))
        if not params:
            raise ConfigError(field, "no parameter ranges given", "add at least one range to tune")
        return cls(tuple(params), static)

    def to_parameter_ranges(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in RANGE_KINDS}
        kinds = {"continuous": RANGE_KINDS[0], "integer": RANGE_KINDS[1], "categorical": RANGE_KINDS[2]}
        for p in self.parameters:
            out[kinds[p.kind]].append(p.to_range())
        return {k: v for k, v in out.items() if v}

    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: p.distribution() for p in self.parameters}

    def to_internal(self, params: dict[str, Any]) -> dict[str, Any]:
        return {p.name: p.to_internal(params[p.name]) for p in self.parameters if p.name in params}

    def from_internal(self, params: dict[str, Any]) -> dict[str, Any]:
        return {p.name: p.from_internal(params[p.name]) for p in self.parameters if p.name in params}

    def contains(self, params: dict[str, Any]) -> bool:
        return all(p.name in params and p.contains(params[p.name]) for p in self.parameters)

    def hyperparameters(self, params: dict[str, Any]) -> dict[str, Any]:
        """The full hyperparameter set of a trial: static values, then the tuned ones."""
        return {**self.static, **params}

    def grid(self, seed: int = 0) -> list[dict[str, Any]]:
        """Every grid point, in a seeded random order (a partial grid is then an unbiased sample)."""
        axes = [p.grid() for p in self.parameters]
        size = math.prod(len(a) for a in axes)
        if size > MAX_GRID_SIZE:
            raise ConfigError(
                "parameter_ranges",
                f"the grid has {size} points (more than {MAX_GRID_SIZE})",
                "narrow the integer ranges or use strategy Bayesian/Random",
            )
        points = [dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes)]
        random.Random(seed).shuffle(points)
        return points


def _parse_range(kind: str, entry: dict[str, Any], where: str) -> Parameter:
    name = entry["Name"]
    if kind == "CategoricalParameterRanges":
        allowed = {"Name", "Values"}
        _no_unknown(entry, allowed, where)
        values = entry.get("Values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.Values", "categorical values must be a non-empty list", "list the choices")
        if len({str(v) for v in values}) != len(values):
            raise ConfigError(f"{where}.Values", f"values must be unique, got {values!r}", "remove the duplicates")
        return CategoricalParameter(name, tuple(values))

    integer = kind == "IntegerParameterRanges"
    allowed = {"Name", "MinValue", "MaxValue", "ScalingType"} | (set() if integer else {"GridValues"})
    _no_unknown(entry, allowed, where)
    for key in ("MinValue", "MaxValue"):
        if key not in entry:
            raise ConfigError(f"{where}.{key}", "is required")
    low = _number(entry["MinValue"], f"{where}.MinValue", integer)
    high = _number(entry["MaxValue"], f"{where}.MaxValue", integer)
    if not low < high:
        raise ConfigError(f"{where}", f"MinValue ({low}) must be less than MaxValue ({high})", "swap or widen the bounds")
    scaling = entry.get("ScalingType", "Auto")
    if scaling not in SCALINGS:
        raise ConfigError(f"{where}.ScalingType", f"unknown scaling {scaling!r}", f"use one of {', '.join(SCALINGS)}")
    if scaling == "Logarithmic" and low <= 0:
        raise ConfigError(f"{where}.MinValue", f"Logarithmic scaling needs MinValue > 0, got {low}", "raise MinValue or use Linear")
    if scaling == "ReverseLogarithmic":
        if integer:
            raise ConfigError(f"{where}.ScalingType", "ReverseLogarithmic applies to continuous ranges only", "use Linear or Logarithmic")
        if high >= 1 or low < 0:
            raise ConfigError(
                f"{where}.MaxValue",
                f"ReverseLogarithmic scaling needs 0 <= MinValue and MaxValue < 1, got [{low}, {high}]",
                "use Linear, or keep the range inside [0, 1)",
            )
    if integer:
        return IntegerParameter(name, int(low), int(high), scaling)
    grid = entry.get("GridValues")
    if grid is not None:
        if not isinstance(grid, list) or not grid:
            raise ConfigError(f"{where}.GridValues", "must be a non-empty list of numbers")
        grid_values = tuple(_number(v, f"{where}.GridValues", False) for v in grid)
        outside = [v for v in grid_values if not low <= v <= high]
        if outside:
            raise ConfigError(f"{where}.GridValues", f"{outside} lie outside [{low}, {high}]")
        if len(set(grid_values)) != len(grid_values):
            raise ConfigError(f"{where}.GridValues", "values must be unique")
        return ContinuousParameter(name, float(low), float(high), scaling, grid_values)
    return ContinuousParameter(name, float(low), float(high), scaling)


def _no_unknown(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}", "unknown key", f"allowed keys: {', '.join(sorted(allowed))}")
