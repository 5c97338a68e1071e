"""One driver of a tuning run in its own process, for the lease tests (tests/test_run_lease.py).

``python -m tests.lease_driver ROOT RUN_ID JOBS [--ttl S] [--stall-at N --stall-s S] [--end-after N] [--hold FILE]``
drives run RUN_ID under artifact root ROOT (a directory or s3://, endpoint from AWS_ENDPOINT_URL)
on a DiskBackend in JOBS. Exit 0 and the summary on stdout; 2 when another driver holds the run
(the message on stderr); 3 when it lost the run to another driver (a conditional save failed).
With ``--hold FILE`` no job ends while FILE exists: the driver stays alive, holding its lease, until
the test lets it go (on a loaded machine a short run could end before a second driver starts).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from cvtune.config import parse_config
from cvtune.errors import LeaseHeldError, LedgerConflictError
from cvtune.tuner import CVTuner
from tests.fakes import DiskBackend

FOLDS = 3
MANIFEST = {
    "manifest_uri": "mem://manifest.json",
    "fingerprint": "f" * 64,
    "folds": [{"fold": i, "train_uri": f"/d/{i}/train", "validation_uri": f"/d/{i}/val"} for i in range(FOLDS)],
}


def config(script: str, trials: int = 6):
    return parse_config({
        "entry_point": script,
        "static_hyperparameters": {"model": "toy"},
        "objective": {"metric": "validation:score", "type": "Maximize"},
        "metric_definitions": [{"Name": "validation:score", "Regex": "score=([0-9.]+)"}],
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "max_trials": trials, "max_parallel_trials": 2, "seed": 5,
    }, base_dir=None)


def expected_score(hyperparameters: dict, fold: int) -> float:
    """What a fold job trained with ``hyperparameters`` scores: a trial's scores are its own or wrong."""
    x = float(hyperparameters["x"])
    return round(1 - (x - 0.3) ** 2 + 0.01 * fold, 9)


def outcome(spec):
    return "Completed", {"validation:score": expected_score(spec.hyperparameters, int(spec.tags["cvtune:fold"]))}, None


class SlowDisk(DiskBackend):
    poll_interval_s = 0.05

    def __init__(self, root: str, stall_at: int | None, stall_s: float, end_after: int, hold: str | None = None) -> None:
        super().__init__(root, outcome, capacity=2, end_after=end_after)
        self.stall_at, self.stall_s, self.waits, self.hold = stall_at, stall_s, 0, hold

    def wait(self, names, timeout):
        if self.hold and os.path.exists(self.hold):
            time.sleep(0.05)
            return []  # nothing ended yet; the tuner keeps heartbeating its lease
        self.waits += 1
        if self.waits == self.stall_at:  # a driver that stops responding (GC pause, lost network, SIGSTOP)
            print(f"stalling {self.stall_s} s", file=sys.stderr, flush=True)
            time.sleep(self.stall_s)
        return super().wait(names, timeout)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("run_id")
    p.add_argument("jobs")
    p.add_argument("--script", required=True)
    p.add_argument("--ttl", type=float)
    p.add_argument("--stall-at", type=int)
    p.add_argument("--stall-s", type=float, default=0.0)
    p.add_argument("--end-after", type=int, default=3)
    p.add_argument("--hold")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    backend = SlowDisk(args.jobs, args.stall_at, args.stall_s, args.end_after, args.hold)
    try:
        tuner = CVTuner(config(args.script), MANIFEST, backend, run_id=args.run_id, artifact_root=args.root,
                        poll_s=0.2, lease_label="lease test driver", lease_ttl_s=args.ttl)
        print(f"driving {tuner.uri}", file=sys.stderr, flush=True)
        summary = tuner.run()
    except LeaseHeldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except LedgerConflictError as exc:
        print(f"lost: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
