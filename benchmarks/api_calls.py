"""SageMaker API calls per fold job of a cvtune run on the emulator, at two run sizes.

    python benchmarks/api_calls.py [--quick] [--sizes 500,2400]

A run of N fold jobs (K = 5 folds, 20 at a time, ``release_pools: auto``) on the SageMaker emulator;
the emulator counts every call by operation. Target: every operation but the polling
``DescribeTrainingJob`` at most 1.2 calls per fold job, and flat between the sizes (no operation
that grows with the length of the run). ``DescribeTrainingJob`` is bounded by the jobs in flight
÷ the poll interval, plus one per pool until it is taken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import _emulated as E
import seed_scenario as S
from _common import quiet

POLLING = {"DescribeTrainingJob"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 30 and 60 fold jobs")
    parser.add_argument("--sizes", default=None, help="fold jobs per run, comma-separated (default 500,2400)")
    parser.add_argument("--time-scale", type=float, default=0.002)
    a = parser.parse_args()
    sizes = [int(s) for s in (a.sizes or ("30,60" if a.quick else "500,2400")).split(",")]
    quiet()
    k, m = (3, 2) if a.quick else (5, 4)
    timing = {"provision_s": 180.0, "reuse_start_s": 5.0, "download_s": 5.0, "upload_s": 5.0, "scaled_script": True}
    rows = []
    for size in sizes:
        ns = argparse.Namespace(time_scale=a.time_scale, rounds=size // (m * k), m=m, k=k, start_s=180.0, train_s=120.0,
                                warm_start_s=5.0, poll_s=10.0, keep_alive_s=1800, script_s=110.0, input_mode="FastFile",
                                io_s=5.0)
        with E.EmulatorProcess(a.time_scale, timing) as emu:
            r = S.cvtune_run(emu, tempfile.mkdtemp(prefix="cvtune-calls-"), ns, f"{size} fold jobs", "off")
        per_job = {op: n / r["fold_jobs"] for op, n in r["calls"].items()}
        rows.append((r["fold_jobs"], per_job))
        print(f"{r['fold_jobs']} fold jobs: " + ", ".join(f"{op} {v:.3f}/job" for op, v in per_job.items()))
        sys.stdout.flush()
    ops = sorted({op for _, p in rows for op in p})
    worst = max((v for _, p in rows for op, v in p.items() if op not in POLLING), default=0.0)
    print(f"non-polling operations: at most {worst:.3f} calls per fold job (target <= 1.2): "
          f"{'met' if worst <= 1.2 else 'missed'}")
    if len(rows) > 1:
        (n0, p0), (n1, p1) = rows[0], rows[-1]
        for op in ops:
            v0, v1 = p0.get(op, 0.0), p1.get(op, 0.0)
            print(f"  {op}: {v0:.3f} at {n0} -> {v1:.3f} at {n1} fold jobs ({'flat' if abs(v1 - v0) <= 0.1 * max(v0, 0.01) or abs(v1 - v0) < 0.02 else 'changes'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
