"""Injected faults: a rate of ``ThrottlingException`` / ``InternalServerError`` per API, and job failures.

``api`` maps an operation (or ``*``) to ``{error code: probability}``; before an operation runs, each
code is drawn in turn. ``job_internal_error_rate`` fails a training job's attempt with
``InternalServerError``, which the job's ``RetryStrategy`` retries: AWS's ``RetryStrategy``
"The retry strategy to use when a training job fails due to an InternalServerError" and
``MaximumRetryAttempts`` "The number of times to retry the job" (API_RetryStrategy). ``seed`` makes a
run repeatable; ``first_n`` injects the fault into exactly the first n calls of an operation, for
tests that must see it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field

HTTP_STATUS = {"ThrottlingException": 400, "InternalServerError": 500, "ServiceUnavailable": 503, "AccessDeniedException": 400}
MESSAGES = {
    "AccessDeniedException": "User is not authorized to perform this action (injected: e.g. credentials expired mid-run)",
    "ThrottlingException": "Rate exceeded",
    "InternalServerError": "An internal error occurred. Try again.",
    "ServiceUnavailable": "Service is unavailable. Try again.",
}


@dataclass
class Faults:
    api: dict[str, dict[str, float]] = field(default_factory=dict)
    first_n: dict[str, tuple[str, int]] = field(default_factory=dict)  # op -> (code, how many)
    at_call: dict[str, tuple[str, int]] = field(default_factory=dict)  # op -> (code, the one call number to fail)
    job_internal_error_rate: float = 0.0
    job_internal_error_first_n: int = 0  # the first n training-job attempts fail with InternalServerError
    transform_internal_error_first_n: int = 0  # likewise for transform jobs (which have no RetryStrategy)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._job_attempts = 0
        for op, codes in self.api.items():
            for code, rate in codes.items():
                if code not in HTTP_STATUS:
                    raise ValueError(f"faults.api.{op}: unknown error code {code!r}; one of {sorted(HTTP_STATUS)}")
                if not 0 <= rate <= 1:
                    raise ValueError(f"faults.api.{op}.{code}: a rate in [0, 1], got {rate}")

    def draw(self, operation: str) -> str | None:
        """The error code to answer ``operation`` with this time, or None to run it."""
        with self._lock:
            self._seen[operation] += 1
            if operation in self.at_call and self._seen[operation] == self.at_call[operation][1]:
                return self.at_call[operation][0]
            if operation in self.first_n:
                code, n = self.first_n[operation]
                if self._seen[operation] <= n:
                    return code
            for key in (operation, "*"):
                for code, rate in self.api.get(key, {}).items():
                    if rate and self._rng.random() < rate:
                        return code
        return None

    def job_attempt_fails(self) -> bool:
        with self._lock:
            self._job_attempts += 1
            if self._job_attempts <= self.job_internal_error_first_n:
                return True
            return bool(self.job_internal_error_rate) and self._rng.random() < self.job_internal_error_rate

    def transform_fails(self) -> bool:
        with self._lock:
            if self.transform_internal_error_first_n > 0:
                self.transform_internal_error_first_n -= 1
                return True
        return False

    @classmethod
    def parse(cls, specs: list[str], seed: int | None = None) -> Faults:
        """``["CreateTrainingJob=ThrottlingException:0.2", "job=InternalServerError:0.1"]`` (the CLI form)."""
        api: dict[str, dict[str, float]] = {}
        job_rate = 0.0
        for spec in specs:
            try:
                op, rest = spec.split("=", 1)
                code, rate = rest.rsplit(":", 1)
                value = float(rate)
            except ValueError:
                raise ValueError(f"--fault {spec!r}: expected Operation=ErrorCode:rate, e.g. CreateTrainingJob=ThrottlingException:0.2") from None
            if op == "job":
                if code != "InternalServerError":
                    raise ValueError(f"--fault {spec!r}: jobs fail only with InternalServerError")
                job_rate = value
            else:
                api.setdefault(op, {})[code] = value
        return cls(api=api, job_internal_error_rate=job_rate, seed=seed)
