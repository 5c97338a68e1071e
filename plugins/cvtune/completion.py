"""Run-level completion criteria: when a tuning run has found what it will find, stop asking trials.

Three criteria, each off unless set, checked whenever a trial ends (the first one met wins):

``target_value``
    Stop once the best mean CV score reaches the value (at least it when maximizing, at most it
    when minimizing). SageMaker AMT's ``TuningJobCompletionCriteria.TargetObjectiveMetricValue``.
``max_trials_not_improving``
    SageMaker AMT's ``BestObjectiveNotImproving.MaxNumberOfTrainingJobsNotImproving``: "the number
    of training jobs that have failed to improve model performance by 1% or greater over prior
    training jobs as evaluated against an objective function" (minimum 3, as in AMT). Here a
    training job is a trial: stop after N trials in a row (in the order they ended; completed
    and pruned trials count, failed ones don't) whose mean did not beat the best before them by
    ``min_improvement`` (default 0.01, AMT's 1 %, relative to the best's magnitude).
``convergence: noise``
    Beyond AMT: stop when the improvement still plausible from more trials is smaller than the
    cross-validation noise of the best trial (Makarova et al. 2022, "Automatic termination for
    hyperparameter optimization"). A Gaussian process over the completed trials' mean CV scores
    (Matern 5/2 with automatic relevance, a fitted noise term, on the search space mapped to
    the unit cube: log scales as logs, categories one-hot) gives, at every point x, a confidence
    band ``mu(x) ± sqrt(beta) * sigma(x)``. The regret bound is

        r = max over the space of UCB(x) - max over evaluated trials of LCB(x)   (maximizing)

    (the space's maximum is taken over ``candidates`` random points plus the evaluated ones),
    i.e. how much better than the incumbent a trial could still plausibly be. The noise is the
    standard error of the best trial's fold mean with Nadeau & Bengio's correction for folds
    sharing training rows, ``se = sqrt((1/K + n_val/n_train) * s^2)`` (``s^2``: the sample variance
    of its K fold scores). The run stops once ``r < scale * se`` after at least ``min_trials``
    completed trials: any further gain would be smaller than the fold noise that decides which
    trial looks best.

Trials already in flight when a criterion is met finish (their fold jobs are partly paid); no
new trial starts. The ledger records why a run stopped (``stop_reason``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from cvtune.errors import ConfigError
from cvtune.rule_block import integer_setting, number_setting, rule_block
from cvtune.states import TrialState

CONVERGENCE_RULES = ("off", "noise")


@dataclass(frozen=True)
class Convergence:
    """The ``convergence`` block of a tuning config (the noise-aware rule)."""

    rule: str = "off"
    min_trials: int = 20
    beta: float = 1.0
    scale: float = 1.0
    candidates: int = 2000

    @classmethod
    def parse(cls, data: Any, field_name: str = "convergence") -> Convergence:
        if data is None or data is False:
            return cls()
        if data is True:
            data = {"rule": "noise"}
        data, rule = rule_block(data, field_name, rules=CONVERGENCE_RULES, default_rule="noise",
                                settings=("min_trials", "beta", "scale", "candidates"), example="convergence: noise")
        return cls(
            rule=rule,
            min_trials=integer_setting(data, field_name, "min_trials", cls.min_trials, 3),
            beta=number_setting(data, field_name, "beta", cls.beta, 0.0),
            scale=number_setting(data, field_name, "scale", cls.scale, 0.0),
            candidates=integer_setting(data, field_name, "candidates", cls.candidates, 10),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "min_trials": self.min_trials, "beta": self.beta, "scale": self.scale,
                "candidates": self.candidates}


@dataclass(frozen=True)
class CompletionCriteria:
    target_value: float | None = None
    max_trials_not_improving: int | None = None
    min_improvement: float = 0.01
    convergence: Convergence = field(default_factory=Convergence)

    @property
    def active(self) -> bool:
        return self.target_value is not None or self.max_trials_not_improving is not None or self.convergence.rule != "off"

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CompletionCriteria:
        """From the config's top-level ``target_value``, ``max_trials_not_improving``,
        ``min_improvement`` and ``convergence`` keys."""
        target = data.get("target_value")
        if target is not None:
            if isinstance(target, str):
                try:
                    target = float(target)
                except ValueError:
                    raise ConfigError("target_value", f"expected a number, got {target!r}") from None
            if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target):
                raise ConfigError("target_value", f"expected a finite number, got {target!r}", "e.g. target_value: 0.99")
            target = float(target)
        patience = data.get("max_trials_not_improving")
        if patience is not None:
            try:
                number = int(patience)
                if isinstance(patience, bool) or float(patience) != number:
                    raise ValueError
            except (TypeError, ValueError):
                raise ConfigError("max_trials_not_improving", f"expected an integer, got {patience!r}") from None
            if number < 3:
                raise ConfigError(
                    "max_trials_not_improving", f"must be at least 3 (as SageMaker's MaxNumberOfTrainingJobsNotImproving), got {number}"
                )
            patience = number
        min_improvement = data.get("min_improvement", 0.01)
        if isinstance(min_improvement, bool) or not isinstance(min_improvement, (int, float)) or not 0 <= min_improvement < 1:
            raise ConfigError("min_improvement", f"must be a fraction in [0, 1), got {min_improvement!r}", "AMT's is 0.01 (1 %)")
        return cls(target, patience, float(min_improvement), Convergence.parse(data.get("convergence")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_value": self.target_value,
            "max_trials_not_improving": self.max_trials_not_improving,
            "min_improvement": self.min_improvement,
            "convergence": self.convergence.to_dict(),
        }


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def check_target(criteria: CompletionCriteria, best: dict[str, Any] | None, maximize: bool) -> str | None:
    if criteria.target_value is None or best is None:
        return None
    if best["mean"] == criteria.target_value or _better(best["mean"], criteria.target_value, maximize):
        return f"target_value: best mean {best['mean']:.6g} (trial {best['number']}) reached the target {criteria.target_value:.6g}"
    return None


def trials_not_improving(ended: list[dict[str, Any]], maximize: bool, min_improvement: float,
                         baseline: float | None = None) -> int:
    """How many of ``ended`` (trials in the order they ended) in a row, up to the last, did not
    improve the best before them by ``min_improvement`` of its magnitude."""
    best = baseline
    streak = 0
    for trial in ended:
        value = trial.get("mean") if trial["state"] == TrialState.COMPLETED else None
        if value is not None and (
            best is None or _better(value, best + (1 if maximize else -1) * min_improvement * abs(best), maximize)
        ):
            streak = 0
        else:
            streak += 1
        if value is not None and (best is None or _better(value, best, maximize)):
            best = value
    return streak


def check_not_improving(criteria: CompletionCriteria, trials: list[dict[str, Any]], maximize: bool,
                        baseline: float | None = None) -> str | None:
    n = criteria.max_trials_not_improving
    if n is None:
        return None
    ended = sorted((t for t in trials if t["state"] in (TrialState.COMPLETED, TrialState.PRUNED)), key=lambda t: (t.get("ended") or 0, t["number"]))
    streak = trials_not_improving(ended, maximize, criteria.min_improvement, baseline)
    if streak >= n:
        return (f"max_trials_not_improving: the last {streak} trials did not improve the best by "
                f"{criteria.min_improvement:.0%} or more (limit {n})")
    return None


# -- the noise-aware rule ---------------------------------------------------------------------------


def cv_standard_error(fold_scores: list[float], train_rows: float | None = None, validation_rows: float | None = None) -> float:
    """Standard error of a K-fold mean, with Nadeau & Bengio's correction (1/K + n_val/n_train)."""
    k = len(fold_scores)
    if k < 2:
        return 0.0
    ratio = (validation_rows / train_rows) if train_rows and validation_rows else 1.0 / (k - 1)
    return math.sqrt((1.0 / k + ratio) * statistics.variance(fold_scores))


