"""SageMaker-style metric definitions: ``{"Name": ..., "Regex": ...}`` matched against a job log.

As on SageMaker, the first capture group of the regex is the value, and the last match in the log
wins (``FinalMetricDataList`` holds the final value of each metric).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cvtune.errors import ConfigError


def validate_metric_definitions(definitions: Iterable[dict], field: str = "metric_definitions") -> list[dict]:
    out = []
    names = set()
    for i, d in enumerate(definitions):
        where = f"{field}[{i}]"
        if not isinstance(d, dict) or set(d) - {"Name", "Regex"} or not {"Name", "Regex"} <= set(d):
            raise ConfigError(where, f"expected {{Name, Regex}}, got {d!r}", 'write e.g. {"Name": "validation:auc", "Regex": "validation:auc=([0-9.eE+-]+);"}')
        name, regex = d["Name"], d["Regex"]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.Name", "must be a non-empty string")
        if name in names:
            raise ConfigError(f"{where}.Name", f"metric {name!r} is defined twice", "keep one definition per name")
        try:
            compiled = re.compile(regex)
        except (re.error, TypeError) as exc:
            raise ConfigError(f"{where}.Regex", f"invalid regular expression {regex!r}: {exc}") from None
        if compiled.groups < 1:
            raise ConfigError(f"{where}.Regex", f"{regex!r} has no capture group", "wrap the number in ( ), e.g. auc=([0-9.]+)")
        names.add(name)
        out.append({"Name": name, "Regex": regex})
    return out


def extract_metrics(log: str, definitions: Iterable[dict]) -> dict[str, float]:
    """Final value of each defined metric found in ``log`` (last match wins; non-numbers skipped).

    ``nan`` and ``inf`` are kept: a script that prints them reported a value, and the tuner
    says so instead of calling the metric missing."""
    found: dict[str, float] = {}
    for d in definitions:
        pattern = re.compile(d["Regex"])
        for match in pattern.finditer(log):
            try:
                value = float(match.group(1))
            except (TypeError, ValueError):
                continue
            found[d["Name"]] = value
    return found


def default_metric_definitions(names: Iterable[str]) -> list[dict]:
    """Definitions matching the generic training script's ``name=value;`` lines."""
    return [{"Name": n, "Regex": re.escape(n) + r"=([-+0-9.eEinfa]+);"} for n in names]
