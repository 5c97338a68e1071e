"""The seed's scenario on the SageMaker emulator: its design vs cvtune, wall time and instance-hours.

    python benchmarks/seed_scenario.py [--quick] [--time-scale 0.01] [--rounds 120] [--m 4] [--k 5]

The write-ups cvtune grew from: M = 4 candidates in parallel, N = 120 sequential rounds, K = 5
folds, about 3 min to start an instance and 2 min to train. Side by side, each on a fresh emulator
(scaled clock, sleep-based training script, poll interval scaled too):

(a) the seed's design: each round, M orchestrator training jobs start cold; each, once running,
    launches its K fold jobs (on the fold jobs' warm pools) and waits for them, then ends. The
    benchmark plays the orchestrators' code, polling like they would; the orchestrator jobs are
    billed while they wait.
(b) cvtune's tune step: the same M trials in parallel, K folds, N × M = 480 candidates, every fold
    job its own training job on a warm pool, ``release_pools: auto``.
(c) (b) with ``early_stopping: wilcoxon``.

Printed per scenario: wall time, instance-hours (jobs, retained during the run, the idle tail after
it: pools left to their keep-alive), API calls by operation; the ratios (b)/(a) and (c)/(a); and
the dry-run plan of (b) against its measurement (target: within 10 %). Figures are emulated time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from typing import Any

import _emulated as E
from _common import quiet

FOLD_INSTANCE = "ml.m5.xlarge"
ORCHESTRATOR_INSTANCE = "ml.m5.large"


def wait_for_pools(emu: E.EmulatorProcess, keep_alive_s: float) -> None:
    """Let every pool left run out its keep-alive (the idle tail is part of the bill)."""
    time.sleep(emu.time_scale * keep_alive_s + 0.5)


def seed_design(emu: E.EmulatorProcess, work: str, a: argparse.Namespace) -> dict[str, Any]:
    """(a): orchestrator jobs that start cold, each launching K fold jobs on warm pools and waiting."""
    from cvtune.backends.base import JobSpec
    from cvtune.sagemaker.backend import SageMakerBackend

    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    E.make_bucket(s3)
    manifest = E.fold_data(os.path.join(work, "a-folds"), a.k)
    script = E.write_script(os.path.join(work, "a"))
    folds = SageMakerBackend(E.sagemaker_config(instance_type=FOLD_INSTANCE, keep_alive_period_s=a.keep_alive_s),
                             sagemaker_client=sm, s3_client=s3)
    orchestrators = SageMakerBackend(E.sagemaker_config(instance_type=ORCHESTRATOR_INSTANCE, keep_alive_period_s=0),
                                     sagemaker_client=sm, s3_client=s3)
    poll = a.poll_s * a.time_scale
    rng = random.Random(1)
    lanes = [{"round": 0, "state": "idle"} for _ in range(a.m)]
    before = emu.report()
    start = time.monotonic()
    last_end = start
    while any(lane["state"] != "done" for lane in lanes):
        for m, lane in enumerate(lanes):
            if lane["state"] == "idle":
                if lane["round"] >= a.rounds:
                    lane["state"] = "done"
                    continue
                name = f"seed-r{lane['round']:03d}-m{m}"
                lane.update(name=name, flag=os.path.join(work, f"{name}.done"), x=rng.random(), state="starting")
                orchestrators.submit(JobSpec(name=name, entry_point=script, hyperparameters={"wait_for": lane["flag"]},
                                             channels={"train": manifest["folds"][0]["train_uri"]}, max_runtime_s=86400))
            elif lane["state"] == "starting":
                job = sm.describe_training_job(TrainingJobName=lane["name"])
                if job.get("SecondaryStatus") == "Training":  # the orchestrator's code runs: launch K folds
                    lane["folds"] = [f"{lane['name']}-f{k}" for k in range(a.k)]
                    for k, fold_name in enumerate(lane["folds"]):
                        fold = manifest["folds"][k]
                        folds.submit(JobSpec(
                            name=fold_name, entry_point=script, metric_definitions=E.METRIC,
                            hyperparameters={"x": lane["x"], "sleep_s": a.script_s * a.time_scale},
                            channels={"train": fold["train_uri"], "validation": fold["validation_uri"]}))
                    lane["state"] = "folds"
            elif lane["state"] == "folds":
                statuses = [sm.describe_training_job(TrainingJobName=n)["TrainingJobStatus"] for n in lane["folds"]]
                if all(s in ("Completed", "Failed", "Stopped") for s in statuses):
                    last_end = time.monotonic()
                    open(lane["flag"], "w").close()
                    lane["state"] = "finishing"
            elif lane["state"] == "finishing":
                if sm.describe_training_job(TrainingJobName=lane["name"])["TrainingJobStatus"] != "InProgress":
                    last_end = time.monotonic()
                    lane["round"] += 1
                    lane["state"] = "idle"
        time.sleep(poll)
    wall = (last_end - start) / a.time_scale
    during = emu.report()
    wait_for_pools(emu, a.keep_alive_s)
    after = emu.report()
    return measured("(a) seed design", wall, before, during, after, jobs=a.rounds * a.m * a.k,
                    extra={"orchestrator jobs": a.rounds * a.m, **inputs(after, a)})


def cvtune_run(emu: E.EmulatorProcess, work: str, a: argparse.Namespace, label: str, early_stopping: str) -> dict[str, Any]:
    """(b) and (c): cvtune's tune step on the emulator."""
    from cvtune.config import parse_config
    from cvtune.sagemaker.backend import SageMakerBackend
    from cvtune.tuner import CVTuner

    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    E.make_bucket(s3)
    tag = "b" if early_stopping == "off" else "c"
    manifest = E.fold_data(os.path.join(work, f"{tag}-folds"), a.k)
    script = E.write_script(os.path.join(work, tag))
    sm_config = E.sagemaker_config(instance_type=FOLD_INSTANCE, keep_alive_period_s=a.keep_alive_s,
                                   max_parallel_jobs=a.m * a.k, input_mode=a.input_mode)
    backend = SageMakerBackend(sm_config, sagemaker_client=sm, s3_client=s3, sleep=time.sleep)
    backend.poll_interval_s = a.poll_s * a.time_scale
    config = parse_config({
        "entry_point": script,
        "static_hyperparameters": {"sleep_s": a.script_s * a.time_scale},
        "objective": {"metric": "validation:score", "type": "Maximize"},
        "metric_definitions": E.METRIC,
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "strategy": "Random",
        "max_trials": a.rounds * a.m,
        "max_parallel_trials": a.m,
        "max_runtime_s": 3600,
        "seed": 7,
        "early_stopping": {"rule": early_stopping},
    }, base_dir=None)
    tuner = CVTuner(config, manifest, backend, run_id=f"bench-{tag}", artifact_root=os.path.join(work, f"{tag}-art"),
                    poll_s=a.poll_s * a.time_scale)
    before = emu.report()
    start = time.monotonic()
    cpu = time.process_time()
    summary = tuner.run()
    wall = (time.monotonic() - start) / a.time_scale
    cpu = time.process_time() - cpu
    during = emu.report()
    wait_for_pools(emu, a.keep_alive_s)
    after = emu.report()
    spans = [(j["end_time"] - j["start_time"]) / a.time_scale for t in tuner.ledger.trials for j in t["fold_jobs"]
             if j.get("start_time") and j.get("end_time")]
    job_wall = sum(spans) / len(spans)
    out = measured(label, wall, before, during, after, jobs=summary["fold_jobs"],
                   extra={"trials": summary["trials"], "mean fold job s (start to end)": round(job_wall, 1),
                          "tuner CPU s (real)": round(cpu, 1), "ledger instance-hours": summary["instance_hours"],
                          **inputs(after, a)})
    if early_stopping == "off":
        out["plan"] = plan_of(config, a, sm_config, a.train_s)
        out["plan_measured_jobs"] = plan_of(config, a, sm_config, job_wall)
    return out


