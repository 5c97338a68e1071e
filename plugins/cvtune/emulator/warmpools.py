"""Managed warm pools: which finished job's instances a new job may take, and for how long.

AWS rules (SageMaker developer guide, "SageMaker AI Managed Warm Pools", and API_WarmPoolStatus):

- Matching: a pool is reused by a job with the same ``RoleArn``, ``ResourceConfig`` instance type,
  instance count, volume size and volume KMS key, ``VpcConfig`` subnets and security groups,
  ``EnableNetworkIsolation`` and ``EnableInterContainerTrafficEncryption`` ("Matching training
  jobs"); :func:`pool_key` is exactly that list.
- "If the warm pool identifies a second training job with matching specifications such as instance
  count or instance type, then the warm pool moves from the first training job to the second
  training job for reuse." The pool must be ``Available`` when the job is created: "The warm pool
  stays Available until it either identifies a matching training job for reuse or it exceeds the
  specified KeepAlivePeriodInSeconds and is terminated." A pool that becomes Available after a job
  was created is not given to it.
- Status values: ``InUse`` "The warm pool is in use for the training job", ``Available`` "available
  to reuse for a matching training job", ``Reused`` "moved to a matching training job for reuse",
  ``Terminated`` "no longer available … terminated by a user, … or terminated for exceeding the
  specified KeepAlivePeriodInSeconds". ``ReusedByJob``: "The name of the matching training job
  that reused the warm pool."
- Keep-alive is per job: the pool a reusing job leaves behind lives for *that* job's
  ``KeepAlivePeriodInSeconds``.
- ``UpdateTrainingJob`` with ``KeepAlivePeriodInSeconds`` 0 terminates the pool ("Terminate a warm
  pool": set the keep-alive period to 0).
- ``ResourceRetainedBillableTimeInSeconds``: from the job's end until the pool is reused or
  terminated, in emulated seconds.
- The persistent cache (``/opt/ml/sagemaker/warmpoolcache``, :mod:`cvtune.emulator.runner`): a
  host directory that moves with the pool from job to job and is deleted when the pool ends.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from cvtune.emulator.clock import Clock
from cvtune.emulator.metering import billable
from cvtune.states import WarmPoolStatus


def pool_key(request: dict[str, Any]) -> tuple:
    """The fields AWS matches a job to a pool on."""
    resources = request["ResourceConfig"]
    vpc = request.get("VpcConfig") or {}
    return (
        request["RoleArn"],
        resources.get("InstanceType"),
        resources.get("InstanceCount"),
        resources.get("VolumeSizeInGB"),
        resources.get("VolumeKmsKeyId"),
        tuple(sorted(vpc.get("Subnets", []))),
        tuple(sorted(vpc.get("SecurityGroupIds", []))),
        bool(request.get("EnableNetworkIsolation", False)),
        bool(request.get("EnableInterContainerTrafficEncryption", False)),
    )


@dataclass
class Pool:
    """The instances a finished job keeps alive; ``job``: the job whose WarmPoolStatus it is."""

    job: str
    key: tuple
    instance_type: str
    instance_count: int
    keep_alive_s: int
    since: float  # real time the pool became Available
    status: str = WarmPoolStatus.AVAILABLE
    reused_by: str | None = None
    retained_s: int | None = None
    cache_dir: str | None = None  # the persistent cache's host directory, while the pool holds it

    def terminate(self, retained_s: int) -> None:
        self.status = WarmPoolStatus.TERMINATED
        self.retained_s = retained_s
        if self.cache_dir:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            self.cache_dir = None

    def expires_at(self, clock: Clock) -> float:
        return self.since + clock.real(self.keep_alive_s)

    def status_dict(self, clock: Clock) -> dict[str, Any]:
        out: dict[str, Any] = {"Status": self.status}
        retained = self.retained_s
        if retained is None:  # still Available: what it has cost so far
            retained = billable(clock.emulated(clock.now() - self.since))
        out["ResourceRetainedBillableTimeInSeconds"] = retained
        if self.reused_by:
            out["ReusedByJob"] = self.reused_by
        return out


class WarmPools:
    """Every pool by the job that left it. Not thread-safe: the service calls it under its lock."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pools: dict[str, Pool] = {}

    def expire(self) -> None:
        now = self.clock.now()
        for pool in self.pools.values():
            if pool.status == WarmPoolStatus.AVAILABLE and now >= pool.expires_at(self.clock):
                pool.terminate(billable(pool.keep_alive_s))

    def available(self, instance_type: str | None = None) -> list[Pool]:
        self.expire()
        return [p for p in self.pools.values() if p.status == WarmPoolStatus.AVAILABLE and instance_type in (None, p.instance_type)]

    def retained_instances(self, instance_type: str) -> int:
        return sum(p.instance_count for p in self.available(instance_type))

    def drop_caches(self) -> None:
        """The emulator stops: every cache directory a pool still holds goes."""
        for pool in self.pools.values():
            if pool.cache_dir:
                shutil.rmtree(pool.cache_dir, ignore_errors=True)
                pool.cache_dir = None

    def take(self, key: tuple, by_job: str) -> Pool | None:
        """The oldest Available pool matching ``key``, moved to ``by_job``; None if there is none."""
        candidates = sorted((p for p in self.available() if p.key == key), key=lambda p: p.since)
        if not candidates:
            return None
        pool = candidates[0]
        pool.status = WarmPoolStatus.REUSED
        pool.reused_by = by_job
        pool.retained_s = billable(self.clock.emulated(self.clock.now() - pool.since))
        return pool

    def keep(self, job: str, key: tuple, instance_type: str, instance_count: int, keep_alive_s: int,
             cache_dir: str | None = None) -> Pool:
        pool = Pool(job, key, instance_type, instance_count, keep_alive_s, since=self.clock.now(), cache_dir=cache_dir)
        self.pools[job] = pool
        return pool

    def update_keep_alive(self, job: str, keep_alive_s: int) -> Pool:
        pool = self.pools[job]
        self.expire()
        if pool.status != WarmPoolStatus.AVAILABLE:
            raise ValueError(f"the warm pool of {job} is {pool.status}, not Available")
        if keep_alive_s == 0:
            pool.terminate(billable(self.clock.emulated(self.clock.now() - pool.since)))
        else:
            pool.keep_alive_s = keep_alive_s
        return pool
