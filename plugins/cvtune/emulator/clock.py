"""The emulator's clock: simulated waits (provisioning, download, upload, keep-alive) are scaled.

A ``time_scale`` of 0.01 makes a documented 3-minute instance start take 1.8 s of real time and a
30-minute keep-alive 18 s. The training script itself runs at real speed (it is real compute), so
a job's emulated duration is its scaled phases counted at their emulated length plus the script's
real seconds; that is what billing reports (:mod:`cvtune.emulator.metering`).
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock timestamps; waits and ages converted with ``time_scale`` (real s per emulated s)."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.time_scale = float(time_scale)

    def now(self) -> float:
        return time.time()

    def real(self, emulated_s: float) -> float:
        """Real seconds that ``emulated_s`` emulated seconds take."""
        return emulated_s * self.time_scale

    def emulated(self, real_s: float) -> float:
        """Emulated seconds that ``real_s`` real seconds of a simulated wait stand for."""
        return real_s / self.time_scale

    def wait(self, emulated_s: float, stop: threading.Event | None = None) -> bool:
        """Sleep ``emulated_s`` emulated seconds; True if ``stop`` was set meanwhile."""
        if stop is None:
            time.sleep(self.real(emulated_s))
            return False
        return stop.wait(self.real(emulated_s))