def inputs(report: dict[str, Any], a: argparse.Namespace) -> dict[str, Any]:
    """Channel bytes fetched per fold job, on a new pool vs a reused one, and the download time
    the warm pool's cache saved (the emulator models ``download_s`` for a job's whole channels)."""
    jobs = [j for name, j in report["training_jobs"].get("input_bytes", {}).items() if re.search(r"-f\d+$", name)]
    if not jobs:
        return {}
    cold = [j["bytes"] for j in jobs if not j["took_pool"]]
    warm = [j["bytes"] for j in jobs if j["took_pool"]]
    saved_s = sum(a.io_s * (1 - j["bytes"] / j["of"]) for j in jobs if j["of"])

    def mean(xs: list[int]) -> int | None:
        return round(sum(xs) / len(xs)) if xs else None

    return {"bytes per fold job": {"new pool": mean(cold), "reused pool": mean(warm),
                                   "reused, nothing fetched": f"{sum(1 for b in warm if b == 0)}/{len(warm)}",
                                   "channels": mean([j["of"] for j in jobs])},
            "download saved (instance-h)": round(saved_s / 3600, 2)}


def plan_of(config: Any, a: argparse.Namespace, sm_config: Any, job_s: float) -> dict[str, Any]:
    from cvtune.sagemaker.plan import Assumptions, plan_run

    return plan_run(config, a.k, sm_config, Assumptions(start_s=a.start_s, job_s=job_s, warm_start_s=a.warm_start_s,
                                                        poll_s=a.poll_s))


