"""What a tuning run will cost before it starts: wall time, instance-hours, peak instances, quotas.

A model of the tuner's schedule on warm pools, from assumed durations (:class:`Assumptions`):
``J`` = min(``max_parallel_jobs``, ``max_parallel_trials`` × K) jobs run at once, each on its own
pool, so the ``N`` = trials × K fold jobs run in ``ceil(N / J)`` waves. The first wave starts cold
(``start_s`` provisioning, not billed: billing starts at ``TrainingStartTime``); every later job is
created when the tuner sees a job end (on average half a poll interval later) and starts on the
pool that job left (``warm_start_s``). So:

- wall = ``start_s + job_s`` + (waves − 1) × (``poll_s``/2 + ``warm_start_s`` + ``job_s``) + ``poll_s``/2;
- job instance-seconds = N × ``job_s`` × instance count;
- retained during the run = (N − J) pools × ``poll_s``/2 (a pool waits until the next job takes it);
- idle tail after the run: with ``release_pools: auto`` the J − 1 pools of the last wave are
  released when their jobs end (``poll_s``/2 each) and one waits for the next step for up to
  ``keep_alive_period_s``; with ``never`` all J pools idle for ``keep_alive_period_s``.

Early stopping can only shorten the run (pruned trials skip folds); the plan assumes none are
pruned, so it is an upper bound there. AWS bills "ResourceRetainedBillableTimeInSeconds * InstanceCount"
for warm pools (API reference, WarmPoolStatus) like training time; both quotas (training instances
and warm-pool instances of the type) must cover J × instance count, since "All warm pool instance
usage counts toward your SageMaker training resource limit" (developer guide, warm pools).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from cvtune.errors import ConfigError

DEFAULT_START_S = 180.0  # a cold start of a training instance: "typical startup times", ~3 min
DEFAULT_WARM_START_S = 5.0  # a job on a warm pool skips provisioning


@dataclass(frozen=True)
class Assumptions:
    """Durations the plan assumes, in seconds; ``job_s`` defaults to the config's ``max_runtime_s``."""

    start_s: float = DEFAULT_START_S
    job_s: float | None = None
    warm_start_s: float = DEFAULT_WARM_START_S
    poll_s: float = 10.0

    def check(self, field: str | None = None) -> Assumptions:
        """Raise a ConfigError naming the CLI flag (or ``{field}.{name}``) of a bad value."""
        for name, value in asdict(self).items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                where = f"{field}.{name}" if field else "--assume-" + name.removesuffix("_s").replace("_", "-") + "-s"
                raise ConfigError(where, f"must be a non-negative number of seconds, got {value!r}")
        return self

    @classmethod
    def from_mapping(cls, values: Any, field: str) -> Assumptions:
        """Assumptions from an operator argument such as ``{"job_s": 300}``; numbers may arrive as
        rendered strings ("300"). Unknown keys and bad values name ``field``."""
        names = [f.name for f in fields(cls)]
        if not isinstance(values, dict):
            raise ConfigError(field, f"expected a mapping of {', '.join(names)} to seconds, got {type(values).__name__}",
                              'e.g. {"job_s": 300, "start_s": 180}')
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            if key not in names:
                raise ConfigError(f"{field}.{key}", "is not a plan assumption", f"use one of {', '.join(names)}")
            if value is None or value == "":
                continue  # an unset DAG param: the default
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"{field}.{key}", f"must be a non-negative number of seconds, got {value!r}") from None
            parsed[key] = value
        return cls(**parsed).check(field)


def cost_plan(
    *,
    trials: int,
    folds: int,
    concurrency: int,
    instance_type: str,
    instance_count: int,
    keep_alive_s: float,
    release_pools: str,
    job_s: float,
    assumptions: Assumptions,
    price_per_instance_hour: float | None = None,
) -> dict[str, Any]:
    """The plan of a run of ``trials`` × ``folds`` fold jobs, ``concurrency`` at a time (module docstring)."""
    a = assumptions
    jobs = trials * folds
    slots = max(1, min(concurrency, jobs))
    waves = math.ceil(jobs / slots)
    lag = a.poll_s / 2
    warm = keep_alive_s > 0
    cycle = lag + (a.warm_start_s if warm else a.start_s) + job_s
    wall = a.start_s + job_s + (waves - 1) * cycle + lag
    job_is = jobs * job_s * instance_count
    retained_is = (jobs - slots) * lag * instance_count if warm else 0.0
    if not warm:
        tail_is = 0.0
    elif release_pools == "auto":
        tail_is = ((slots - 1) * lag + keep_alive_s) * instance_count
    else:
        tail_is = slots * keep_alive_s * instance_count
    total_is = job_is + retained_is + tail_is
    instances = slots * instance_count
    out: dict[str, Any] = {
        "assumed": {**asdict(a), "job_s": job_s},
        "fold_jobs": jobs,
        "concurrent_jobs": slots,
        "waves": waves,
        "wall_s": round(wall, 1),
        "wall_h": round(wall / 3600, 3),
        "job_instance_hours": round(job_is / 3600, 3),
        "retained_instance_hours": round(retained_is / 3600, 3),
        "idle_tail_instance_hours": round(tail_is / 3600, 3),
        "instance_hours": round(total_is / 3600, 3),
        "peak_instances": instances,
        "quotas": {
            f"{instance_type} for training job usage": instances,
            f"{instance_type} for training warm pool usage": instances if warm else 0,
        },
    }
    if price_per_instance_hour is not None:
        out["price_per_instance_hour"] = price_per_instance_hour
        out["cost"] = round(total_is / 3600 * price_per_instance_hour, 2)
    return out


def plan_run(config: Any, folds: int, sm: Any, assumptions: Assumptions | None = None) -> dict[str, Any]:
    """:func:`cost_plan` of tuning config ``config`` on ``folds`` folds with SageMaker settings ``sm``."""
    a = (assumptions or Assumptions()).check()
    parallel = [n for n in (config.max_parallel_jobs, sm.max_parallel_jobs) if n]
    concurrency = min([config.max_parallel_trials * folds, *parallel])
    return cost_plan(
        trials=config.max_trials,
        folds=folds,
        concurrency=concurrency,
        instance_type=sm.instance_type,
        instance_count=sm.instance_count,
        keep_alive_s=sm.keep_alive_period_s,
        release_pools=sm.release_pools,
        job_s=float(a.job_s if a.job_s is not None else config.max_runtime_s),
        assumptions=a,
        price_per_instance_hour=sm.price_per_instance_hour,
    )
