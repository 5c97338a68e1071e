"""The report tells the story: data and partition, warm-start parents, the refinement decision
with every rule's verdict and the narrowed ranges, why each run stopped; progress lines name the run."""

from __future__ import annotations

import html
import logging

from cvtune import report
from cvtune.ledger import RunLedger
from cvtune.refinement import reasons_of, refinement_plan, refinement_reasons, refinement_rules
from cvtune.states import TrialState
from cvtune.store import ArtifactStore
from tests.test_report import make_ledger, params

store = ArtifactStore()


def _with_manifest(tmp_path, ledger: RunLedger, data_uri: str) -> None:
    uri = str(tmp_path / "folds" / "manifest.json")
    store.write_json(uri, {
        "manifest_uri": uri, "fingerprint": "fp",
        "dataset": {"uri": data_uri, "rows": 569, "columns": [f"c{i}" for i in range(31)]},
        "split": {"target": "target", "strategy": "stratified", "folds": 3},
        "holdout": {"rows": 114},
    })
    ledger.data["manifest_uri"] = uri
    ledger.save()


def test_rules_give_every_verdict_and_the_reasons_stay_the_same(tmp_path):
    # best eta 0.05 sits inside [0.01, 0.3]; the top 3 are far apart; the target misses
    tune = make_ledger(tmp_path, "tune-a", [
        (TrialState.COMPLETED, params(4), [0.90, 0.91, 0.92]),
        (TrialState.COMPLETED, params(0), [0.80, 0.81, 0.82]),
        (TrialState.COMPLETED, params(1), [0.70, 0.71, 0.72]),
    ])
    rules = refinement_rules(tune, target=0.95, boundary=0.05, top_k=3)
    by = {r["rule"]: r for r in rules}
    assert [r["rule"] for r in rules] == ["target", "boundary", "top_k"]
    assert by["target"]["holds"] and abs(by["target"]["statistic"] - 0.91) < 1e-9 and by["target"]["threshold"] == 0.95
    # gaps to the best 0.1 and 0.2, the same on every fold: standard error 0, the trials are separated
    assert by["top_k"]["holds"] is False and abs(by["top_k"]["statistic"] - 0.2) < 1e-9
    assert abs(by["top_k"]["threshold"]) < 1e-9 and "separated" in by["top_k"]["detail"]
    positions = {p["name"]: p["position"] for p in by["boundary"]["parameters"]}
    assert set(positions) == {"eta", "subsample", "momentum", "max_depth"}
    assert by["boundary"]["statistic"] == min(min(v, 1 - v) for v in positions.values())
    assert reasons_of(rules) == refinement_reasons(tune, target=0.95, boundary=0.05, top_k=3)
    off = {r["rule"]: r for r in refinement_rules(tune, target=None, boundary=None, top_k=None)}
    assert all(r["off"] and not r["holds"] for r in off.values())