def measured(label: str, wall: float, before: dict, during: dict, after: dict, *, jobs: int,
             extra: dict[str, Any]) -> dict[str, Any]:
    job0, ret0 = E.billing(before)
    job1, ret1 = E.billing(during)
    job2, ret2 = E.billing(after)
    return {
        "label": label,
        "wall_h": wall / 3600,
        "job_ih": (job2 - job0) / 3600,
        "retained_ih": (ret1 - ret0) / 3600,
        "tail_ih": (ret2 - ret1) / 3600,
        "total_ih": (job2 - job0 + ret2 - ret0) / 3600,
        "fold_jobs": jobs,
        "calls": E.diff_calls(before, after),
        **extra,
    }


def show(r: dict[str, Any]) -> None:
    print(f"{r['label']}: wall {r['wall_h']:.3f} h; instance-hours {r['total_ih']:.2f} "
          f"(jobs {r['job_ih']:.2f}, retained {r['retained_ih']:.2f}, tail {r['tail_ih']:.2f}); "
          f"fold jobs {r['fold_jobs']}")
    print("    API calls: " + ", ".join(f"{k} {v}" for k, v in r["calls"].items()))
    extras = {k: v for k, v in r.items() if k not in ("label", "wall_h", "job_ih", "retained_ih", "tail_ih", "total_ih",
                                                      "fold_jobs", "calls", "plan", "plan_measured_jobs")}
    if extras:
        print("    " + "; ".join(f"{k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in extras.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 rounds, M=2, K=3, scale 1/200")
    parser.add_argument("--time-scale", type=float, default=None, help="real s per emulated s (default 0.01)")
    parser.add_argument("--rounds", type=int, default=None, help="N (default 120)")
    parser.add_argument("--m", type=int, default=None, help="candidates in parallel (default 4)")
    parser.add_argument("--k", type=int, default=None, help="folds (default 5)")
    parser.add_argument("--start-s", type=float, default=180.0, help="cold start of an instance")
    parser.add_argument("--train-s", type=float, default=120.0, help="billed time of a fold job")
    parser.add_argument("--warm-start-s", type=float, default=5.0, help="start of a job on a warm pool")
    parser.add_argument("--poll-s", type=float, default=10.0, help="poll interval (orchestrators and cvtune)")
    parser.add_argument("--keep-alive-s", type=float, default=None, help="KeepAlivePeriodInSeconds (default 1800)")
    parser.add_argument("--only", default="abc", help="scenarios to run, e.g. bc")
    parser.add_argument("--input-mode", default="FastFile", choices=["File", "FastFile"],
                        help="cvtune's input_mode in (b) and (c); the seed's design (a) uses File")
    a = parser.parse_args()
    q = a.quick
    a.time_scale = a.time_scale or (0.005 if q else 0.01)
    a.rounds = a.rounds or (3 if q else 120)
    a.m = a.m or (2 if q else 4)
    a.k = a.k or (3 if q else 5)
    a.keep_alive_s = int(a.keep_alive_s or (120 if q else 1800))
    io_s = a.io_s = 5.0  # the emulator's download (a job's whole channels) and upload phases, each billed
    a.script_s = max(0.0, a.train_s - 2 * io_s)
    timing = {"provision_s": a.start_s, "reuse_start_s": a.warm_start_s, "download_s": io_s, "upload_s": io_s,
              "scaled_script": True}
    quiet()
    print(f"seed scenario: N={a.rounds} rounds x M={a.m} x K={a.k} folds; start {a.start_s:g} s, fold job "
          f"{a.train_s:g} s, warm start {a.warm_start_s:g} s, poll {a.poll_s:g} s, keep-alive {a.keep_alive_s} s; "
          f"time scale {a.time_scale:g}")
    work = tempfile.mkdtemp(prefix="cvtune-seed-")
    results: dict[str, dict[str, Any]] = {}
    scenarios = {"a": lambda emu: seed_design(emu, work, a),
                 "b": lambda emu: cvtune_run(emu, work, a, "(b) cvtune", "off"),
                 "c": lambda emu: cvtune_run(emu, work, a, "(c) cvtune + wilcoxon", "wilcoxon")}
    for key in a.only:
        with E.EmulatorProcess(a.time_scale, timing) as emu:
            results[key] = scenarios[key](emu)
        show(results[key])
        sys.stdout.flush()
    base = results.get("a")
    for key in ("b", "c"):
        r = results.get(key)
        if base and r:
            print(f"ratio {key}/a: wall {r['wall_h'] / base['wall_h']:.3f}, instance-hours "
                  f"{r['total_ih'] / base['total_ih']:.3f}")
    b = results.get("b")
    if b and b.get("plan"):
        for what, p in (("nominal durations", b["plan"]), ("fold job duration as measured", b["plan_measured_jobs"])):
            dw = p["wall_h"] / b["wall_h"] - 1
            di = p["instance_hours"] / b["total_ih"] - 1
            ok = abs(dw) <= 0.10 and abs(di) <= 0.10
            print(f"plan ({what}, job {p['assumed']['job_s']:.0f} s) vs (b): wall {p['wall_h']:.3f} h vs "
                  f"{b['wall_h']:.3f} h ({dw:+.1%}); instance-hours {p['instance_hours']:.2f} vs {b['total_ih']:.2f} "
                  f"({di:+.1%}) -> {'within' if ok else 'NOT within'} 10 %")
    for key, (wall, ih) in {"b": (4.0, None), "c": (2.5, 55.0)}.items():
        r = results.get(key)
        if r and not q:
            ih_target = ih if ih is not None else (0.5 * base["total_ih"] if base else math.nan)
            print(f"target {key}: wall {r['wall_h']:.3f} h <= {wall} h: {'met' if r['wall_h'] <= wall else 'missed'}; "
                  f"instance-hours {r['total_ih']:.2f} <= {ih_target:.2f}: "
                  f"{'met' if r['total_ih'] <= ih_target else 'missed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
