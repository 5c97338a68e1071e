"""Account quotas: training instances per instance type, and the warm-pool share of them.

AWS rules implemented here (Request a warm pool quota increase, train-warm-pools-resource-limits):

- "The default resource limit for warm pools is 0." and "If a training job is created with
  KeepAlivePeriodInSeconds specified, but you did not request a warm pool limit increase, then a
  warm pool is not retained after the completion of the training job." — so ``warm_pool`` defaults
  to 0 per instance type, and a job ending without room keeps no pool; nothing is refused.
- "A warm pool is only created if your warm pool limit has sufficient resources."
- "All warm pool instance usage counts toward your SageMaker training resource limit." — retained
  pools count toward ``training_instances`` until they are reused, expire or are terminated.
- A ``CreateTrainingJob`` beyond the per-instance-type training quota is refused with
  ``ResourceLimitExceeded`` (the error SageMaker's API reference lists for CreateTrainingJob:
  "You have exceeded an SageMaker resource limit. For example, you might have too many training
  jobs created."), worded like the Service Quotas message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_TRAINING_INSTANCES = 20


class LimitExceeded(Exception):
    code = "ResourceLimitExceeded"


@dataclass
class Quotas:
    training_instances: dict[str, int] = field(default_factory=dict)  # instance type -> instances
    warm_pool: dict[str, int] = field(default_factory=dict)  # instance type -> retained instances
    default_training_instances: int = DEFAULT_TRAINING_INSTANCES

    def training_limit(self, instance_type: str) -> int:
        return self.training_instances.get(instance_type, self.default_training_instances)

    def warm_pool_limit(self, instance_type: str) -> int:
        return self.warm_pool.get(instance_type, 0)

    def check_training(self, instance_type: str, used: int, delta: int) -> None:
        limit = self.training_limit(instance_type)
        if used + delta > limit:
            raise LimitExceeded(
                f"The account-level service limit '{instance_type} for training job usage' is {limit} Instances, "
                f"with current utilization of {used} Instances and a request delta of {delta} Instances. "
                "Please use AWS Service Quotas to request an increase for this quota."
            )

    def warm_pool_has_room(self, instance_type: str, retained: int, delta: int) -> bool:
        return retained + delta <= self.warm_pool_limit(instance_type)

    @staticmethod
    def parse(specs: list[str], what: str) -> dict[str, int]:
        """``["ml.m5.large=4"]`` (the CLI form) → ``{"ml.m5.large": 4}``."""
        out: dict[str, int] = {}
        for spec in specs:
            name, _, number = spec.partition("=")
            if not name.startswith("ml.") or not number.isdigit():
                raise ValueError(f"--{what} {spec!r}: expected <instance type>=<instances>, e.g. ml.m5.large=4")
            out[name] = int(number)
        return out
