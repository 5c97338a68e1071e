"""A run has one driver: the ledger's lease, conditional saves, the registry's version claim.

Drivers run in their own processes (tests/lease_driver.py) on a local root and on an s3:// root
served by a moto server on 127.0.0.1 (processes share it), with jobs as files (DiskBackend). After
every scenario each fold score is checked against the job that produced it: the score a trial is
credited with must be the one its own hyperparameters give on that fold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cvtune import lease as lease_
from cvtune.errors import LeaseHeldError, LedgerConflictError
from cvtune.lease import new_owner
from cvtune.ledger import RunLedger
from cvtune.local.registry import LocalModelRegistry
from cvtune.store import ArtifactStore, PreconditionFailed
from tests.conftest import ROOT
from tests.lease_driver import expected_score

# the environment's credentials and AWS_ENDPOINT_URL (set by ``root``), as the driver processes use
store = ArtifactStore()


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, monkeypatch):
    """An artifact root: a directory, or a fresh bucket on the moto server (seen by subprocesses too)."""
    if request.param == "local":
        yield str(tmp_path / "artifacts")
        return
    endpoint = request.getfixturevalue("s3_server").endpoint
    for key, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    bucket = f"lease-{os.path.basename(tmp_path)}".lower().replace("_", "-")[:60]
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/artifacts"


def driver(root: str, tmp_path, run_id: str = "r1", *extra: str) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text("# jobs are scripted by the DiskBackend\n")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lease_driver", root, run_id, str(tmp_path / "jobs"), "--script", str(script),
         *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "plugins"), ROOT])},
    )


def wait_for_lease(uri: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.exists(uri):
            held = RunLedger.load(uri).data.get("lease")
            if held and any(t["fold_jobs"][0]["state"] != "Pending" for t in RunLedger.load(uri).trials):
                return held
        time.sleep(0.05)
    raise AssertionError(f"no driver took {uri}")


def assert_every_score_is_its_own_trials(ledger: RunLedger, jobs_dir) -> None:
    """Each fold job on the backend ran its trial's hyperparameters, and the trial holds that job's score."""
    launched = 0
    for trial in ledger.trials:
        for job in trial["fold_jobs"]:
            path = jobs_dir / f"{job['job_name']}.json"
            if not path.exists():
                assert job["state"] in ("Pending", "Cancelled"), job
                continue
            launched += 1
            ran = json.loads(path.read_text())["spec"]
            assert ran["hyperparameters"] == trial["hyperparameters"], (trial["number"], job["fold"])
            assert ran["tags"]["cvtune:trial"] == str(trial["number"])
            if trial["fold_scores"][job["fold"]] is not None:
                assert trial["fold_scores"][job["fold"]] == expected_score(trial["hyperparameters"], job["fold"])
    submitted = (jobs_dir / "submitted.log").read_text().split()
    assert len(submitted) == len(set(submitted)) == launched, "a fold job was submitted twice"


def ledger_of(root: str, run_id: str = "r1") -> RunLedger:
    return RunLedger.load(store.join(root, "runs", run_id, "ledger.json"))


# -- the store's conditional writes -----------------------------------------------------------------
def test_conditional_writes(root):
    uri = store.join(root, "cas", "doc.json")
    token = store.write_bytes(uri, b"one", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.write_bytes(uri, b"two", if_none_match=True)
    data, read_token = store.read_versioned(uri)
    assert (data, read_token) == (b"one", token)
    new = store.write_bytes(uri, b"two", if_match=token)
    assert new != token
    with pytest.raises(PreconditionFailed):  # a stale token: the lost update is refused
        store.write_bytes(uri, b"three", if_match=token)
    assert store.read_versioned(uri) == (b"two", new)
    with pytest.raises(PreconditionFailed):
        store.write_bytes(store.join(root, "cas", "absent.json"), b"x", if_match=new)
    with pytest.raises(FileNotFoundError):
        store.read_versioned(store.join(root, "cas", "absent.json"))


def test_local_compare_and_swap_loses_no_update_across_processes(tmp_path):
    uri = str(tmp_path / "counter")
    store.write_bytes(uri, b"0", if_none_match=True)
    code = (
        "import sys; from cvtune.store import ArtifactStore, PreconditionFailed; store = ArtifactStore()\n"
        "for _ in range(40):\n"
        "    while True:\n"
        "        data, token = store.read_versioned(sys.argv[1])\n"
        "        try:\n"
        "            store.write_bytes(sys.argv[1], str(int(data) + 1).encode(), if_match=token); break\n"
        "        except PreconditionFailed:\n"
        "            pass\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")})
             for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert store.read_bytes(uri) == b"120"


# -- the lease ----------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_a_second_driver_is_refused_and_named_the_holder(root, tmp_path):
    hold = tmp_path.parent / f"{tmp_path.name}-hold"  # outside the script's folder, which the code fingerprint covers
    hold.touch()  # the first driver runs until the second one has been refused
    first = driver(root, tmp_path, "r1", "--end-after", "6", "--hold", str(hold))
    held = wait_for_lease(store.join(root, "runs", "r1", "ledger.json"))
    assert held["pid"] == first.pid and held["label"] == "lease test driver"
    second = driver(root, tmp_path, "r1")
    _, err = second.communicate(timeout=60)
    hold.unlink()
    assert second.returncode == 2, err
    assert f"pid {first.pid} on host" in err and held["id"] in err and "being driven by" in err
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    ledger = ledger_of(root)
    assert ledger.status == "Completed" and ledger.data["lease"] is None  # released when done
    assert ledger.counts() == {"Completed": 6} and "lease_takeovers" not in ledger.data
    assert_every_score_is_its_own_trials(ledger, tmp_path / "jobs")


@pytest.mark.timeout(180)
def test_a_retry_takes_over_from_a_dead_driver(root, tmp_path):
    hold = tmp_path.parent / f"{tmp_path.name}-hold"  # outside the script's folder, which the code fingerprint covers
    hold.touch()  # the first driver cannot finish before it is killed
    first = driver(root, tmp_path, "r1", "--end-after", "6", "--hold", str(hold))
    uri = store.join(root, "runs", "r1", "ledger.json")
    wait_for_lease(uri)
    first.send_signal(signal.SIGKILL)  # no chance to release anything
    hold.unlink()
    first.wait(timeout=30)
    assert RunLedger.load(uri).data["lease"]["pid"] == first.pid  # still recorded, its holder gone
    retry = driver(root, tmp_path, "r1")
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err
    assert f"taking over the lease of pid {first.pid}" in err and "is gone" in err
    ledger = ledger_of(root)
    assert ledger.status == "Completed" and ledger.counts() == {"Completed": 6}
    assert [t["reason"] for t in ledger.data["lease_takeovers"]] == [f"its process {first.pid} on this host is gone"]
    assert_every_score_is_its_own_trials(ledger, tmp_path / "jobs")


@pytest.mark.timeout(180)
def test_a_stalled_driver_loses_its_expired_lease_and_writes_nothing_more(root, tmp_path):
    """The old attempt is alive but stalled past its lease: the retry takes over; when the old one
    wakes up its next save is refused, so it stops instead of overwriting the retry's ledger."""
    first = driver(root, tmp_path, "r1", "--ttl", "1", "--stall-at", "3", "--stall-s", "6", "--end-after", "2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first_err = first.stderr.readline() if first.poll() is None else ""
        if "stalling" in first_err:
            break
    else:
        raise AssertionError("the first driver never stalled")
    time.sleep(1.5)  # its lease (1 s) has expired; its process lives on
    retry = driver(root, tmp_path, "r1", "--ttl", "30")
    out, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err
    assert "taking over the lease" in err and "expired" in err
    _, first_rest = first.communicate(timeout=60)
    assert first.returncode == 3, first_rest
    # its heartbeat, renewed before any write once the lease is past half its time, was refused
    assert "was taken over by another driver" in first_rest and "stops without writing the ledger" in first_rest
    ledger = ledger_of(root)
    assert ledger.status == "Completed" and ledger.counts() == {"Completed": 6}
    assert_every_score_is_its_own_trials(ledger, tmp_path / "jobs")


def test_saves_are_conditional_and_a_stale_copy_is_told_who_drives(tmp_path):
    from cvtune.tuner import CVTuner
    from tests.test_tuner import MANIFEST, ScriptedBackend, make_config, score

    a = CVTuner(make_config(tmp_path), MANIFEST, ScriptedBackend(score), run_id="h", artifact_root=str(tmp_path / "art"),
                poll_s=0, lease_label="A")
    with pytest.raises(LeaseHeldError, match=r"being driven by pid \d+ on host .* \(A\)"):  # live, in this process
        CVTuner(make_config(tmp_path), MANIFEST, ScriptedBackend(score), run_id="h", artifact_root=str(tmp_path / "art"))
    stale = RunLedger.load(a.uri)
    a.start()
    beat = a.ledger.data["lease"]["heartbeat"]
    stale.data["status"] = "Stopped"
    with pytest.raises(LedgerConflictError, match=r"written by another driver .*now driven by pid .*\(A\)"):
        stale.save()
    assert RunLedger.load(a.uri).data["status"] == "InProgress"
    summary = a.run()
    assert summary["trials"] == {"Completed": 8} and RunLedger.load(a.uri).data["lease"] is None
    assert RunLedger.load(a.uri).data["updated"] >= beat


# -- the lease object: heartbeats, fencing, old ledgers ----------------------------------------------
CONFIG = {"objective": {"metric": "m", "type": "Maximize"}, "entry_point": "train.py"}


def new_run(root: str, run_id: str) -> tuple[str, RunLedger]:
    uri = store.join(root, "runs", run_id, "ledger.json")
    return uri, RunLedger.create(uri, run_id=run_id, config=CONFIG, config_fingerprint="c",
                                 manifest={"folds": [{}, {}, {}]})


def add_trial(ledger: RunLedger, x: int) -> None:
    trial = ledger.new_trial({"x": x}, {"x": x})
    for job in trial["fold_jobs"]:
        job.update(state="Completed", objective=0.5, metrics={"m": 0.5}, start_time=1.0, end_time=2.0)
    trial.update(state="Completed", mean=0.5, std=0.0, fold_scores=[0.5] * 3)


@pytest.mark.timeout(300)
def test_heartbeats_rewrite_only_the_small_lease_object(root):
    """A heartbeat writes lease.json (a few hundred bytes) and never the snapshot: its size does not
    grow with the run, while the snapshot grows with every trial."""
    uri, ledger = new_run(root, "hb")
    ledger.acquire(new_owner("hb"), ttl_s=1e-6)  # every save finds the lease past half its time: it renews first
    beats = {}
    for i in range(300):
        add_trial(ledger, i)
        before = len(ledger.lease_writes)
        ledger.save()
        assert len(ledger.lease_writes) == before + 1
        beats[i] = ledger.lease_writes[-1]
    snapshot_token, snapshots, written = ledger.token, ledger.snapshots_written, ledger.bytes_written
    ledger.save()  # nothing changed: the heartbeat alone
    assert ledger.snapshots_written == snapshots and store.read_versioned(uri)[1] == snapshot_token
    assert ledger.bytes_written - written == ledger.lease_writes[-1] < 512
    snapshot_size = len(store.read_bytes(uri))
    assert snapshot_size > 100 * beats[299], snapshot_size  # what a heartbeat used to rewrite
    assert abs(beats[299] - beats[0]) <= 8, (beats[0], beats[299])  # float digits of the clock, not the run
    lease_doc = json.loads(store.read_bytes(store.join(root, "runs", "hb", "lease.json")))
    assert lease_doc["holder"]["label"] == "hb" and lease_doc["generation"] == 1
    assert "lease" not in json.loads(store.read_bytes(uri))  # the snapshot no longer carries it


@pytest.mark.timeout(180)
def test_a_driver_whose_lease_was_taken_over_writes_nothing_that_is_read(root, monkeypatch):
    uri, a = new_run(root, "fence")
    a.acquire(new_owner("A"), ttl_s=60)
    add_trial(a, 0)
    a.save()  # an append
    lease_.abandon(a.owner)  # A's driver stopped (an exception left its run): B takes over at once
    b = RunLedger.load(uri)
    b.acquire(new_owner("B"), ttl_s=60)
    assert b.data["lease_takeovers"][-1]["reason"] == "its driver in this process stopped"
    assert [t["params"]["x"] for t in b.trials] == [0]  # A's appends before the takeover are B's
    # A's copy still thinks its lease fresh: its append lands in a segment no snapshot names any more
    add_trial(a, 1)
    a.save()
    assert [t["params"]["x"] for t in RunLedger.load(uri).trials] == [0]
    with pytest.raises(LedgerConflictError, match="written by another driver"):
        a.snapshot()  # and a snapshot is refused: B's fencing snapshot moved the ledger's version
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 45)  # past half the lease: A renews before writing
    add_trial(a, 2)
    with pytest.raises(LedgerConflictError, match=r"taken over by another driver \(now driven by .*\(B\)"):
        a.save()
    add_trial(b, 9)
    b.save()  # B renews (its own lease) and appends
    monkeypatch.setattr(time, "time", lambda: real_time() + 200)  # B stalls past its lease: C takes over
    c = RunLedger.load(uri)
    c.acquire(new_owner("C"), ttl_s=60)
    assert "expired" in c.data["lease_takeovers"][-1]["reason"]
    add_trial(b, 10)
    with pytest.raises(LedgerConflictError, match="taken over by another driver"):
        b.save()
    loaded = RunLedger.load(uri)
    assert [t["params"]["x"] for t in loaded.trials] == [0, 9] and loaded.data["lease"]["label"] == "C"
    assert json.loads(store.read_bytes(store.join(root, "runs", "fence", "lease.json")))["generation"] == 3


