"""The overall best trial across runs — the job of the recipe's Lambda step.

Ranks every completed trial of every given run by mean objective, then lower std, then earlier
(run order, trial number). All runs must optimize the same metric in the same direction.
"""

from __future__ import annotations

from typing import Any

from cvtune.errors import ConfigError, RunFailedError
from cvtune.ledger import RunLedger, rank_key


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
    candidates, seen = [], set()
    for i, ledger in enumerate(ledgers):
        # a warm-started run's inherited trials are its parents' (same folds): rank them too
        pool = [(t.get("run_id", ledger.run_id), t.get("ledger", ledger.uri), t) for t in ledger.inherited_trials()]
        pool += [(ledger.run_id, ledger.uri, t) for t in ledger.completed_trials()]
        for run_id, uri, t in pool:
            if (run_id, t["number"]) not in seen:
                seen.add((run_id, t["number"]))
                candidates.append((rank_key(t, maximize)[:2] + (i, t["number"]), ledger, run_id, uri, t))
    if not candidates:
        raise RunFailedError(f"no completed trial in runs {[ledger.run_id for ledger in ledgers]}")
    _, ledger, run_id, uri, trial = min(candidates, key=lambda c: c[0])
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
