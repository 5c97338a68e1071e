"""Warm start: seed a tuning run from earlier runs, without SageMaker's limits.

Two types, as SageMaker names them:

``IDENTICAL_DATA_AND_ALGORITHM``
    Same fold manifest (fingerprint) and same training script. The parents' finished trials
    are observations for the sampler — never re-run — ranges may be narrowed, and the run's
    best is taken over the parents' trials and its own (scores are comparable: same folds).
``TRANSFER_LEARNING``
    Data or script changed. The parents' best configurations are evaluated first on the new
    data, and the parents' history informs the sampler; the best comes from this run only.

Any number of parents (SageMaker: 5); ``transitive=True`` follows parents' own parents
(SageMaker: never). Parents must have finished, optimize the same metric, and use the same
hyperparameter names and types — a parameter may move between static and tuned.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from cvtune.config import TuningConfig, entry_point_sha256
from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger, running_means
from cvtune.proposers import Proposal
from cvtune.ranking import ranked
from cvtune.space import CategoricalParameter, ContinuousParameter, IntegerParameter, SearchSpace
from cvtune.states import RunStatus, TrialState
from cvtune.store import ArtifactStore, default_store

log = logging.getLogger("cvtune.warmstart")

IDENTICAL = "IDENTICAL_DATA_AND_ALGORITHM"
TRANSFER = "TRANSFER_LEARNING"
TYPES = (IDENTICAL, TRANSFER)


@dataclass
class WarmStart:
    type: str
    parents: list[RunLedger]
    top_per_parent: int = 1  # TRANSFER_LEARNING: best configurations of each parent to re-evaluate
    uris: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "parents": [p.uri for p in self.parents], "requested": self.uris}


def load_parents(
    uris: list[str], transitive: bool = False, field_name: str = "parents", store: ArtifactStore | None = None
) -> list[RunLedger]:
    """Load parent ledgers (and, with ``transitive``, their parents), each once, in order."""
    store = store or default_store()
    if isinstance(uris, str):
        uris = [uris]
    out: list[RunLedger] = []
    seen: set[str] = set()
    queue = [(f"{field_name}[{i}]", uri) for i, uri in enumerate(uris)]
    while queue:
        where, uri = queue.pop(0)
        if uri in seen:
            continue
        seen.add(uri)
        if not isinstance(uri, str) or not uri or not store.exists(uri):
            raise ConfigError(where, f"no run ledger at {uri!r}", "pass the ledger URI of a finished tuning run")
        ledger = RunLedger.load(uri, store)
        if ledger.status != RunStatus.COMPLETED:
            raise ConfigError(
                where,
                f"run {ledger.run_id} is {ledger.status}, not finished",
                "warm-start only from completed runs (wait for it, or resume it first)",
            )
        out.append(ledger)
        if transitive:
            grand = (ledger.data.get("warm_start") or {}).get("parents") or []
            queue.extend((f"{where}.parents[{j}]", g) for j, g in enumerate(grand))
    return out


def _kinds(config: dict[str, Any]) -> dict[str, str]:
    """name → kind (continuous / integer / categorical / static) of a ledger's config."""
    kinds = {name: "static" for name in config.get("static_hyperparameters", {})}
    for key, kind in (
        ("ContinuousParameterRanges", "continuous"),
        ("IntegerParameterRanges", "integer"),
        ("CategoricalParameterRanges", "categorical"),
    ):
        for entry in config.get("parameter_ranges", {}).get(key, []):
            kinds[entry["Name"]] = kind
    return kinds