@pytest.mark.timeout(180)
def test_handing_a_run_over_writes_the_change_and_the_lease_not_the_run(root):
    """A deferring operator gives its lease up and the next poke takes it: neither rewrites the run."""
    uri, a = new_run(root, "handover")
    a.acquire(new_owner("A"))
    for i in range(40):
        add_trial(a, i)
        a.save()
    token, run_bytes = store.read_versioned(uri)[1], len(json.dumps(a.data))
    a.data["deferred_since"] = time.time()
    before = a.bytes_written
    a.release_lease()
    assert a.owner is None and store.read_versioned(uri)[1] == token  # no snapshot
    assert a.bytes_written - before < 1024 < run_bytes / 30
    b = RunLedger.load(uri)
    assert b.data["lease"] is None and b.data["deferred_since"] == a.data["deferred_since"]
    b.acquire(new_owner("B"))
    assert b.snapshots_written == 0 and b.bytes_written == b.lease_writes[0] < 512
    assert store.read_versioned(uri)[1] == token and "lease_takeovers" not in b.data
    add_trial(b, 40)
    b.save()  # goes on with the same journal
    assert [t["params"]["x"] for t in RunLedger.load(uri).trials] == list(range(41))
    # a copy read before the last change, taking the free lease after it, reads the run again
    c_stale = RunLedger.load(uri)
    add_trial(b, 41)
    b.release_lease()
    c_stale.acquire(new_owner("C"))
    assert len(c_stale.trials) == 42 and c_stale.snapshots_written == 1  # read again, then a fresh segment
    add_trial(c_stale, 42)
    c_stale.save()
    assert [t["params"]["x"] for t in RunLedger.load(uri).trials] == list(range(43))


