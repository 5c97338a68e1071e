"""Helpers of the benchmarks that run on the SageMaker emulator (not a benchmark itself).

The emulator (``cvtune.emulator``) runs in a child process, so its HTTP server and job threads do
not share this process's interpreter lock with the tuner; its clock is scaled (``time_scale`` real
seconds per emulated second) and the training script sleeps for its emulated duration times the
scale (``Timing.scaled_script``: the script's real seconds are billed as emulated seconds). Every
figure is therefore in emulated seconds: real durations divided by the scale. What cannot be
scaled — the tuner's own CPU time and Python's start-up of each job process — is magnified by
1/scale; the benchmarks report it where it matters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from _common import PLUGINS, ROOT  # noqa: F401 - puts plugins/ on sys.path

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "bench"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
METRIC = [{"Name": "validation:score", "Regex": "validation:score=([-0-9.]+);"}]

# A sleep-based training script: a fold job sleeps its (scaled) training time and prints a score
# from x (best near 0.3), a fold effect every trial shares, and per-(x, fold) noise. An
# orchestrator job (the seed's design) waits until the benchmark, acting as its code, says its
# fold jobs are done.
SCRIPT = r'''
import argparse, hashlib, os, shutil, sys, time
p = argparse.ArgumentParser()
p.add_argument("--sleep_s", type=float, default=0.0)
p.add_argument("--x", type=float, default=0.5)
p.add_argument("--noise", type=float, default=0.05)
p.add_argument("--wait_for", default="")
a, _ = p.parse_known_args()
if a.wait_for:
    while not os.path.exists(a.wait_for):
        time.sleep(0.01)
    sys.exit(0)
time.sleep(a.sleep_s)

def channel(name):
    """The channel, or its copy in the warm pool's cache under cvtune's content id (as train.py does)."""
    d = os.environ.get("SM_CHANNEL_" + name.upper(), "")
    cache = os.environ.get("SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY")
    digest = os.environ.get("CVTUNE_CHANNEL_DIGEST_" + name.upper())
    if not (d and cache and digest):
        return d
    copy = os.path.join(cache, "cvtune-channels", digest)
    if not os.path.isdir(copy):
        shutil.copytree(d, copy + ".partial")
        os.replace(copy + ".partial", copy)
    return copy

train = channel("train")
for d in (train, channel("validation")):  # read every file, as a model would
    for name in sorted(os.listdir(d)) if d else []:
        open(os.path.join(d, name), "rb").read()
fold = int(open(os.path.join(train, "fold.txt")).read()) if train else 0
h = int(hashlib.sha256(f"{a.x:.9f}:{fold}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
score = 1 - 0.5 * (a.x - 0.3) ** 2 + 0.02 * fold + a.noise * (h - 0.5) * 2
print(f"validation:score={score:.6f};")
'''


class EmulatorProcess:
    """``cvtune.emulator`` in a child process; ``report()`` is its ``/_emulator/report``."""

    def __init__(self, time_scale: float, timing: dict[str, Any], quota: int = 200, warm_pool_quota: int = 200) -> None:
        self.dir = tempfile.mkdtemp(prefix="cvtune-emu-")
        ready = os.path.join(self.dir, "ready.json")
        # its log to a file: an unread pipe fills up and blocks every thread that logs (moto's requests)
        self.log = os.path.join(self.dir, "emulator.log")
        # S3 (moto's server) in a process of its own: in the emulator's, every channel copy and
        # artifact upload would hold the interpreter lock the SageMaker calls and job threads need
        from cvtune.emulator.server import free_port

        s3_port = free_port()
        with open(os.path.join(self.dir, "moto.log"), "w") as log:
            self.s3_proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                            stdout=log, stderr=subprocess.STDOUT)
        s3_endpoint = f"http://127.0.0.1:{s3_port}"
        _await_http(s3_endpoint, self.s3_proc)
        code = (
            f"import sys; sys.path.insert(0, {PLUGINS!r})\n"
            "from cvtune.emulator.server import EmulatorConfig, serve\n"
            "from cvtune.emulator.service import Timing\n"
            "from cvtune.emulator.quotas import Quotas\n"
            f"serve(EmulatorConfig(time_scale={time_scale!r}, s3_endpoint={s3_endpoint!r}, timing=Timing(**{timing!r}), "
            f"quotas=Quotas(default_training_instances={quota}, warm_pool={{t: {warm_pool_quota} for t in "
            f"('ml.m5.large', 'ml.m5.xlarge')}})), {ready!r})\n"
        )
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log) as f:
                    raise RuntimeError(f"the emulator did not start: {f.read()[-2000:]}")
            time.sleep(0.05)
        with open(ready) as f:
            info = json.load(f)
        self.endpoint, self.s3_endpoint = info["endpoint"], info["s3_endpoint"]
        self.time_scale = time_scale

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session(aws_access_key_id="emulator", aws_secret_access_key="emulator").client(
            service, endpoint_url=self.endpoint if service == "sagemaker" else self.s3_endpoint, region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 10}, max_pool_connections=50),
        )

    def report(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.endpoint}/_emulator/report", timeout=60) as r:
            return json.load(r)

    def stop(self) -> None:
        for proc in (self.proc, self.s3_proc):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _await_http(endpoint: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint + "/", timeout=5).close()
            return
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{endpoint} did not start") from None
            time.sleep(0.05)


def fold_data(root: str, folds: int, rows: int = 2000) -> dict[str, Any]:
    """A manifest of ``folds`` folds whose channels hold a small CSV and the fold number."""
    out = []
    for i in range(folds):
        fold: dict[str, Any] = {"fold": i, "train_rows": rows, "validation_rows": rows // 4}
        for name, n in (("train", rows), ("validation", rows // 4)):
            d = os.path.join(root, f"fold-{i}", name)
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "data.csv"), "w") as f:
                f.write("target,a,b\n" + "".join(f"{(r + i) % 2},{r},{r * 0.5}\n" for r in range(n)))
            with open(os.path.join(d, "fold.txt"), "w") as f:
                f.write(str(i))
            fold[f"{name}_uri"] = d
        out.append(fold)
    return {"manifest_uri": os.path.join(root, "manifest.json"), "fingerprint": "bench", "folds": out}


def write_script(root: str) -> str:
    os.makedirs(os.path.join(root, "code"), exist_ok=True)
    path = os.path.join(root, "code", "train.py")
    with open(path, "w") as f:
        f.write(SCRIPT)
    return path


def sagemaker_config(**options: Any) -> Any:
    from cvtune.sagemaker.config import SageMakerConfig

    return SageMakerConfig.from_options(
        {"role_arn": ROLE, "s3_prefix": f"s3://{BUCKET}/cv", "region_name": REGION, "image_uri": IMAGE, **options},
        source="benchmark",
    )


def make_bucket(s3: Any) -> None:
    try:
        s3.create_bucket(Bucket=BUCKET)
    except Exception as exc:  # noqa: BLE001 - it exists from an earlier scenario
        if "BucketAlready" not in type(exc).__name__ + str(exc):
            raise


def diff_calls(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    b = before.get("api_calls", {})
    return {k: v - b.get(k, 0) for k, v in sorted(after.get("api_calls", {}).items()) if v - b.get(k, 0)}


def billing(report: dict[str, Any]) -> tuple[float, float]:
    """(job instance-seconds, retained instance-seconds) of everything the emulator ran."""
    jobs = report["training_jobs"]
    return float(jobs["billable_instance_seconds"]), float(jobs["warm_pool_retained_instance_seconds"])
