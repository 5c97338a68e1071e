"""Smoke test of every benchmark: its --quick mode runs and prints its figures.

Only that the figures are there and parse as numbers is asserted, never their values: the
benchmarks time things on a shared machine (benchmarks/README.md lists the measured figures).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

NUMBER = r"[-+]?\d+(?:\.\d+)?"


def run_quick(name: str) -> str:
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", f"{name}.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def figures(pattern: str, text: str) -> list[tuple[str, ...]]:
    found = re.findall(pattern, text, flags=re.MULTILINE)
    assert found, f"no match for {pattern!r} in:\n{text}"
    for groups in found:
        for value in groups if isinstance(groups, tuple) else (groups,):
            float(value)  # every captured figure is a number
    return found


@pytest.mark.slow
def test_warm_pool_quick():
    out = run_quick("warm_pool")
    figures(rf"cold process per job\s*:\s*({NUMBER}) s", out)
    assert len(figures(rf"warm pool \(.*\)\s*:\s*({NUMBER}) s .* speed-up x({NUMBER})", out)) == 2


@pytest.mark.slow
def test_vs_gridsearch_quick():
    out = run_quick("vs_gridsearch")
    [(cv, sk)] = figures(rf"^wall time, median of \d+: cvtune ({NUMBER}) s, GridSearchCV\(n_jobs=2\) ({NUMBER}) s", out)
    [ratio] = figures(rf"^ratio cvtune/sklearn: ({NUMBER})", out)
    assert abs(float(ratio) - float(cv) / float(sk)) < 0.01  # the ratio is of the two printed times
    figures(rf"^  model fit\s+({NUMBER})\s+({NUMBER})", out)
    figures(rf"orchestrator CPU .*?({NUMBER}) s", out)
    assert "same: True" in out  # both sides picked the same best candidate
    figures(rf"^third column: GridSearchCV on the script's imputer \+ model pipeline ({NUMBER}) s: "
            rf"pipeline/bare ({NUMBER}) .*cvtune/pipeline ({NUMBER})", out)


@pytest.mark.slow
def test_early_stopping_quick():
    out = run_quick("early_stopping")
    rows = figures(rf"^(?:\w+)?\s+(?:off|wilcoxon|median)\s+(\d+)\s+({NUMBER})%\s+({NUMBER})\s+({NUMBER})", out)
    assert len(rows) == 3 * 3  # three rules on three datasets
    totals = figures(rf"^\s+(?:off|wilcoxon|median)\s+(\d+)\s+({NUMBER})%\s+({NUMBER})\s+(?:baseline|PASS|MISS)$", out)
    assert len(totals) == 3


@pytest.mark.slow
def test_bayes_vs_random_quick():
    out = run_quick("bayes_vs_random")
    found = re.findall(r"^median trials to reach ([\d.]+) % of random's best: Random (>?\d+(?:\.\d+)?), "
                       r"Bayesian (>?\d+(?:\.\d+)?)", out, flags=re.MULTILINE)
    assert [f[0] for f in found] == ["99.5", "99.9"], out
    for _, random_n, bayes_n in found:
        float(random_n.lstrip(">")), float(bayes_n.lstrip(">"))


@pytest.mark.slow
def test_import_time_quick():
    out = run_quick("import_time")
    figures(rf"import airflow\.sdk \(baseline, own process\)\s+({NUMBER})", out)
    figures(rf"^beyond `import airflow\.sdk`: ({NUMBER}) s", out)
    assert "heavy modules loaded: none" in out


@pytest.mark.slow
def test_seed_scenario_quick():
    out = run_quick("seed_scenario")
    rows = figures(rf"^\((?:a|b|c)\) [^:]+: wall ({NUMBER}) h; instance-hours ({NUMBER}) \(jobs ({NUMBER}), "
                   rf"retained ({NUMBER}), tail ({NUMBER})\); fold jobs (\d+)$", out)
    assert len(rows) == 3
    for _wall, total, job, retained, tail, _jobs in rows:
        assert abs(float(total) - (float(job) + float(retained) + float(tail))) < 0.02  # the parts add up
    assert len(figures(rf"^ratio [bc]/a: wall ({NUMBER}), instance-hours ({NUMBER})$", out)) == 2
    assert len(figures(rf"^plan \(.*\) vs \(b\): wall ({NUMBER}) h vs ({NUMBER}) h", out)) == 2
    assert out.count("API calls: CreateTrainingJob") == 3


@pytest.mark.slow
def test_api_calls_quick():
    out = run_quick("api_calls")
    assert len(figures(rf"^(\d+) fold jobs: CreateTrainingJob ({NUMBER})/job", out)) == 2
    figures(rf"^non-polling operations: at most ({NUMBER}) calls per fold job", out)


@pytest.mark.slow
def test_completion_quick():
    out = run_quick("completion")
    rows = figures(rf"^\w*\s+(?:not_improving|noise)\s+({NUMBER})\s+({NUMBER})%\s+({NUMBER})\s+({NUMBER})", out)
    assert len(rows) == 2 * 2  # two criteria on two datasets
    figures(rf"^\s+noise\s+({NUMBER})%\s+({NUMBER})\s+(?:PASS|MISS)$", out)


@pytest.mark.slow
def test_scale_quick():
    out = run_quick("scale")
    rows = figures(rf"^\s+(\d+)\s+(\d+)\s+({NUMBER})ms\s+({NUMBER})ms\s+({NUMBER})\s+({NUMBER})MB", out)
    assert [int(r[0]) for r in rows] == [10, 30]
    figures(rf"^per-fold-job time at 30 trials / at 10: ({NUMBER})", out)
    figures(rf"^cvtune / Optuna-with-fork at 30 trials: ({NUMBER})", out)
    # faults and CPU per fold job: job process (cvtune, Optuna), cvtune's workers, its driver
    usage = figures(rf"^\s+(\d+)\s+(\d+)\s+(\d+)\s+({NUMBER})ms\s+({NUMBER})ms\s+(\d+)\s+({NUMBER})ms\s+({NUMBER})ms$", out)
    assert [int(r[0]) for r in usage] == [10, 30] and all(int(r[1]) > 0 and int(r[2]) > 0 for r in usage)


@pytest.mark.slow
def test_vs_optuna_quick():
    out = run_quick("vs_optuna")
    figures(rf"^ratio cvtune/Optuna: ({NUMBER}) .* with wilcoxon: ({NUMBER})", out)
    [diff] = figures(rf"max \|difference\| ({NUMBER}(?:e-?\d+)?)", out)
    assert float(diff) < 1e-9  # same candidates, same folds, same scores