def test_a_version_2_ledger_keeps_the_lease_it_carries_until_it_moves_to_lease_json(tmp_path):
    uri, ledger = new_run(str(tmp_path), "old")
    add_trial(ledger, 0)
    ledger.save()
    document = json.loads(open(uri).read())
    legacy = {**new_owner("an older cvtune"), "acquired": time.time(), "heartbeat": time.time(),
              "expires": time.time() + 100}
    with open(uri, "w") as f:  # what cvtune wrote before the lease had its own object
        json.dump({**document, "version": 2, "lease": legacy}, f)
    assert not os.path.exists(os.path.join(os.path.dirname(uri), "lease.json"))
    loaded = RunLedger.load(uri)
    assert loaded.data["lease"] == legacy
    with pytest.raises(LeaseHeldError, match=r"\(an older cvtune\)"):  # its holder lives: honoured
        loaded.acquire(new_owner("new"))
    with open(uri, "w") as f:
        json.dump({**document, "version": 2, "lease": {**legacy, "expires": time.time() - 1}}, f)
    taker = RunLedger.load(uri)
    taker.acquire(new_owner("new"))
    assert "expired" in taker.data["lease_takeovers"][-1]["reason"]
    on_disk = json.loads(open(uri).read())
    assert on_disk["version"] == 3 and "lease" not in on_disk and len(on_disk["trials"]) == 1
    assert json.loads(open(os.path.join(os.path.dirname(uri), "lease.json")).read())["holder"]["label"] == "new"
    assert RunLedger.load(uri).data["lease"]["label"] == "new"


