"""The journal ledger: O(change) saves, snapshot + tail on load, consistent readers, old ledgers."""

from __future__ import annotations

import copy
import json
import os

import pytest

from cvtune import ledger as L
from cvtune.errors import ConfigError, LedgerConflictError
from cvtune.lease import new_owner
from cvtune.ledger import RunLedger
from cvtune.tuner import CVTuner
from tests.fakes import ScriptedBackend
from tests.test_tuner import make_config, manifest, score

CONFIG = {"objective": {"metric": "m", "type": "Maximize"}, "entry_point": "train.py"}


def comparable(data):
    """The run's state without the storage bookkeeping."""
    out = copy.deepcopy(data)
    for key in ("journal", "updated", "version"):
        out.pop(key, None)
    return json.loads(json.dumps(out, default=str))


class RecordingLedger(RunLedger):
    """Checks after every save that a reader sees exactly what the writer holds."""

    checks = 0
    sizes: list[int] = []

    def save(self, **kwargs):
        before = self.bytes_written
        super().save(**kwargs)
        type(self).sizes.append(self.bytes_written - before)
        assert comparable(RunLedger.load(self.uri).data) == comparable(self.data)
        type(self).checks += 1


def run(tmp_path, trials, run_id="j", k=3, **changes):
    tmp_path.mkdir(parents=True, exist_ok=True)
    backend = ScriptedBackend(score, capacity=4)
    config = make_config(tmp_path, max_trials=trials, strategy="Random", **changes)
    tuner = CVTuner(config, manifest(k), backend, run_id=run_id, artifact_root=str(tmp_path / "art"), poll_s=0)
    summary = tuner.run()
    return tuner, summary


def test_every_save_is_read_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "MIN_TAIL_BYTES", 4096)  # several snapshots within the run
    RecordingLedger.checks = 0
    monkeypatch.setattr(L, "RunLedger", RecordingLedger)
    tuner, summary = run(tmp_path, 30)
    # about one save per fold job (its launch's write-ahead, which also carries the results recorded since)
    assert RecordingLedger.checks >= 90 and tuner.ledger.snapshots_written >= 3
    loaded = RunLedger.load(tuner.uri)
    assert loaded.summary() == summary and loaded.status == "Completed"


def test_bytes_per_save_do_not_grow_with_the_run(tmp_path):
    small, _ = run(tmp_path / "a", 10)
    large, _ = run(tmp_path / "b", 200)
    saves_small = small.ledger.bytes_written / small.ledger.fold_jobs_launched()
    saves_large = large.ledger.bytes_written / large.ledger.fold_jobs_launched()
    # the whole-document rewrite grew ~20x from 10 to 200 trials; the journal stays flat
    # (snapshots are amortised: the tail grows to the snapshot's size before one is written)
    assert saves_large < 2 * saves_small, (saves_small, saves_large)
    # about 1 KB of change records per fold job (3 saves of one fold job each), written once in
    # the journal and once more in the snapshot that absorbs them; rewriting the whole document
    # on every save wrote ~100x that here
    size = os.path.getsize(large.uri)
    assert large.ledger.bytes_written < 2 * size + large.ledger.fold_jobs_launched() * 3000, (
        large.ledger.bytes_written, size)


def test_load_reads_the_snapshot_plus_the_tail_and_ignores_a_torn_write(tmp_path):
    uri = str(tmp_path / "runs" / "r" / "ledger.json")
    ledger = RunLedger.create(uri, run_id="r", config=CONFIG,
                              config_fingerprint="c", manifest={"folds": [{}, {}]})
    ledger.acquire(new_owner("test"))  # only the lease holder appends; taking a free lease writes lease.json
    for i in range(3):
        trial = ledger.new_trial({"x": i}, {"x": i})
        trial["fold_scores"][0] = 0.5 + i
        ledger.save()
    segment = os.path.join(os.path.dirname(uri), ledger.data["journal"]["segment"])
    assert os.path.exists(segment) and ledger.snapshots_written == 1
    assert len(json.loads(open(uri).read())["trials"]) == 0  # the snapshot predates the trials
    loaded = RunLedger.load(uri)
    assert [t["fold_scores"][0] for t in loaded.trials] == [0.5, 1.5, 2.5]
    with open(segment, "ab") as f:  # a driver killed in the middle of an append
        f.write(b'{"seq": 4, "set": {"status": "Compl')
    assert RunLedger.load(uri).status == "InProgress" and len(RunLedger.load(uri).trials) == 3
    # the loaded copy goes on writing where the journal is whole
    loaded.data["status"] = "Completed"
    loaded.save()
    assert RunLedger.load(uri).status == "Completed"


