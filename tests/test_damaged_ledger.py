"""A damaged ledger is a ConfigError naming the file and what is wrong, before any job is launched."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cvtune.errors import ConfigError
from cvtune.ledger import RunLedger
from tests.conftest import ROOT
from tests.fakes import ScriptedBackend
from tests.test_tuner import make_config, score, tuner


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("good")
    summary = tuner(tmp, ScriptedBackend(score), config=make_config(tmp, max_trials=2)).run()
    with open(summary["ledger"]) as f:
        return json.load(f)


def damage(data: dict, path: str, value=...):
    """``data`` with the dotted ``path`` set to ``value`` (deleted when ``...``)."""
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    obj = data
    for part in parents:
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    if value is ...:
        del obj[int(last) if isinstance(obj, list) else last]
    else:
        obj[int(last) if isinstance(obj, list) else last] = value
    return data


CASES = [
    ("truncated", None, "not valid JSON, truncated or corrupted"),
    ("version", ("version", 7), "ledger version 7, this cvtune reads version 1"),
    ("no trials", ("trials", ...), "trials is missing"),
    ("no run id", ("run_id", ...), "run_id is missing"),
    ("folds a string", ("folds", "3"), "folds should be an integer, got str '3'"),
    ("empty config", ("config", {}), "config.objective should be {metric: <name>, type: Maximize|Minimize}"),
    ("bad objective", ("config.objective.type", "Max"), "config.objective should be"),
    ("trial state", ("trials.1.state", 5), "trials[1].state should be a string, got int 5"),
    ("fold job name", ("trials.0.fold_jobs.2.job_name", ...), "trials[0].fold_jobs[2].job_name is missing"),
    ("fold scores", ("trials.0.fold_scores", [0.5]), "trials[0] should have 3 fold scores and fold jobs"),
    ("a list", [], "expected a JSON object, got list"),
]


@pytest.mark.parametrize("name,change,message", CASES, ids=[c[0] for c in CASES])
def test_damaged_ledgers_are_named_config_errors(tmp_path, good, name, change, message):
    uri = tmp_path / "art" / "runs" / "run1" / "ledger.json"
    uri.parent.mkdir(parents=True)
    if change is None:
        uri.write_text(json.dumps(good)[:500])
    elif isinstance(change, list):
        uri.write_text("[]")
    else:
        uri.write_text(json.dumps(damage(good, *change)))
    with pytest.raises(ConfigError) as err:
        RunLedger.load(str(uri))
    assert str(err.value).startswith(f"ledger {uri}: {message}"), str(err.value)
    assert "restore the file from a backup" in str(err.value)
    # resuming it launches nothing
    backend = ScriptedBackend(score)
    with pytest.raises(ConfigError, match=f"ledger {uri}"):
        tuner(tmp_path, backend, config=make_config(tmp_path, max_trials=4)).run()
    assert backend.submitted == []


def test_cli_resume_of_a_damaged_ledger_exits_2_naming_it(tmp_path, good):
    uri = tmp_path / "art" / "runs" / "r" / "ledger.json"
    uri.parent.mkdir(parents=True)
    uri.write_text(json.dumps(damage(good, "config", {})))
    out = subprocess.run(
        [sys.executable, "-m", "cvtune.cli", "results", str(uri)], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")},
    )
    assert out.returncode == 2 and f"error: ledger {uri}: config.objective should be" in out.stderr
