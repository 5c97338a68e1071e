"""Config blocks switched by a rule: ``{rule: <name>, <setting>: ...}`` or just the rule's name.

``early_stopping`` (:mod:`cvtune.stopping`) and ``convergence`` (:mod:`cvtune.completion`) are read
the same way; reading them here keeps their errors alike (each names the dotted field and the fix).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from cvtune.errors import ConfigError


def rule_block(data: Any, field: str, *, rules: Sequence[str], default_rule: str, settings: Iterable[str],
               example: str) -> tuple[dict[str, Any], str]:
    """``data`` as a mapping (a string is the rule's name) and its rule, lower-cased.

    Keys other than ``rule`` and ``settings``, and rules not in ``rules``, are errors.
    """
    if isinstance(data, str):
        data = {"rule": data}
    if not isinstance(data, dict):
        raise ConfigError(field, f"expected a rule name or a mapping, got {data!r}", f"e.g. {example}")
    allowed = {"rule", *settings}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", "unknown setting", f"known: {', '.join(sorted(allowed))}")
    rule = str(data.get("rule", default_rule)).lower()
    if rule not in rules:
        raise ConfigError(f"{field}.rule", f"unknown rule {data.get('rule')!r}", f"use one of {', '.join(rules)}")
    return data, rule


def integer_setting(data: dict[str, Any], field: str, key: str, default: int, minimum: int) -> int:
    """``data[key]`` (``default`` when absent): an integer of at least ``minimum`` (a bool is not one)."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field}.{key}", f"must be an integer >= {minimum}, got {value!r}")
    return value


def number_setting(data: dict[str, Any], field: str, key: str, default: float, minimum: float) -> float:
    """``data[key]`` (``default`` when absent): a finite number of at least ``minimum``."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum or not math.isfinite(value):
        raise ConfigError(f"{field}.{key}", f"must be a number >= {minimum}, got {value!r}")
    return float(value)
