"""The model registry's rules, whichever platform keeps the versions: approval statuses, group
names and the approval gate. The registries themselves: :class:`cvtune.local.registry.LocalModelRegistry`
(files on the artifact store) and :class:`cvtune.sagemaker.registry.SageMakerModelRegistry` (model
package groups); a platform's ``registry()`` gives the one of its connection.

Every registry has ``versions(group)``, ``approved(group)``, ``register(group, ...)`` and
``set_status(group, version, status)``; a version is a dict with ``version``, ``model_uri``,
``hyperparameters``, ``cv_metrics``, ``holdout_metrics``, ``data_fingerprint``, ``approval_status``
(``PendingManualApproval`` | ``Approved`` | ``Rejected``), ``approval_reason`` and ``metadata``.

The approval gate is champion/challenger (:func:`decide_approval`): a new version is approved
automatically only when its holdout metric reaches the threshold *and* beats the currently
approved version's by at least ``margin`` (in the metric's direction; margin 0 means "not
worse": a tie is approved); otherwise it waits for a person as ``PendingManualApproval``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from cvtune.errors import ConfigError

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
STATUSES = (PENDING, APPROVED, REJECTED)
GROUP_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def check_group(group: str) -> None:
    """A model package group name as SageMaker spells them (the local registry keeps the same rule)."""
    if not GROUP_RE.match(group or ""):
        raise ConfigError("model_package_group", f"{group!r} is not a valid group name", "use letters, digits and hyphens (max 63)")


def check_status(status: str) -> None:
    """One of :data:`STATUSES`."""
    if status not in STATUSES:
        raise ConfigError("approval_status", f"unknown status {status!r}", f"use one of {', '.join(STATUSES)}")


def decide_approval(
    metric_name: str,
    value: float | None,
    threshold: float | None,
    champion: dict[str, Any] | None,
    maximize: bool = True,
    margin: float = 0.0,
) -> tuple[str, str]:
    """The gate: ``(status, reason)`` for a challenger with holdout ``value``.

    ``threshold`` is read in the metric's direction: at least it when maximizing, at most it when
    minimizing. Against a champion the challenger must be better by ``margin`` or more
    (``value >= champion + margin`` when maximizing, ``value <= champion - margin`` when
    minimizing); ``margin=0`` approves a challenger that is merely not worse.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError("champion_margin", f"must be a finite number >= 0, got {margin}", "use 0 for 'not worse'")
    if value is None:
        return PENDING, f"no holdout {metric_name} to judge by; a person must approve"
    if not math.isfinite(value):
        return PENDING, f"holdout {metric_name} is {value}; a person must approve"
    sense = "at least" if maximize else "at most"
    if threshold is not None and (value < threshold if maximize else value > threshold):
        return PENDING, f"holdout {metric_name} {value:.6g} misses the threshold ({sense} {threshold:.6g})"
    meets = f"meets the threshold ({sense} {threshold:.6g})" if threshold is not None else "has no threshold"
    if champion is not None:
        best = (champion.get("holdout_metrics") or {}).get(metric_name)
        if best is not None:
            needed = best + margin if maximize else best - margin
            beats = value >= needed if maximize else value <= needed
            versus = f"approved version {champion['version']} ({best:.6g})"
            if not beats:
                problem = f"does not beat {versus} by the margin {margin:g}" if margin else f"is worse than {versus}"
                return PENDING, (
                    f"holdout {metric_name} {value:.6g} {problem}; needs {'>=' if maximize else '<='} {needed:.6g}"
                )
            wins = f"beats {versus} by at least {margin:g}" if margin else f"is not worse than {versus}"
            return APPROVED, f"holdout {metric_name} {value:.6g} {meets} and {wins}"
        return APPROVED, (
            f"holdout {metric_name} {value:.6g} {meets}; approved version {champion['version']} has no "
            f"holdout {metric_name} to compare with"
        )
    return APPROVED, f"holdout {metric_name} {value:.6g} {meets} and there is no champion"
