"""Which trial is best: the one ranking behind the ledger's best trial, best-params, refinement,
the report and warm start's TRANSFER_LEARNING picks.

The rule, in order:

1. only a ``Completed`` trial with a finite mean ranks;
2. the better mean first (higher for ``Maximize``, lower for ``Minimize``);
3. on equal means, the lower fold std (the steadier trial; a missing one ranks after any std);
4. then more folds scored (runs split differently can be ranked together);
5. then the earlier candidate. Candidates come in a fixed order — the runs in the order given,
   within a run its warm-start parents' inherited trials (they ran first) before its own, each
   by trial number — and the sort is stable, so a full tie keeps that order.

Every consumer ranks through :func:`ranked` (or :func:`best`), so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cvtune.states import TrialState

if TYPE_CHECKING:
    from cvtune.ledger import RunLedger

T = TypeVar("T")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rankable(trial: dict[str, Any]) -> bool:
    """Whether ``trial`` takes part in the ranking: completed, with a finite mean."""
    return trial.get("state") == TrialState.COMPLETED and _finite(trial.get("mean"))


def rank_key(trial: dict[str, Any], maximize: bool) -> tuple[float, float, int]:
    """Sort key of a rankable trial (smaller is better): rules 2–4 of the module docstring."""
    mean = float(trial["mean"])
    std = trial.get("std")
    folds = sum(1 for s in trial.get("fold_scores") or () if s is not None)
    return (-mean if maximize else mean, float(std) if std is not None and _finite(std) else math.inf, -folds)


def _itself(item: Any) -> Any:
    return item


def ranked(items: Iterable[T], maximize: bool, trial: Callable[[T], dict[str, Any]] | None = None) -> list[T]:
    """The rankable ones of ``items``, best first; ``trial`` gets an item's trial (default: the
    item is the trial). ``items`` must come in candidate order (rule 5)."""
    get: Callable[[Any], dict[str, Any]] = trial if trial is not None else _itself
    return sorted((item for item in items if rankable(get(item))), key=lambda item: rank_key(get(item), maximize))


def best(items: Iterable[T], maximize: bool, trial: Callable[[T], dict[str, Any]] | None = None) -> T | None:
    """The first of :func:`ranked`, or ``None`` when nothing ranks."""
    top = ranked(items, maximize, trial)
    return top[0] if top else None


@dataclass(frozen=True)
class Candidate:
    """A trial as ranked across runs: which run it was found in and which run it belongs to."""

    trial: dict[str, Any]
    ledger: RunLedger  # the run it was found in (an inherited trial's child run)
    run_id: str  # the run it belongs to (a warm-start parent's for an inherited trial)
    ledger_uri: str
    inherited: bool


def candidates(ledgers: list[RunLedger], *, inherited: bool = True) -> list[Candidate]:
    """Every trial of ``ledgers`` in candidate order (rule 5); a trial seen twice (a parent given
    next to its child) counts once. ``inherited=False``: each run's own trials only."""
    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()
    for ledger in ledgers:
        pool = [
            Candidate(t, ledger, t.get("run_id", ledger.run_id), t.get("ledger", ledger.uri), True)
            for t in (ledger.inherited_trials() if inherited else ())
        ]
        pool += [Candidate(t, ledger, ledger.run_id, ledger.uri, False) for t in ledger.trials]
        for c in pool:
            key = (c.run_id, c.trial["number"])
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def ranked_candidates(ledgers: list[RunLedger], maximize: bool, *, inherited: bool = True) -> list[Candidate]:
    """The rankable trials of ``ledgers``, best first."""
    return ranked(candidates(ledgers, inherited=inherited), maximize, lambda c: c.trial)