def _encoder(space: Any):
    """Map a trial's params to a point of the unit cube (log scales as logs, categories one-hot)."""
    from optuna.distributions import CategoricalDistribution

    distributions = space.distributions()
    names = list(distributions)

    def encode(params: dict[str, Any]) -> list[float]:
        internal = space.to_internal(params)
        out: list[float] = []
        for name in names:
            d = distributions[name]
            v = internal[name]
            if isinstance(d, CategoricalDistribution):
                out += [1.0 if c == v else 0.0 for c in d.choices]
                continue
            lo, hi = float(d.low), float(d.high)
            if getattr(d, "log", False):
                lo, hi, v = math.log(lo), math.log(hi), math.log(float(v))
            out.append(0.5 if hi == lo else (float(v) - lo) / (hi - lo))
        return out

    def random_points(n: int, rng: Any) -> Any:
        import numpy as np

        cols = []
        for name in names:
            d = distributions[name]
            if isinstance(d, CategoricalDistribution):
                idx = rng.integers(0, len(d.choices), n)
                cols.append(np.eye(len(d.choices))[idx])
            else:
                cols.append(rng.random((n, 1)))
        return np.hstack(cols)

    return encode, random_points


def regret_bound(space: Any, trials: list[dict[str, Any]], maximize: bool, settings: Convergence, seed: int = 0) -> float:
    """Makarova et al.'s upper bound on the simple regret from a GP over the completed trials."""
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    encode, random_points = _encoder(space)
    X = np.array([encode(t["params"]) for t in trials], dtype=float)
    y = np.array([t["mean"] for t in trials], dtype=float) * (1.0 if maximize else -1.0)
    mu_y, sd_y = float(y.mean()), float(y.std()) or 1.0
    yn = (y - mu_y) / sd_y
    signal = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e2), nu=2.5)
    kernel = signal + WhiteKernel(1e-2, (1e-6, 1.0))
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=False, n_restarts_optimizer=2, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bound-hitting length scales are harmless here
        gp.fit(X, yn)
    rng = np.random.default_rng(seed)
    candidates = np.vstack([X, random_points(settings.candidates, rng)])
    latent = gp.kernel_.k1  # the signal part: confidence about f, not about one noisy observation

    def band(points: Any) -> tuple[Any, Any]:
        k_star = latent(points, X)
        mean = k_star @ gp.alpha_
        v = _solve_lower(gp.L_, k_star.T)
        var = np.clip(latent.diag(points) - np.sum(v * v, axis=0), 1e-12, None)
        return mean * sd_y + mu_y, np.sqrt(var) * sd_y

    width = math.sqrt(settings.beta)
    mean_c, sd_c = band(candidates)
    mean_x, sd_x = mean_c[: len(X)], sd_c[: len(X)]
    return float(np.max(mean_c + width * sd_c) - np.max(mean_x - width * sd_x))