def test_report_tells_data_parents_refinement_and_stop(tmp_path):
    tune = make_ledger(tmp_path, "tune-a", [
        (TrialState.COMPLETED, params(0), [0.95, 0.96, 0.97]),
        (TrialState.COMPLETED, params(2), [0.97, 0.98, 0.985]),
    ])
    tune.data["config"]["max_trials"] = 2
    _with_manifest(tmp_path, tune, "s3://bucket/raw/dt=2026-03-04/")
    rules = refinement_rules(tune, target=0.99, boundary=0.05, top_k=None)
    plan = refinement_plan(tune, reasons_of(rules), 0.5, rules)
    refine = make_ledger(tmp_path, "refine-a", [(TrialState.COMPLETED, params(3), [0.98, 0.985, 0.99])], kind="refine")
    refine.data.update({
        "manifest_uri": tune.data["manifest_uri"],
        "warm_start": {"type": "IDENTICAL_DATA_AND_ALGORITHM", "parents": [tune.uri]},
        "stop_reason": "no improvement over 5 trials (patience 5)",
    })
    refine.save()

    summary = report.build_summary(ledgers=[tune, refine], best={}, final_model=None, registration=None,
                                   predictions=None, stage_seconds={}, refinement=plan)
    story = summary["story"]
    assert story["data"] == [{
        "manifest": tune.data["manifest_uri"], "runs": ["tune-a"], "folds": 3, "uri": "s3://bucket/raw/dt=2026-03-04/",
        "partitions": ["2026-03-04"], "rows": 569, "columns": 31, "target": "target", "strategy": "stratified",
        "holdout_rows": 114, "fingerprint": "fp",
    }]
    [warm] = story["warm_start"]
    assert warm["run_id"] == "refine-a" and warm["parents"][0]["run_id"] == "tune-a"
    assert warm["parents"][0]["trial"] == 1 and abs(warm["parents"][0]["mean"] - 0.978333) < 1e-5
    stops = {s["run_id"]: s for s in story["stops"]}
    assert stops["tune-a"] == {"run_id": "tune-a", "status": "Completed", "reason": "trial budget spent: 2 of max_trials 2",
                               "derived": True}
    assert stops["refine-a"]["reason"] == "no improvement over 5 trials (patience 5)" and not stops["refine-a"]["derived"]

    page = html.unescape(report.render_html(summary, [tune, refine]))
    assert "s3://bucket/raw/dt=2026-03-04/" in page and "dt=2026-03-04" in page and "569 rows" in page
    assert "tune-a</code>: best 0.9783 ± 0.0062 (trial 1 of 2)" in page
    assert "Refinement decision: refined" in page
    for rule in ("target", "boundary", "top_k"):
        assert f"<code>{rule}</code>" in page
    assert "misses the target 0.99" in page and "top-k check off" in page
    # the narrowed ranges, next to the originals
    narrowed = {r["Name"]: r for r in plan["parameter_ranges"]["ContinuousParameterRanges"]}
    assert "[0.01, 0.3] logarithmic" in page
    assert f"[{report._fmt_param(float(narrowed['eta']['MinValue']))}, " in page
    assert "no improvement over 5 trials (patience 5)" in page
    assert "trial budget spent: 2 of max_trials 2" in page


def test_progress_lines_name_the_run_and_count_fold_jobs_so_far(tmp_path, caplog):
    """A warm-started run whose best is a parent's trial says so, and the fold job count is cumulative."""
    from cvtune.tuner import CVTuner
    from cvtune.warmstart import IDENTICAL, WarmStart, load_parents
    from tests.fakes import ScriptedBackend
    from tests.test_tuner import MANIFEST, make_config, score

    def worse(spec):  # the child's trials all score below the parent's best
        state, metrics, reason = score(spec)
        return state, {k: v - 1 for k, v in metrics.items()}, reason

    art = str(tmp_path / "art")
    parent = CVTuner(make_config(tmp_path, max_trials=2), MANIFEST, ScriptedBackend(score), run_id="parent-run",
                     artifact_root=art, poll_s=0).run()
    warm = WarmStart(IDENTICAL, load_parents([parent["ledger"]]))
    with caplog.at_level(logging.INFO, logger="cvtune.tuner"):
        CVTuner(make_config(tmp_path, max_trials=2, max_parallel_trials=1), MANIFEST, ScriptedBackend(worse),
                run_id="child-run", artifact_root=art, poll_s=0, warm_start=warm).run()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial ") and " child-run " in r.getMessage()]
    assert len(lines) == 2
    best = parent["best"]
    assert lines[0].startswith("trial 1/2 of run child-run complete: validation:score ")
    assert f"(best {best['mean']:.4f}: trial {best['trial']} of parent run parent-run)" in lines[0]
    # launched so far, cumulative: the first trial's 3, plus whatever of the next one its finished
    # folds' slots already started (the tuner lends them on); all 6 by the end
    counts = [int(line.split(" fold jobs so far")[0].rsplit("· ", 1)[1]) for line in lines]
    assert 3 <= counts[0] <= 6 and counts[1] == 6
