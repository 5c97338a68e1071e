"""Retrying AWS calls that were refused for rate or capacity, with jittered exponential backoff.

botocore's adaptive retry mode already retries throttled calls a few times and paces the client;
this covers what is left: ``ThrottlingException`` that outlasted botocore's attempts, and
``ResourceLimitExceeded`` (the account's concurrent training-job or instance quota), which
botocore never retries but which clears as soon as earlier jobs end, and server errors (HTTP 5xx:
``InternalServerError``, ``ServiceUnavailable``) that outlasted botocore's attempts — or met a
connection whose ``config_kwargs`` turned them off. Retrying ``CreateTrainingJob`` after a 5xx is
safe: job names are deterministic, so a job the failed call did create answers ``ResourceInUse``
and the backend re-attaches to it. Sleeps happen only after a
refusal, never between calls; ``sleep`` (and ``asleep``, for async clients) are injectable so tests do not wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cvtune.errors import CvtuneError

T = TypeVar("T")

THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
LIMITED = frozenset({"ResourceLimitExceeded"})
TRANSIENT = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable", "InternalError"})


def _transient(exc: Exception) -> bool:
    response = getattr(exc, "response", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return response.get("Error", {}).get("Code", "") in TRANSIENT or status >= 500


class CapacityError(CvtuneError):
    """AWS kept refusing a call for rate or quota reasons after every retry."""


@dataclass
class Backoff:
    """Full-jitter exponential backoff: attempt n sleeps uniform(0, min(cap, base * 2**n))."""

    attempts: int = 6
    base_s: float = 2.0
    cap_s: float = 60.0
    limit_base_s: float = 30.0  # quota refusals clear when a job ends: minutes, not seconds
    limit_cap_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[Any]] = asyncio.sleep  # what acall awaits between attempts
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, code: str) -> float:
        base, cap = (self.limit_base_s, self.limit_cap_s) if code in LIMITED else (self.base_s, self.cap_s)
        return self.rng.uniform(0, min(cap, base * 2**attempt))

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from botocore.exceptions import ClientError

        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except ClientError as exc:
                self.sleep(self._retry_after(what, attempt, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    async def acall(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """:meth:`call` for an async client (aiobotocore): the same retries, sleeping without blocking."""
        from botocore.exceptions import ClientError

        for attempt in range(self.attempts):
            try:
                return await fn(*args, **kwargs)
            except ClientError as exc:
                await self.asleep(self._retry_after(what, attempt, exc))
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_after(self, what: str, attempt: int, exc: Any) -> float:
        """Seconds to wait before retrying after ``exc``; re-raises what is not worth retrying."""
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in THROTTLED | LIMITED and not _transient(exc):
            raise exc
        if attempt == self.attempts - 1:
            fix = (
                "an account quota (concurrent training jobs or instances of this type) is reached: "
                "lower max_parallel_jobs or ask AWS for a higher quota"
                if code in LIMITED
                else "the SageMaker API is rate limiting this account: lower max_parallel_jobs or retry later"
                if code in THROTTLED
                else "the SageMaker API kept failing with server errors: retry later"
            )
            raise CapacityError(f"{what}: refused {self.attempts} times ({code}: {exc}); {fix}") from exc
        return self.delay(attempt, code)
