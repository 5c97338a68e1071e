"""Print the headline of the newest pipeline run under an artifact root (used by `make demo`)."""

from __future__ import annotations

import glob
import json
import os
import sys


def main(root: str) -> int:
    summaries = sorted(glob.glob(os.path.join(root, "reports", "*", "*", "summary.json")), key=os.path.getmtime)
    if not summaries:
        print(f"no summary.json under {root}/reports — did the DAG run succeed?", file=sys.stderr)
        return 1
    path = summaries[-1]
    with open(path, encoding="utf-8") as f:
        s = json.load(f)
    best = s["best"] or {}
    cv = s["cv_objective"] or {}
    model = s.get("model") or {}
    holdout = s.get("holdout") or {}
    tuned = best.get("params") or {}
    width = max((len(k) for k in tuned), default=0)
    print()
    print("cvtune demo — cv_tuning_pipeline finished")
    print(f"  best hyperparameters (trial {best.get('trial')} of run {best.get('run_id')}):")
    for name, value in tuned.items():
        print(f"    {name:<{width}}  {value:.6g}" if isinstance(value, float) else f"    {name:<{width}}  {value}")
    print(f"  CV {cv.get('metric')}: {cv.get('mean'):.4f} ± {cv.get('std'):.4f} over {cv.get('folds')} folds")
    for name, value in holdout.items():
        print(f"  holdout {name}: {value:.4f}")
    states = (s.get("trials") or {}).get("by_state") or {}
    trials = ", ".join(f"{n} {state.lower()}" for state, n in states.items() if n) or "none"
    print(f"  trials: {trials}  ·  fold jobs run: {s.get('fold_jobs')}  ·  warm-pool reuses: {s.get('warm_pool_reused')}")
    print(
        f"  model: {model.get('model_package_group')} version {model.get('version')} — {model.get('approval_status')}"
        f" ({model.get('approval_reason')})"
    )
    print(f"  summary:     {path}")
    print(f"  report:      {os.path.join(os.path.dirname(path), 'report.html')}")
    print(f"  predictions: {s.get('predictions_uri')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "cvtune-artifacts"))
