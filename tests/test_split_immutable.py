"""Splits are immutable: one location holds one split, and a run stops when its fold files change."""

from __future__ import annotations

import json
import os

import pytest

from cvtune.errors import ConfigError
from cvtune.folds import load_manifest, split_dataset
from tests.conftest import ROOT
from tests.fakes import ScriptedBackend
from tests.test_tuner import make_config, score

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")


def split(out, **kw):
    return split_dataset(DATA, str(out), target="target", folds=kw.pop("folds", 3), seed=kw.pop("seed", 1), **kw)


def test_a_location_holds_one_split(tmp_path):
    out = tmp_path / "split"
    first = split(out)
    files = {p: (out / p).read_bytes() for p in first["files"]}
    again = split(out)  # the same split again (an Airflow retry): allowed, identical
    assert again["fingerprint"] == first["fingerprint"] and again["files"] == first["files"]
    with pytest.raises(ConfigError, match=r"out_uri: .*split already holds a different split .*immutable.* — write the new split to a new out_uri"):
        split(out, seed=2)
    with pytest.raises(ConfigError, match="already holds a different split"):
        split(out, folds=2)  # fewer folds would leave fold-2 behind
    assert load_manifest(str(out))["fingerprint"] == first["fingerprint"]
    assert {p: (out / p).read_bytes() for p in first["files"]} == files  # nothing was touched

    os.remove(out / ".split.json")  # a split written before claims: its manifest says which it is
    with pytest.raises(ConfigError, match="already holds a different split"):
        split(out, seed=2)
    stale = tmp_path / "stale"
    (stale / "folds" / "fold-7" / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"folds holds fold-7 from another split"):
        split(stale)


def test_a_run_refuses_to_go_on_when_its_fold_files_changed(tmp_path):
    from cvtune.tuner import CVTuner

    manifest = split(tmp_path / "split")
    backend = ScriptedBackend(score)
    backend.crash_after_waits = 2
    config = make_config(tmp_path, max_trials=4, parameter_ranges={
        "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]})
    with pytest.raises(KeyboardInterrupt):
        CVTuner(config, manifest, backend, run_id="r", artifact_root=str(tmp_path / "art"), poll_s=0).run()
    submitted = list(backend.submitted)
    victim = manifest["folds"][1]["train_uri"] + "/data.csv"
    with open(victim, "a") as f:
        f.write(open(victim).read().splitlines()[1] + "\n")  # one more row: other data, same manifest
    resumed = ScriptedBackend(score, jobs=backend.jobs)
    with pytest.raises(ConfigError, match=rf"manifest: {victim} behind .* changed since the split was written"):
        CVTuner(config, load_manifest(manifest["manifest_uri"]), resumed, run_id="r",
                artifact_root=str(tmp_path / "art"), poll_s=0).run()
    assert resumed.submitted == [] and backend.submitted == submitted

    # the manifest rewritten to other files (by hand: the split itself refuses): refused before that
    doctored = dict(manifest, files={**manifest["files"], victim: "0" * 32}, files_fingerprint="1" * 64)
    with open(manifest["manifest_uri"], "w") as f:
        json.dump(doctored, f)
    with pytest.raises(ConfigError, match="run r started on other fold files"):
        CVTuner(config, load_manifest(manifest["manifest_uri"]), resumed, run_id="r", artifact_root=str(tmp_path / "art"))
