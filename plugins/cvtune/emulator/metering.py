"""What the emulator counts: API calls by operation (and the faults it answered), and billing.

Billing follows DescribeTrainingJob: ``BillableTimeInSeconds`` — "The billable time in seconds.
Billable time refers to the absolute wall-clock time." — runs from ``TrainingStartTime``, of
which AWS says "You are billed for the time interval between this time and the value of
TrainingEndTime"; provisioning (``Starting``) is not billed. A warm pool's
``ResourceRetainedBillableTimeInSeconds`` is "The billable time in seconds used by the warm
pool", to be multiplied by ``InstanceCount`` (API_WarmPoolStatus). Both are emulated seconds (see
:mod:`cvtune.emulator.clock`), rounded up to whole seconds with a minimum of one for a job that
started training.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

from cvtune.states import WarmPoolStatus


def billable(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9)) if seconds > 0 else 0


class Meter:
    """Counts calls; the billing totals are summed from the jobs on demand (:meth:`report`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # "Operation:Code"

    def call(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def error(self, operation: str, code: str) -> None:
        with self._lock:
            self.errors[f"{operation}:{code}"] += 1

    def report(self, jobs: list[dict[str, Any]], transforms: list[dict[str, Any]]) -> dict[str, Any]:
        """API calls and billing of everything so far (``jobs``: DescribeTrainingJob responses)."""
        billable_s = sum(j.get("BillableTimeInSeconds") or 0 for j in jobs)
        instance_s = sum((j.get("BillableTimeInSeconds") or 0) * j["ResourceConfig"]["InstanceCount"] for j in jobs)
        retained = [j for j in jobs if j.get("WarmPoolStatus")]
        retained_s = sum(
            (j["WarmPoolStatus"].get("ResourceRetainedBillableTimeInSeconds") or 0) * j["ResourceConfig"]["InstanceCount"]
            for j in retained
        )
        statuses = Counter(j["TrainingJobStatus"] for j in jobs)
        with self._lock:
            calls, errors = dict(sorted(self.calls.items())), dict(sorted(self.errors.items()))
        return {
            "api_calls": calls,
            "api_calls_total": sum(calls.values()),
            "api_errors": errors,
            "training_jobs": {
                "count": len(jobs),
                "by_status": dict(sorted(statuses.items())),
                "billable_seconds": billable_s,
                "billable_instance_seconds": instance_s,
                "warm_pool_retained_instance_seconds": retained_s,
                "warm_pools_reused": sum(1 for j in retained if j["WarmPoolStatus"]["Status"] == WarmPoolStatus.REUSED),
                "warm_pools_available": sum(1 for j in retained if j["WarmPoolStatus"]["Status"] == WarmPoolStatus.AVAILABLE),
                "retries": sum(max(0, (j.get("_attempts") or 1) - 1) for j in jobs),
                # channel bytes fetched from S3 per job (File: all; FastFile: the files the script
                # read), and whether the job started on a warm pool: what a pool's cache saves
                "input_bytes": {j["TrainingJobName"]: {"bytes": j["_input"]["bytes_downloaded"],
                                                       "of": j["_input"]["bytes_total"],
                                                       "took_pool": j["_input"]["took_pool"]}
                                for j in jobs if (j.get("_input") or {}).get("bytes_downloaded") is not None},
            },
            "transform_jobs": {
                "count": len(transforms),
                "by_status": dict(sorted(Counter(t["TransformJobStatus"] for t in transforms).items())),
            },
        }
