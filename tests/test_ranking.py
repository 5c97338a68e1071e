"""One best-trial ranking: the ledger, best-params, refinement, the report and warm start agree,
on ties (mean, then std, then order) and for both objective directions."""

from __future__ import annotations

import math

import pytest

from cvtune import ranking, report
from cvtune.best import overall_best
from cvtune.refinement import _top_k_gaps, refinement_plan
from cvtune.space import SearchSpace
from cvtune.states import TrialState
from cvtune.warmstart import TRANSFER, WarmStart, first_candidates, narrow_ranges
from tests.test_report import make_ledger, params

C, F = TrialState.COMPLETED, TrialState.FAILED


def tied_ledger(tmp_path, run_id: str, objective_type: str):
    """Trials 1 and 2 tie on the best mean and std; trial 0 has the best mean too but a larger
    std; trial 3 is worse; trial 4 failed with the best partial scores. Scores are exact binary
    fractions so the means tie exactly."""
    good, worse = (0.5, 0.25) if objective_type == "Maximize" else (0.25, 0.5)
    trials = [
        (C, params(0), [good + 0.25, good, good - 0.25]),
        (C, params(1), [good] * 3),
        (C, params(2), [good] * 3),
        (C, params(3), [worse] * 3),
        (F, params(4), [1.0, 0.0, 0.0]),
    ]
    return make_ledger(tmp_path, run_id, trials, objective_type=objective_type)


def consumers(ledger) -> dict[str, int]:
    """The best trial's number as each consumer of the ranking sees it."""
    summary = report.build_summary(ledgers=[ledger], best={}, final_model=None, registration=None,
                                   predictions=None, stage_seconds={})
    space = SearchSpace.from_parameter_ranges(ledger.data["config"]["parameter_ranges"])
    plan = refinement_plan(ledger, ["test"], 0.5)
    picks = first_candidates(WarmStart(TRANSFER, [ledger], top_per_parent=1), space)
    by_params = {repr(sorted(t["params"].items())): t["number"] for t in ledger.trials}
    narrowed = {repr(sorted(t["params"].items())): t["number"] for t in ledger.trials
                if narrow_ranges(space, t["params"], 0.5) == plan["parameter_ranges"]}
    return {
        "ledger": ledger.best_trial()["number"],
        "best_params": overall_best([ledger])["trial"],
        "report_summary": summary["best"]["trial"],
        "report_table": report._ranked([ledger], ledger.maximize)[0][1]["number"],
        "refinement": min(narrowed.values()),  # the plan narrows around the best's params
        "warm_start": by_params[repr(sorted(picks[0].params.items()))],
    }


@pytest.mark.parametrize("objective_type", ["Maximize", "Minimize"])
def test_all_consumers_pick_the_same_best_on_ties(tmp_path, objective_type):
    ledger = tied_ledger(tmp_path, f"rank-{objective_type.lower()}", objective_type)
    seen = consumers(ledger)
    # trial 0 ties on the mean but is less steady; 1 and 2 tie fully and 1 came first
    assert seen == dict.fromkeys(seen, 1), seen
    order = [t["number"] for t in ranking.ranked(ledger.trials, ledger.maximize)]
    assert order == [1, 2, 0, 3]  # the failed trial never ranks
    # refinement's top-k compares the best with the runner-up by the same order: 1 vs 2, no gap
    assert _top_k_gaps(ledger, 2) == [(0.0, 0.0)]


def test_direction_decides_the_mean(tmp_path):
    up = make_ledger(tmp_path, "rank-up", [(C, params(0), [0.25] * 3), (C, params(1), [0.5] * 3)])
    down = make_ledger(tmp_path, "rank-down", [(C, params(0), [0.25] * 3), (C, params(1), [0.5] * 3)],
                       objective_type="Minimize")
    assert up.best_trial()["number"] == overall_best([up])["trial"] == 1
    assert down.best_trial()["number"] == overall_best([down])["trial"] == 0


def test_inherited_trials_rank_before_own_on_a_full_tie(tmp_path):
    """A warm-started run's parents' trials ran first: on a full tie they win, in the ledger, in
    best-params and in the report, and the best names the parent run."""
    parent = make_ledger(tmp_path, "rank-parent", [(C, params(5), [0.5] * 3)])
    child = make_ledger(tmp_path, "rank-child", [(C, params(1), [0.5] * 3), (C, params(2), [0.25] * 3)])
    child.data["inherited"] = [{**parent.trials[0], "run_id": parent.run_id, "ledger": parent.uri}]
    assert child.best_trial()["run_id"] == "rank-parent"
    best = overall_best([child])
    assert (best["run_id"], best["trial"], best["ledger"]) == ("rank-parent", 0, parent.uri)
    summary = report.build_summary(ledgers=[child], best={}, final_model=None, registration=None,
                                   predictions=None, stage_seconds={})
    assert (summary["best"]["run_id"], summary["best"]["trial"]) == ("rank-parent", 0)
    # the parent given next to its child is one candidate, not two
    assert overall_best([child, parent])["candidates"] == 3


def test_runs_given_first_win_full_ties_across_runs(tmp_path):
    a = make_ledger(tmp_path, "rank-a", [(C, params(1), [0.5] * 3)])
    b = make_ledger(tmp_path, "rank-b", [(C, params(2), [0.5] * 3)])
    assert overall_best([a, b])["run_id"] == "rank-a"
    assert overall_best([b, a])["run_id"] == "rank-b"
    assert [i for i, _ in report._ranked([b, a], True)] == [0, 1]


def test_missing_std_ranks_after_a_known_one_and_nan_means_never_rank():
    trials = [
        {"number": 0, "state": "Completed", "mean": 0.5, "std": None, "fold_scores": [0.5]},
        {"number": 1, "state": "Completed", "mean": 0.5, "std": 0.1, "fold_scores": [0.4, 0.6]},
        {"number": 2, "state": "Completed", "mean": math.nan, "std": 0.0, "fold_scores": [math.nan]},
        {"number": 3, "state": "Completed", "mean": 0.5, "std": 0.1, "fold_scores": [0.4, 0.6, 0.5]},
    ]
    # equal means: the known std first; equal std: more folds scored first
    assert [t["number"] for t in ranking.ranked(trials, True)] == [3, 1, 0]