def validate(config: TuningConfig, manifest: dict[str, Any], warm: WarmStart, code_sha256: str | None = None) -> None:
    """SageMaker's warm-start rules, with errors naming the parent and the fix.

    ``code_sha256``: this run's code fingerprint (:func:`cvtune.sourcedir.code_sha256`, the entry
    point's whole folder). IDENTICAL_DATA_AND_ALGORITHM is SageMaker's "The new hyperparameter
    tuning job uses the same input data and training image as the parent tuning jobs"
    (HyperParameterTuningJobWarmStartConfig, WarmStartType): cvtune's image is the code it ships,
    so a changed helper module next to the entry point is a different algorithm, not only a
    changed entry point.
    """
    if warm.type not in TYPES:
        raise ConfigError("warm_start_type", f"unknown type {warm.type!r}", f"use {' or '.join(TYPES)}")
    if not warm.parents:
        raise ConfigError("parents", "no parent runs given", "pass at least one parent ledger")
    child = _kinds(config.to_dict())
    for i, parent in enumerate(warm.parents):
        where = f"parents[{i}] (run {parent.run_id})"
        pobj = parent.data["config"]["objective"]
        if (pobj["metric"], pobj["type"]) != (config.objective.metric, config.objective.type):
            raise ConfigError(
                where,
                f"optimizes {pobj['type']} {pobj['metric']}, this run {config.objective.type} {config.objective.metric}",
                "warm-start only from runs with the same objective",
            )
        theirs = _kinds(parent.data["config"])
        if set(theirs) != set(child):
            missing, extra = sorted(set(child) - set(theirs)), sorted(set(theirs) - set(child))
            raise ConfigError(
                where,
                f"hyperparameter names differ (only here: {missing}, only in the parent: {extra})",
                "use the same hyperparameters (static or tuned) as the parent",
            )
        for name, kind in child.items():
            other = theirs[name]
            if "static" not in (kind, other) and kind != other:
                raise ConfigError(
                    where, f"hyperparameter {name!r} is {other} in the parent but {kind} here", "keep its type"
                )
        if warm.type == IDENTICAL:
            if parent.data.get("manifest_fingerprint") != manifest.get("fingerprint"):
                raise ConfigError(
                    where,
                    "IDENTICAL_DATA_AND_ALGORITHM needs the same fold manifest, but the data fingerprint differs",
                    "use TRANSFER_LEARNING for new data",
                )
            their_code = parent.data.get("code_sha256")
            if code_sha256 and their_code and their_code != code_sha256:
                raise ConfigError(
                    where,
                    "IDENTICAL_DATA_AND_ALGORITHM needs the same training code, but a file in the entry point's "
                    "folder changed since the parent ran",
                    "use TRANSFER_LEARNING after changing the code",
                )
            if parent.data.get("entry_point_sha256") not in (None, entry_point_sha256(config.entry_point)):
                raise ConfigError(
                    where,
                    "IDENTICAL_DATA_AND_ALGORITHM needs the same training script, but it changed",
                    "use TRANSFER_LEARNING after changing the script",
                )


def _params_for(space: SearchSpace, hyperparameters: dict[str, Any]) -> dict[str, Any] | None:
    """A parent's trial as values of this run's tuned parameters (None if one is missing)."""
    out = {}
    for p in space.parameters:
        if p.name not in hyperparameters:
            return None
        value = hyperparameters[p.name]
        if isinstance(p, IntegerParameter):
            value = int(float(value))
        elif isinstance(p, ContinuousParameter):
            value = float(value)
        out[p.name] = value
    return out


def history(warm: WarmStart, space: SearchSpace) -> list[tuple[dict[str, Any], float | None, str, list[float]]]:
    """The parents' finished trials as sampler observations ``(params, value, state, running means)``."""
    out = []
    for parent in warm.parents:
        for trial in parent.trials:
            if trial["state"] not in (TrialState.COMPLETED, TrialState.PRUNED):
                continue
            params = _params_for(space, trial["hyperparameters"])
            if params is not None:
                out.append((params, trial["mean"], trial["state"], running_means(trial["fold_scores"])))
    return out


def inherited_trials(warm: WarmStart) -> list[dict[str, Any]]:
    """IDENTICAL_DATA_AND_ALGORITHM: the parents' completed trials, to rank with this run's own."""
    if warm.type != IDENTICAL:
        return []
    return [
        {
            "run_id": parent.run_id,
            "ledger": parent.uri,
            "number": t["number"],
            "params": t["params"],
            "hyperparameters": t["hyperparameters"],
            "mean": t["mean"],
            "std": t["std"],
            "fold_scores": t["fold_scores"],
            "state": TrialState.COMPLETED,
        }
        for parent in warm.parents
        for t in parent.completed_trials()
    ]


def first_candidates(warm: WarmStart, space: SearchSpace) -> list[Proposal]:
    """TRANSFER_LEARNING: each parent's best configuration(s), to evaluate first on the new data."""
    if warm.type != TRANSFER:
        return []
    out, seen = [], set()
    for parent in warm.parents:
        for t in ranked(parent.trials, parent.maximize)[: warm.top_per_parent]:
            params = _params_for(space, t["hyperparameters"])
            key = repr(sorted(params.items())) if params else None
            if params is None or key in seen:
                continue
            seen.add(key)
            out.append(Proposal(params, source=f"parent:{parent.run_id}#{t['number']}"))
    return out


