"""Trigger of a SageMaker batch transform job: fires when the job has ended.

Its kwargs are the connection id and the job name; everything else the task needs afterwards
travels in the deferred task's own kwargs. The connection lookup and ``DescribeTransformJob``
are blocking calls, so they run in a worker thread of the triggerer's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

TERMINAL = ("Completed", "Failed", "Stopped")


def _client(cvtune_conn_id: str) -> Any:
    from cvtune.aws.config import SageMakerConfig
    from cvtune.hooks.cvtune import CvtuneHook

    settings = CvtuneHook(cvtune_conn_id).settings
    return SageMakerConfig.from_options(settings.options, source=settings.source).client("sagemaker")


class TransformJobTrigger(BaseTrigger):
    """Polls ``DescribeTransformJob`` every ``poll_interval`` seconds until the job ends.

    Events: ``{"status": "Completed" | "Failed" | "Stopped", "job_name", "failure_reason"}``;
    ``{"status": "error", "job_name", "message"}`` when the job cannot be described.
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

    def make_client(self) -> Any:
        return _client(self.cvtune_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await asyncio.to_thread(self.make_client)
            while True:
                job = await asyncio.to_thread(client.describe_transform_job, TransformJobName=self.job_name)
                status = job["TransformJobStatus"]
                if status in TERMINAL:
                    self.log.info("batch transform job %s %s", self.job_name, status)
                    yield TriggerEvent(
                        {"status": status, "job_name": self.job_name, "failure_reason": job.get("FailureReason")}
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event the task raises
            yield TriggerEvent(
                {"status": "error", "job_name": self.job_name, "message": f"{type(exc).__name__}: {exc}"}
            )