def test_old_single_document_ledgers_load_and_unknown_versions_fail_clearly(tmp_path):
    uri = tmp_path / "runs" / "old" / "ledger.json"
    uri.parent.mkdir(parents=True)
    jobs = [{"fold": f, "job_name": f"old-t0000-f{f}", "state": "Completed"} for f in range(2)]
    old = {"version": 1, "run_id": "old", "kind": "tune", "status": "Completed",
           "config": {"objective": {"metric": "m", "type": "Maximize"}, "entry_point": "train.py"},
           "config_fingerprint": "c", "manifest_uri": None, "manifest_fingerprint": None,
           "folds": 2, "trials": [{"number": 0, "params": {}, "hyperparameters": {}, "state": "Completed", "mean": 0.9,
                                   "std": 0.0, "fold_scores": [0.9, 0.9], "fold_jobs": jobs, "failure_reason": None}]}
    uri.write_text(json.dumps(old, indent=2))
    ledger = RunLedger.load(str(uri))
    assert ledger.best_trial()["mean"] == 0.9
    ledger.save()  # the first save writes it whole, as a snapshot
    assert json.loads(uri.read_text())["version"] == L.LEDGER_VERSION
    uri.write_text(json.dumps({**old, "version": 9}))
    with pytest.raises(ConfigError) as err:
        RunLedger.load(str(uri))
    assert str(uri) in str(err.value) and "version 9" in str(err.value) and "reads version 1, 2 or 3" in str(err.value)
    uri.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):  # the message names the file, too
        RunLedger.load(str(uri))


def test_resume_after_a_crash_replays_the_tail(tmp_path):
    backend = ScriptedBackend(score, capacity=4)
    backend.crash_after_waits = 25
    config = make_config(tmp_path, max_trials=12)
    tuner = CVTuner(config, manifest(3), backend, run_id="c", artifact_root=str(tmp_path / "art"), poll_s=0)
    with pytest.raises(KeyboardInterrupt):
        tuner.run()
    state = comparable(tuner.ledger.data)
    stored = comparable(RunLedger.load(tuner.uri).data)
    # the launches since the last save are written by the next one: until then the ledger says
    # Launching (the write-ahead), which a resume resolves by describing the job
    for trial, saved in zip(state["trials"], stored["trials"], strict=True):
        for job, saved_job in zip(trial["fold_jobs"], saved["fold_jobs"], strict=True):
            if (job["state"], saved_job["state"]) == ("InProgress", "Launching"):
                saved_job["state"] = "InProgress"
    stored["last_launch_at"] = state["last_launch_at"]
    assert stored == state  # nothing saved was lost
    backend.crash_after_waits = None
    resumed = CVTuner(config, manifest(3), backend, run_id="c", artifact_root=str(tmp_path / "art"), poll_s=0)
    summary = resumed.run()
    assert summary["trials"] == {"Completed": 12}
    names = backend.submitted
    assert len(names) == len(set(names)) == 36  # nothing launched twice


def test_journal_on_s3_writes_one_object_per_record(s3_server, monkeypatch):
    import boto3

    from cvtune.store import ArtifactStore

    s3_server.create_bucket("cvtune-journal")
    store = ArtifactStore({"key": "admin", "secret": "admin", "endpoint_url": s3_server.endpoint,
                           "region_name": "us-east-1"}, label="test")
    client = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                          aws_access_key_id="admin", aws_secret_access_key="admin")
    monkeypatch.setattr(L, "MAX_TAIL_RECORDS_REMOTE", 5)
    uri = "s3://cvtune-journal/art/runs/r/ledger.json"
    ledger = RunLedger.create(uri, store=store, run_id="r", config=CONFIG,
                              config_fingerprint="c", manifest={"folds": [{}]})
    ledger.acquire(new_owner("test"))
    for i in range(8):
        ledger.new_trial({"x": i}, {"x": i})
        ledger.save()
        assert comparable(RunLedger.load(uri, store).data) == comparable(ledger.data)
    assert ledger.snapshots_written == 2  # the creation, one after 5 records (a free lease: only lease.json)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="cvtune-journal", Prefix="art/runs/r/")["Contents"]]
    segment = ledger.data["journal"]["segment"]
    assert sum(segment in k for k in keys) == 2 and len(keys) == 4  # 2 records, lease.json; the old segment is gone


def test_a_copy_without_the_lease_cannot_snapshot_over_the_holders_appends(tmp_path):
    uri = str(tmp_path / "runs" / "r" / "ledger.json")
    holder = RunLedger.create(uri, run_id="r", config=CONFIG,
                              config_fingerprint="c", manifest={"folds": [{}]})
    holder.acquire(new_owner("holder"))
    stale = RunLedger.load(uri)
    holder.new_trial({"x": 1}, {"x": 1})
    holder.save()  # an append: the snapshot (and its version token) is unchanged
    stale.data["status"] = "Stopped"
    with pytest.raises(LedgerConflictError, match="written by another driver"):
        stale.save()
    assert len(RunLedger.load(uri).trials) == 1 and RunLedger.load(uri).status == "InProgress"
