"""Import time of the DAG files and the Airflow-layer modules, beyond ``import airflow.sdk``.

    python benchmarks/import_time.py [--quick] [--reps 7]

Each repetition starts fresh interpreters (a DAG processor parses a file in a fresh process too)
and times, inside them, with ``time.perf_counter``:

* baseline: ``import airflow.sdk``;
* the SDK names the DAG files use (``from airflow.sdk import DAG, Asset, ...``, plus
  ``airflow.timetables.trigger``): what any DAG written with them pays, because ``airflow.sdk``
  loads its names lazily;
* cvtune's Airflow layer: every module under ``cvtune.operators``, ``cvtune.hooks``,
  ``cvtune.sensors`` and ``cvtune.triggers``;
* executing both DAG files (``runpy.run_path``), which builds the DAG objects.

Baseline and measured processes alternate; medians are reported. Then one ``python -X importtime``
run lists the modules that cost the most beyond the SDK names, and the heavy libraries (optuna,
sklearn, xgboost, pandas, numpy, boto3, botocore) loaded, which must be none.

Target: DAG files + operator modules at most 0.2 s beyond ``import airflow.sdk``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import PLUGINS, ROOT, machine  # noqa: E402

TARGET_S = 0.2
HEAVY = ("optuna", "sklearn", "xgboost", "pandas", "numpy", "boto3", "botocore")
DAG_FILES = [os.path.join(ROOT, "dags", "cv_tuning_pipeline.py"), os.path.join(ROOT, "dags", "ingest_new_data.py")]

BASELINE = """
import time, json
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
print(json.dumps({"sdk": time.perf_counter() - t0, "sdk_cpu": time.process_time() - c0}))
"""

MEASURED = """
import time, json, sys, runpy, importlib, pkgutil
t0 = time.perf_counter()
import airflow.sdk
t1, c1 = time.perf_counter(), time.process_time()
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, Param, task, BaseHook, BaseOperator  # noqa
import airflow.timetables.trigger  # noqa
t2 = time.perf_counter()
modules, errors = [], {}
for package in ("cvtune.operators", "cvtune.hooks", "cvtune.sensors", "cvtune.triggers"):
    try:
        pkg = importlib.import_module(package)
    except ModuleNotFoundError:
        continue
    modules.append(package)
    for info in pkgutil.walk_packages(pkg.__path__, package + "."):
        try:
            importlib.import_module(info.name)
            modules.append(info.name)
        except Exception as exc:
            errors[info.name] = f"{type(exc).__name__}: {exc}"
t3 = time.perf_counter()
for path in DAG_FILES:
    runpy.run_path(path)
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({"beyond_cpu": c4 - c1, "sdk": t1 - t0, "sdk_names": t2 - t1, "cvtune_modules": t3 - t2, "dag_files": t4 - t3,
                  "modules": modules, "errors": errors, "heavy": [m for m in HEAVY if m in sys.modules]}))
"""


def run(code: str, env: dict, importtime: bool = False) -> tuple[dict, str]:
    argv = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-c", code]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def top_imports(stderr: str, after: str, count: int = 8) -> list[tuple[int, str]]:
    """Top-level imports (cumulative microseconds) that ``-X importtime`` reports after module ``after``."""
    rows, seen = [], False
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
        if not cumulative.isdigit():
            continue
        top_level = not line.split("|")[2].startswith("  ")
        if top_level and name == after:
            seen = True
            continue
        if seen and top_level:
            rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repetitions")
    parser.add_argument("--reps", type=int, default=None, help="default 7, quick 2")
    args = parser.parse_args()
    reps = args.reps or (2 if args.quick else 7)

    with tempfile.TemporaryDirectory(prefix="cvtune-import-") as home:
        env = dict(os.environ, AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False",
                   PYTHONPATH=os.pathsep.join([PLUGINS, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        code = f"DAG_FILES = {DAG_FILES!r}\nHEAVY = {HEAVY!r}\n" + MEASURED
        run(BASELINE, env)  # the first run writes airflow.cfg and warms the file cache: untimed
        base, measured = [], []
        for _ in range(reps):
            base.append(run(BASELINE, env)[0])
            measured.append(run(code, env)[0])
        _, trace = run(code, env, importtime=True)

    def med(key: str) -> float:
        return statistics.median(m[key] for m in measured)

    sdk = statistics.median(b["sdk"] for b in base)
    sdk_cpu = statistics.median(b["sdk_cpu"] for b in base)
    beyond_cpu = med("beyond_cpu")
    names, modules, dags = med("sdk_names"), med("cvtune_modules"), med("dag_files")
    # measured inside one process after its own `import airflow.sdk`: no cross-process noise
    beyond = statistics.median(m["sdk_names"] + m["cvtune_modules"] + m["dag_files"] for m in measured)
    last = measured[-1]
    print(f"import_time: {datetime.date.today()}, {machine()}")
    print(f"fresh interpreters, {reps} repetitions, medians in seconds")
    print(f"  {'import airflow.sdk (baseline, own process)':50s}{sdk:8.3f}")
    print(f"  {'  the same, in the measured process':50s}{med('sdk'):8.3f}")
    print(f"  {'SDK names the DAGs use (DAG, Asset, Param, task...)':50s}{names:8.3f}")
    layer = f"cvtune Airflow layer ({len(last['modules'])} modules)"
    print(f"  {layer:50s}{modules:8.3f}")
    print(f"  {'both DAG files executed (runpy)':50s}{dags:8.3f}")
    print(f"beyond `import airflow.sdk`: {beyond:.3f} s   (target <= {TARGET_S} s: "
          f"{'PASS' if beyond <= TARGET_S else 'MISS'}); of which cvtune's own modules + DAG files: "
          f"{modules + dags:.3f} s; ratio (sdk + beyond) / sdk {(sdk + beyond) / sdk:.2f}")
    print(f"CPU time (less sensitive to a busy machine): import airflow.sdk {sdk_cpu:.3f} s, "
          f"beyond it {beyond_cpu:.3f} s")
    print(f"heavy modules loaded: {last['heavy'] or 'none'}")
    if last["errors"]:
        print(f"modules that failed to import: {last['errors']}")
    print("largest imports after `import airflow.sdk` (python -X importtime, one run, cumulative):")
    for micros, name in top_imports(trace, "airflow.sdk"):
        print(f"  {micros / 1e6:7.3f} s  {name}")


if __name__ == "__main__":
    main()