def _solve_lower(L: Any, B: Any) -> Any:
    from scipy.linalg import solve_triangular

    return solve_triangular(L, B, lower=True, check_finite=False)


def check_convergence(
    settings: Convergence,
    space: Any,
    trials: list[dict[str, Any]],
    best: dict[str, Any] | None,
    maximize: bool,
    manifest: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[str | None, dict[str, float] | None]:
    """(reason or None, the statistic) for the noise-aware rule over the completed trials."""
    completed = [t for t in trials if t["state"] == TrialState.COMPLETED and t.get("mean") is not None]
    if settings.rule == "off" or best is None or len(completed) < settings.min_trials:
        return None, None
    folds = [f for f in (manifest or {}).get("folds") or [] if f.get("train_rows") and f.get("validation_rows")]
    train_rows = statistics.fmean(f["train_rows"] for f in folds) if folds else None
    val_rows = statistics.fmean(f["validation_rows"] for f in folds) if folds else None
    se = cv_standard_error([s for s in best["fold_scores"] if s is not None], train_rows, val_rows)
    regret = regret_bound(space, completed, maximize, settings, seed)
    stat = {"regret_bound": regret, "cv_standard_error": se, "threshold": settings.scale * se, "trials": len(completed)}
    if regret < settings.scale * se:
        return (
            f"convergence: the improvement still plausible from more trials (GP regret bound {regret:.3g}) is below "
            f"the CV noise of the best trial ({settings.scale:g} x standard error {se:.3g}) after {len(completed)} trials",
            stat,
        )
    return None, stat


__all__ = [
    "CompletionCriteria", "Convergence", "check_target", "check_not_improving", "check_convergence",
    "cv_standard_error", "regret_bound", "trials_not_improving",
]
