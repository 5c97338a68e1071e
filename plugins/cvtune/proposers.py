"""Where trial candidates come from: Optuna samplers, a shuffled grid, or a fixed list.

A proposer is the ask/tell half of the tuner. The scheduling half (fold fan-out, capacity,
the ledger) lives in :mod:`cvtune.tuner` and never looks inside a proposer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from cvtune.space import SearchSpace
from cvtune.states import TrialState


@dataclass
class Proposal:
    params: dict[str, Any]
    handle: Any = None  # the proposer's own token (an Optuna trial), never persisted
    source: str | None = None


class Proposer(Protocol):
    def ask(self) -> Proposal | None:
        """The next candidate, or ``None`` when the proposer has nothing more to offer."""

    def tell(
        self, proposal_or_params: Proposal | dict[str, Any], value: float | None, state: str,
        intermediate: list[float] | None = None,
    ) -> None:
        """Report a finished trial: ``state`` is a ledger trial state, ``value`` its mean score,
        ``intermediate`` its running mean after 1, 2, … folds."""


def _optuna_state(state: str):
    from optuna.trial import TrialState as OptunaState

    states: dict[str, OptunaState] = {TrialState.COMPLETED: OptunaState.COMPLETE, TrialState.PRUNED: OptunaState.PRUNED}
    return states.get(state, OptunaState.FAIL)


class OptunaProposer:
    """Bayesian (TPE) or Random search over a :class:`SearchSpace`, via Optuna's ask/tell API."""

    def __init__(self, space: SearchSpace, strategy: str, direction: str, seed: int, parallel: int = 1) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler: optuna.samplers.BaseSampler
        if strategy == "Random":
            sampler = optuna.samplers.RandomSampler(seed=seed)
        else:
            # multivariate TPE models interactions (eta x num_round); the constant liar keeps
            # M parallel candidates from piling onto the same point.
            sampler = optuna.samplers.TPESampler(
                seed=seed, multivariate=True, constant_liar=parallel > 1, n_startup_trials=10
            )
        self.space = space
        self.distributions = space.distributions()
        self.study = optuna.create_study(direction=direction, sampler=sampler)  # type: ignore[arg-type]

    def ask(self) -> Proposal:
        trial = self.study.ask(fixed_distributions=self.distributions)
        return Proposal(self.space.from_internal(trial.params), handle=trial)

    def tell(
        self, proposal_or_params: Proposal | dict[str, Any], value: float | None, state: str,
        intermediate: list[float] | None = None,
    ) -> None:
        import optuna

        ostate = _optuna_state(state)
        if isinstance(proposal_or_params, Proposal) and proposal_or_params.handle is not None:
            trial = proposal_or_params.handle
            if ostate == optuna.trial.TrialState.PRUNED:
                # TPE ranks pruned trials by how far they got and their last running mean
                for step, running in enumerate(intermediate or [], start=1):
                    trial.report(running, step)
            self.study.tell(trial, value if ostate == optuna.trial.TrialState.COMPLETE else None, ostate)
            return
        params = proposal_or_params.params if isinstance(proposal_or_params, Proposal) else proposal_or_params
        self.observe(params, value, state, intermediate)

    def observe(
        self, params: dict[str, Any], value: float | None, state: str, intermediate: list[float] | None = None
    ) -> None:
        """Add a trial evaluated elsewhere (a resumed run, a warm-start parent) as history."""
        import optuna

        if state == TrialState.RUNNING:
            return  # told when it ends
        if not self.space.contains(params):
            logging.getLogger(__name__).debug("not telling the sampler about %s: outside the space", params)
            return
        ostate = _optuna_state(state)
        self.study.add_trial(
            optuna.trial.create_trial(
                params=self.space.to_internal(params),
                distributions=self.distributions,
                value=value if ostate == optuna.trial.TrialState.COMPLETE else None,
                state=ostate,
                intermediate_values=dict(enumerate(intermediate or [], start=1)),
            )
        )


class GridProposer:
    """Every grid point once, in a seeded order; points already tried (on resume) are skipped."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.points = space.grid(seed)
        self.seen: set[str] = set()

    @staticmethod
    def _key(params: dict[str, Any]) -> str:
        return repr(sorted((k, str(v)) for k, v in params.items()))

    def ask(self) -> Proposal | None:
        for point in self.points:
            key = self._key(point)
            if key not in self.seen:
                self.seen.add(key)
                return Proposal(dict(point))
        return None

    def tell(self, proposal_or_params: Any, value: Any, state: str, intermediate: Any = None) -> None:
        return None

    def observe(self, params: dict[str, Any], value: Any, state: str, intermediate: Any = None) -> None:
        self.seen.add(self._key(params))


class FixedProposer:
    """A given list of candidates, in order (``cvtune cv``, re-evaluating parents' best)."""

    def __init__(self, candidates: list[dict[str, Any]], source: str | None = None) -> None:
        self.candidates = list(candidates)
        self.source = source
        self.next = 0

    def ask(self) -> Proposal | None:
        if self.next >= len(self.candidates):
            return None
        self.next += 1
        return Proposal(dict(self.candidates[self.next - 1]), source=self.source)

    def tell(self, proposal_or_params: Any, value: Any, state: str, intermediate: Any = None) -> None:
        return None

    def observe(self, params: dict[str, Any], value: Any, state: str, intermediate: Any = None) -> None:
        self.next += 1


def make_proposer(space: SearchSpace, strategy: str, direction: str, seed: int, parallel: int = 1):
    if strategy == "Grid":
        return GridProposer(space, seed)
    return OptunaProposer(space, strategy, direction, seed, parallel)