# -- the registry's version claim ------------------------------------------------------------------
def register(registry: LocalModelRegistry, key: str) -> dict:
    return registry.register("grp", model_uri="s3://elsewhere/model.tar.gz", hyperparameters={"k": key},
                             cv_metrics={}, holdout_metrics={}, data_fingerprint=None,
                             approval_status="PendingManualApproval", idempotency_key=key)


def test_concurrent_registrations_get_distinct_versions(root):
    """A backfill run and an asset-triggered run register at once: both counted the same versions,
    so both try number 1; the create-only claim gives it to one and the other moves on."""
    first, second = LocalModelRegistry(root), LocalModelRegistry(root)
    listed = first.versions("grp")  # what both saw before either registered
    second.versions = lambda group: listed  # type: ignore[method-assign]
    a = register(first, "backfill/2026-01-01")
    b = register(second, "asset/2026-01-01")
    assert {a["version"], b["version"]} == {1, 2}
    assert [(v["version"], v["idempotency_key"]) for v in first.versions("grp")] == [
        (a["version"], "backfill/2026-01-01"), (b["version"], "asset/2026-01-01")]


def test_threads_registering_at_once_never_share_a_version(tmp_path):
    registry = LocalModelRegistry(str(tmp_path))
    results: list[dict] = []
    threads = [threading.Thread(target=lambda i=i: results.append(register(registry, f"run-{i}"))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v["version"] for v in results) == list(range(1, 9))


@pytest.mark.timeout(300)
def test_cli_tune_on_a_running_run_exits_2_naming_the_holder(tmp_path):
    data = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
    script = os.path.join(ROOT, "include", "training", "train.py")
    config = tmp_path / "c.yaml"
    config.write_text(open(os.path.join(ROOT, "include", "configs", "breast_cancer_xgboost.yaml")).read()
                      .replace("../training/train.py", script).replace("max_trials: 20", "max_trials: 3")
                      .replace("num_round: 100", "num_round: 20"))
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")}

    def cli(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cvtune.cli", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    split = cli("split", data, "--target", "target", "--folds", "3", "--out", str(tmp_path / "folds"))
    assert split.wait(timeout=120) == 0
    tune = ("tune", "--manifest", str(tmp_path / "folds" / "manifest.json"), "--config", str(config),
            "--run-id", "x", "--out", str(tmp_path / "art"), "--workers", "1")
    first = cli(*tune)
    wait_for_lease(str(tmp_path / "art" / "runs" / "x" / "ledger.json"), timeout=120)
    second = cli(*tune)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert f"error: run x is being driven by pid {first.pid} on host" in err and "(cvtune tune)" in err
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    assert json.loads(out)["trials"] == {"Completed": 3}


def test_sensor_only_watches_while_another_process_holds_the_lease(cvtune_conn, monkeypatch, capsys):
    """Operator + sensor on one run: while a driver holds the lease, the sensor's pokes look and wait."""
    from cvtune.local.platform import LocalPlatform
    from cvtune.sensors import TuningRunSensor
    from cvtune.tuner import CVTuner
    from tests.fakes import DiskBackend
    from tests.test_deferrable import DEPTHS, expected_mean, job_describes, launch_run, score
    from tests.test_deferrable import FOLDS as DEFERRABLE_FOLDS

    root = os.path.join(cvtune_conn, "disk")
    monkeypatch.setattr(LocalPlatform, "make_backend", lambda self, **_: DiskBackend(root, score, capacity=2, end_after=2))
    uri = launch_run(cvtune_conn)
    holder = CVTuner.resume(uri, DiskBackend(root, score, capacity=2, end_after=2), lease_label="the operator")
    sensor = TuningRunSensor(task_id="s", ledger_uri=uri)
    before = job_describes(cvtune_conn)
    assert sensor.poke({}) is False
    logged = "".join(capsys.readouterr())
    assert "is being driven by pid" in logged and "(the operator)" in logged and "only watching" in logged
    assert job_describes(cvtune_conn) == before  # it never touched the jobs
    holder.start()
    holder.release()  # the operator hands over: the sensor drives from here
    done = False
    for _ in range(100):
        if done := sensor.poke({}):
            break
    ledger = RunLedger.load(uri)
    assert done and ledger.counts() == {"Completed": len(DEPTHS)}
    for trial in ledger.trials:
        assert trial["mean"] == pytest.approx(expected_mean(trial["params"]["max_depth"]))
    submitted = DiskBackend(root, score).submitted()
    assert len(submitted) == len(set(submitted)) == DEFERRABLE_FOLDS * len(DEPTHS)