class WarmStartProposer:
    """Serves the parents' best configurations first, then asks the inner proposer, skipping the
    exact candidates a parent already evaluated (``tried``): a child must not re-run its parents'
    trials, which a sampler seeded like the parent would otherwise replay."""

    MAX_SKIPS = 50  # a tiny space may hold nothing new: then a repeat is better than no trial

    def __init__(self, inner: Any, first: list[Proposal], tried: list[dict[str, Any]] | None = None) -> None:
        self.inner = inner
        self.first = list(first)
        self.tried = {_key(params) for params in tried or []}
        self.skipped = 0

    def ask(self) -> Proposal | None:
        if self.first:
            return self.first.pop(0)
        for _ in range(self.MAX_SKIPS):
            proposal = self.inner.ask()
            if proposal is None or _key(proposal.params) not in self.tried:
                return proposal
            self.skipped += 1
            # told as failed: the sampler moves on without counting the repeat as a new result
            self.inner.tell(proposal, None, TrialState.FAILED)
        return self.inner.ask()

    def tell(self, proposal: Any, value: Any, state: str, intermediate: Any = None) -> None:
        self.inner.tell(proposal, value, state, intermediate)

    def observe(self, params: dict[str, Any], value: Any, state: str, intermediate: Any = None) -> None:
        key = _key(params)
        self.first = [p for p in self.first if _key(p.params) != key]  # already asked
        self.inner.observe(params, value, state, intermediate)

    @property
    def study(self):
        return getattr(self.inner, "study", None)


def _key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def sampler_seed(seed: int, warm: WarmStart) -> int:
    """The child's sampler seed: moved on past the parents' trials, so a child seeded like its
    parent does not replay the parent's random draws (its first trials were exact copies)."""
    import hashlib

    parents = ",".join(f"{p.run_id}:{len(p.trials)}" for p in warm.parents)
    digest = hashlib.sha256(f"{seed}|{parents}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 2**31


def narrow_ranges(space: SearchSpace, best: dict[str, Any], factor: float = 0.5) -> dict[str, Any]:
    """New ``ParameterRanges`` around ``best``: ``factor`` × the original width, measured in each
    parameter's own scale (log for Logarithmic, log of 1-x for ReverseLogarithmic), centred on the
    best value and clipped to the original range. Categorical ranges are kept whole.
    """
    if not 0 < factor <= 1:
        raise ConfigError("factor", f"must be in (0, 1], got {factor}")
    ranges: list[Any] = []
    for p in space.parameters:
        if isinstance(p, CategoricalParameter) or p.name not in best:
            ranges.append(p)
            continue
        scaling = p.effective_scaling
        fwd, inv = _scale(scaling)
        lo, hi, center = fwd(p.min_value), fwd(p.max_value), fwd(float(best[p.name]))
        if lo > hi:  # reverse-log maps the range backwards
            lo, hi = hi, lo
        half = (hi - lo) * factor / 2
        a, b = center - half, center + half
        # past an end: slide the window inward, keeping its width (decided by which end is
        # crossed, never by comparing recomputed widths, which float rounding makes unequal)
        if a < lo:
            a, b = lo, min(hi, lo + 2 * half)
        elif b > hi:
            a, b = max(lo, hi - 2 * half), hi
        new_lo, new_hi = sorted((inv(a), inv(b)))
        # the scale's round trip (exp(log x)) may land a hair inside the best: it stays in range
        value = float(best[p.name])
        new_lo, new_hi = max(min(new_lo, value), p.min_value), min(max(new_hi, value), p.max_value)
        if isinstance(p, IntegerParameter):
            lo_i, hi_i = math.floor(new_lo), math.ceil(new_hi)
            if lo_i == hi_i:  # a range needs two values
                hi_i, lo_i = (hi_i + 1, lo_i) if hi_i < p.max_value else (hi_i, lo_i - 1)
            ranges.append(IntegerParameter(p.name, lo_i, hi_i, p.scaling))
        else:
            ranges.append(ContinuousParameter(p.name, new_lo, new_hi, p.scaling))
    return SearchSpace(tuple(ranges), space.static).to_parameter_ranges()


def _scale(scaling: str):
    if scaling == "Logarithmic":
        return math.log, math.exp
    if scaling == "ReverseLogarithmic":
        return (lambda x: math.log(1 - x)), (lambda y: 1 - math.exp(y))
    return (lambda x: x), (lambda y: y)
