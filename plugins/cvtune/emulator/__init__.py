"""A SageMaker emulator: the training and transform jobs cvtune sends, run on this machine as AWS documents them.

An HTTP server on 127.0.0.1 speaking SageMaker's JSON protocol (``X-Amz-Target: SageMaker.<Op>``),
so botocore, aiobotocore and the amazon provider's hooks reach it through ``endpoint_url``. S3 is
moto's server; model-registry operations are forwarded to it too. Training and transform jobs are
the emulator's own: they really run the training script in script mode (:mod:`.runner`,
:mod:`.transform`), on warm pools (:mod:`.warmpools`), within quotas (:mod:`.quotas`), billed
(:mod:`.metering`) on a scaled clock (:mod:`.clock`), with injected faults (:mod:`.faults`).

Start it with ``cvtune sagemaker-emulator`` or :class:`cvtune.emulator.server.Emulator`; the rules
and the AWS sentences behind them are in docs/emulator.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Emulator", "EmulatorConfig"]


def __getattr__(name: str) -> Any:  # lazy: importing cvtune.emulator must stay cheap
    if name in __all__:
        from cvtune.emulator import server

        return getattr(server, name)
    raise AttributeError(name)
