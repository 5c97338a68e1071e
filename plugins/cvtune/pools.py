"""The warm pools a run's ended fold jobs leave behind: followed until their bill is final, and
released once nothing will use them.

A job kept alive (SageMaker's ``KeepAlivePeriodInSeconds``) leaves its instances in a pool that
is billed until the next matching job takes it (``Reused``) or it ends (``Terminated``). The
:class:`PoolKeeper` keeps that state in the run's ledger, per fold job:

``pool_status``, ``pool_reused_by``, ``retained_seconds``
    the job's own ``WarmPoolStatus`` as last described; ``retained_seconds`` is final once the
    status is ``Reused`` or ``Terminated`` (``pool_final``).
``took_pool_of``
    the job whose pool this job started on — learned from that provider's ``ReusedByJob``, so
    reuse is counted without listing the run's jobs, and a deferred run (a new process on every
    resume) picks the state up from its ledger.
``pool_released``
    when cvtune ended the pool (``release_pools: auto``).

Following costs one describe per open pool each time jobs of the run end (after the launches
that event allows, so a freed pool is taken before anything else is asked; a consumer recorded
earlier is marked when its provider's ``ReusedByJob`` names it); open pools are few — at most the run's concurrent
jobs, and usually a job launched right after a pool opens takes it. Releasing: once the run has launched its
last fold job, every pool that ends after that launch is released as its job ends — nothing in
this run will take it — and when nothing is in flight any more all pools but one are: the one
left is for the next step of the DAG (final training or refinement takes a fold pool).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from cvtune.backends.base import Backend, JobDescription
from cvtune.errors import JobNotFoundError
from cvtune.states import JOB_ENDED, POOL_FINAL, POOL_OPEN, WarmPoolStatus

log = logging.getLogger("cvtune.pools")



def update_pool(job: dict[str, Any], d: JobDescription) -> None:
    """Copy the pool fields of description ``d`` into the ledger entry ``job``."""
    if d.pool_status is None:
        return
    job["pool_status"] = d.pool_status
    job["pool_reused_by"] = d.pool_reused_by
    if d.retained_seconds is not None:
        job["retained_seconds"] = d.retained_seconds
    job["pool_final"] = d.pool_status in POOL_FINAL


class PoolKeeper:
    """Pool bookkeeping of one run (see the module docstring); the tuner calls it."""

    def __init__(
        self, ledger: Any, backend: Backend, lookup: Callable[[str], dict[str, Any] | None] | None = None
    ) -> None:
        self.ledger = ledger
        self.backend = backend
        # the ledger entry of a job by name, if the caller indexes them (else a scan of the run)
        self._lookup = lookup or (lambda name: None)
        # open pools, kept as jobs end and pools close: following them costs O(open pools), not O(run)
        self._open_jobs = [j for j in self._jobs() if j["state"] in JOB_ENDED and j.get("pool_status") in POOL_OPEN]
        billing = ledger.data.setdefault("billing", {})
        billing["instance_count"] = getattr(backend, "instance_count", 1)
        price = getattr(backend, "price_per_instance_hour", None)
        if price is not None:
            billing["price_per_instance_hour"] = price

    def _jobs(self) -> Iterator[dict[str, Any]]:
        for trial in self.ledger.trials:
            yield from trial["fold_jobs"]

    def _open(self) -> list[dict[str, Any]]:
        self._open_jobs = [j for j in self._open_jobs if j["state"] in JOB_ENDED and j.get("pool_status") in POOL_OPEN]
        return self._open_jobs

    def ended(self, job: dict[str, Any], d: JobDescription) -> None:
        """Job ``job`` was just recorded as ended with description ``d``."""
        job["ended_seen_at"] = time.time()
        update_pool(job, d)
        if job.get("pool_status") in POOL_OPEN and job["state"] in JOB_ENDED and not any(j is job for j in self._open_jobs):
            self._open_jobs.append(job)
        self._learn(job)
        if job.get("took_pool_of"):
            job["warm_pool_status"] = WarmPoolStatus.REUSED

    def _learn(self, provider: dict[str, Any]) -> None:
        consumer = provider.get("pool_reused_by")
        if not consumer or provider.get("pool_status") != WarmPoolStatus.REUSED:
            return
        indexed = self._lookup(consumer)
        for job in [indexed] if indexed is not None else self._jobs():
            if job["job_name"] == consumer:
                job["took_pool_of"] = provider["job_name"]
                if job["state"] in JOB_ENDED:
                    job["warm_pool_status"] = WarmPoolStatus.REUSED
                return

    def follow(self, *, save: bool = True) -> None:
        """Describe each open pool once: what took it (``ReusedByJob``) and its retained time so far."""
        changed = False
        for job in self._open():
            try:
                d = self.backend.describe(job["job_name"])
            except JobNotFoundError:
                job["pool_status"], job["pool_final"] = WarmPoolStatus.TERMINATED, True
                changed = True
                continue
            before = (job.get("pool_status"), job.get("retained_seconds"))
            update_pool(job, d)
            self._learn(job)
            changed = changed or before != (job.get("pool_status"), job.get("retained_seconds"))
        if changed and save:
            self.ledger.save()

    def release(self, launch_done: bool, *, keep: int) -> None:
        """Release the pools nothing in this run will take (module docstring), keeping ``keep``."""
        if not launch_done or not self.backend.releases_pools:
            return
        candidates = [j for j in self._open() if not j.get("pool_released")]
        if not keep:
            last_launch = self.ledger.data.get("last_launch_at", 0.0)
            candidates = [j for j in candidates if j.get("ended_seen_at", 0.0) >= last_launch]
        else:
            kept = sorted(
                (j for j in self._open() if not j.get("pool_released")),
                key=lambda j: j.get("ended_seen_at", 0.0),
            )[-keep:]
            candidates = [j for j in candidates if j not in kept]
        for job in candidates:
            if self.backend.release_pool(job["job_name"]):
                job["pool_released"] = time.time()
            else:  # already taken or ended: the next describe says which
                job["pool_released"] = False
        if candidates:
            self.ledger.save()


def billing(ledger_data: dict[str, Any]) -> dict[str, Any]:
    """What a run's jobs were billed: job time + retained pool time = instance-seconds (and money).

    ``retained_final``: whether every pool's retained time is final (a pool still ``Available``
    keeps adding to it until it is taken or ends).
    """
    jobs = [j for t in ledger_data["trials"] for j in t["fold_jobs"]]
    job_s = sum(j["billable_seconds"] for j in jobs if j.get("billable_seconds") is not None)
    retained = [j for j in jobs if j.get("retained_seconds") is not None]
    retained_s = sum(j["retained_seconds"] for j in retained)
    info = ledger_data.get("billing") or {}
    count = info.get("instance_count", 1)
    instance_s = (job_s + retained_s) * count
    out: dict[str, Any] = {
        "billable_seconds": round(job_s, 3),
        "retained_seconds": round(retained_s, 3),
        "retained_final": all(j.get("pool_final", True) for j in retained),
        "instance_count": count,
        "instance_seconds": round(instance_s, 3),
        "instance_hours": round(instance_s / 3600, 4),
        "pools_released": sum(1 for j in jobs if j.get("pool_released")),
    }
    price = info.get("price_per_instance_hour")
    if price is not None:
        out["price_per_instance_hour"] = price
        out["cost"] = round(instance_s / 3600 * price, 4)
    return out
