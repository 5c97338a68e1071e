"""Trigger of a SageMaker batch transform job: fires when the job has ended.

Its kwargs are the connection id and the job name; everything else the task needs afterwards
travels in the deferred task's own kwargs. The connection lookup and opening the client block,
so they run in a worker thread; the ``DescribeTransformJob`` polls are awaited on the amazon
provider's aiobotocore client in the triggerer's event loop itself, and the client is closed
before the event is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def _runner(cvtune_conn_id: str) -> Any:
    """The connection's batch transform runner (it polls; this trigger never launches anything)."""
    from cvtune.hooks.cvtune import CvtuneHook

    return CvtuneHook(cvtune_conn_id).platform.batch_transform()


class TransformJobTrigger(BaseTrigger):
    """Polls ``DescribeTransformJob`` every ``poll_interval`` seconds until the job ends.

    Events: ``{"status": "Completed" | "Failed" | "Stopped", "job_name", "failure_reason"}`` (the
    job's :func:`cvtune.sagemaker.transform.job_outcome`); ``{"status": "error", "job_name", "message"}``
    when the client cannot be opened or the job cannot be described (e.g. it does not exist).
    """

    def __init__(self, *, cvtune_conn_id: str, job_name: str, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.cvtune_conn_id = cvtune_conn_id
        self.job_name = job_name
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "cvtune.triggers.transform.TransformJobTrigger",
            {"cvtune_conn_id": self.cvtune_conn_id, "job_name": self.job_name, "poll_interval": self.poll_interval},
        )

    def _error(self, what: str, exc: BaseException) -> dict[str, Any]:
        return {"status": "error", "job_name": self.job_name, "message": f"{what}: {type(exc).__name__}: {exc}"}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # the event is yielded only after the client is closed: the triggerer may never resume us
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        try:
            runner = await asyncio.to_thread(_runner, self.cvtune_conn_id)
            context = await asyncio.to_thread(runner.config.client, "sagemaker", deferrable=True)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event the task raises
            return self._error(f"cannot open a SageMaker client for connection {self.cvtune_conn_id}", exc)
        try:
            async with context as client:
                while (outcome := await runner.apoll(client, self.job_name)) is None:
                    await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001
            return self._error(f"waiting for batch transform job {self.job_name} failed", exc)
        self.log.info("batch transform job %s %s", self.job_name, outcome["status"])
        return outcome
