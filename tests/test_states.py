"""States are str enums in one home: on disk they are the strings they always were, and the
ledger's record types and its damaged-ledger checks name the same required keys."""

from __future__ import annotations

import json

from cvtune import ledger as L
from cvtune.states import JobStatus, RunStatus, StopCriterion, TrialState, WarmPoolStatus
from tests.test_report import make_ledger, params


def test_members_are_their_values_in_json_text_and_sets():
    doc = {"status": RunStatus.IN_PROGRESS, TrialState.PRUNED: [JobStatus.STOPPING, WarmPoolStatus.REUSED],
           "criterion": StopCriterion.MAX_TRIALS_NOT_IMPROVING}
    assert json.dumps(doc) == '{"status": "InProgress", "Pruned": ["Stopping", "Reused"], "criterion": "max_trials_not_improving"}'
    assert f"{JobStatus.COMPLETED}" == str(JobStatus.COMPLETED) == "Completed"
    assert "Completed" in {TrialState.COMPLETED} and JobStatus.FAILED in {"Failed"}  # same hash as the string


def test_a_saved_ledger_holds_the_plain_strings(tmp_path):
    ledger = make_ledger(tmp_path, "states-1", [(TrialState.COMPLETED, params(0), [0.5, 0.5, 0.5])])
    trial = ledger.new_trial(params(1), params(1))
    ledger.data["stop_reason"] = {"criterion": StopCriterion.MAX_TRIALS, "detail": "spent"}
    ledger.snapshot()
    raw = open(ledger.uri, encoding="utf-8").read()
    for text in ('"status":"Completed"', '"state":"Running"', '"state":"Pending"', '"criterion":"max_trials"'):
        assert text in raw, text
    reread = L.RunLedger.load(ledger.uri)
    assert reread.trials[trial["number"]]["state"] == TrialState.RUNNING and type(reread.status) is str


def test_the_record_types_require_what_a_damaged_ledger_is_checked_for():
    assert {key for key, _, _ in L._TRIAL} == L.TrialRecord.__required_keys__
    assert {key for key, _, _ in L._FOLD_JOB} == L.FoldJobRecord.__required_keys__
