"""The overall best trial across runs — the job of the recipe's Lambda step.

Ranks every completed trial of every given run, their warm-start parents' inherited ones
included, by :mod:`cvtune.ranking` (the rule the ledger, refinement and the report use). All runs
must optimize the same metric in the same direction.
"""

from __future__ import annotations

from typing import Any

from cvtune.errors import ConfigError, RunFailedError
from cvtune.ledger import RunLedger
from cvtune.ranking import ranked_candidates


def overall_best(ledgers: list[RunLedger]) -> dict[str, Any]:
    if not ledgers:
        raise ConfigError("runs", "no tuning runs given", "pass the summaries or ledger URIs of one or more runs")
    objective = ledgers[0].data["config"]["objective"]
    for ledger in ledgers[1:]:
        other = ledger.data["config"]["objective"]
        if (other["metric"], other["type"]) != (objective["metric"], objective["type"]):
            raise ConfigError(
                "runs",
                f"run {ledger.run_id} optimizes {other['type']} {other['metric']}, "
                f"run {ledgers[0].run_id} {objective['type']} {objective['metric']}",
                "compare runs with the same objective only",
            )
    maximize = objective["type"] == "Maximize"
    candidates = ranked_candidates(ledgers, maximize)
    if not candidates:
        raise RunFailedError(f"no completed trial in runs {[ledger.run_id for ledger in ledgers]}")
    top = candidates[0]
    ledger, run_id, uri, trial = top.ledger, top.run_id, top.ledger_uri, top.trial
    return {
        "hyperparameters": trial["hyperparameters"],
        "params": trial["params"],
        "mean": trial["mean"],
        "std": trial["std"],
        "fold_scores": trial["fold_scores"],
        "objective": dict(objective),
        "run_id": run_id,
        "trial": trial["number"],
        "ledger": uri,
        "entry_point": ledger.data["config"]["entry_point"],
        "metric_definitions": ledger.data["config"]["metric_definitions"],
        "environment": ledger.data["config"].get("environment") or {},
        "manifest_uri": ledger.data.get("manifest_uri"),
        "manifest_fingerprint": ledger.data.get("manifest_fingerprint"),
        "candidates": len(candidates),
    }


def ledger_uris(runs: Any) -> list[str]:
    """Ledger URIs from a mix of run summaries (dicts with ``ledger``), URIs and ``None`` (skipped branch)."""
    if runs is None:
        return []
    if isinstance(runs, (str, dict)):
        runs = [runs]
    out = []
    for i, run in enumerate(runs):
        if run is None:
            continue
        if isinstance(run, dict):
            if "ledger" not in run:
                raise ConfigError(f"runs[{i}]", "a run summary needs a 'ledger' key", "pass CVTuningOperator's output")
            out.append(run["ledger"])
        elif isinstance(run, str):
            out.append(run)
        else:
            raise ConfigError(f"runs[{i}]", f"expected a run summary or ledger URI, got {type(run).__name__}")
    return out
