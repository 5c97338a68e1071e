"""The cvtune CLI: JSON on stdout, clear errors (exit 2) naming the field, nothing launched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
CONFIG = os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")


def cvtune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cvtune.cli", *args], capture_output=True, text=True)


def test_split_prints_manifest_json(tmp_path):
    out = cvtune("split", DATA, "--target", "target", "--folds", "3", "--out", str(tmp_path / "f"))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["manifest"].endswith("manifest.json") and summary["folds"] == 3
    parquet = cvtune("split", DATA, "--target", "target", "--folds", "3", "--file-format", "parquet",
                     "--out", str(tmp_path / "p"))
    assert parquet.returncode == 0, parquet.stderr
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["output_format"] == "parquet"
    assert all(os.listdir(f["train_uri"])[0].endswith(".parquet") for f in manifest["folds"])


def test_bad_inputs_exit_2_with_the_field_and_launch_nothing(tmp_path):
    split = cvtune("split", DATA, "--target", "label", "--out", str(tmp_path / "f"))
    assert split.returncode == 2 and "target" in split.stderr and not (tmp_path / "f").exists()

    assert cvtune("split", DATA, "--target", "target", "--folds", "3", "--out", str(tmp_path / "ok")).returncode == 0
    manifest = str(tmp_path / "ok" / "manifest.json")
    bad_config = tmp_path / "bad.yaml"
    script = os.path.join(ROOT, "include", "training", "train.py")
    bad_config.write_text(
        open(CONFIG).read().replace("max_trials: 20", "max_trials: 0").replace("../training/train.py", script)
    )
    tune = cvtune("tune", "--manifest", manifest, "--config", str(bad_config), "--out", str(tmp_path / "a"))
    assert tune.returncode == 2 and "max_trials: must be at least 1" in tune.stderr
    assert not (tmp_path / "a" / "jobs").exists()

    cv = cvtune("cv", "--manifest", manifest, "--config", CONFIG, "--hyperparameters", "{eta: 1}", "--out", str(tmp_path / "b"))
    assert cv.returncode == 2 and "--hyperparameters" in cv.stderr

    warm = cvtune("tune", "--manifest", manifest, "--config", CONFIG, "--out", str(tmp_path / "c"),
                  "--warm-start-from", str(tmp_path / "missing.json"))
    assert warm.returncode == 2 and "--warm-start-from[0]: no run ledger" in warm.stderr
    assert not (tmp_path / "c" / "jobs").exists()
