"""Deferral: the triggers, the deferrable CVTuningOperator and the TuningRunSensor.

Triggers are driven with asyncio directly; operators and sensors run under dag.test(), which in
Airflow 3 runs a deferred task's trigger inline and then resumes the task in ``execute_complete``.
TuningRunSensor drives runs launched with ``wait_for_completion=False`` (poke and deferrable).
The local backend cannot defer (see CVTuningOperator), so the DAG tests use ``DiskBackend``
(tests/fakes.py): jobs as files, visible to the trigger and to every resumption, injected through
``LocalPlatform.make_backend``.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import textwrap

import pytest

from cvtune.backends.base import JobSpec
from cvtune.local.platform import LocalPlatform
from cvtune.states import JobStatus
from tests.conftest import ROOT, write_dag
from tests.fakes import DiskBackend

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
TRAIN = os.path.join(ROOT, "include", "training", "train.py")
FOLDS = 3
DEPTHS = range(2, 8)  # the grid: 6 candidates
CONFIG = {
    "entry_point": TRAIN,
    "static_hyperparameters": {"model": "xgboost", "task": "classification", "target": "target", "num_round": 5},
    "objective": {"metric": "validation:auc", "type": "Maximize"},
    "metric_definitions": [{"Name": "validation:auc", "Regex": "validation:auc=([-+0-9.eE]+);"}],
    "parameter_ranges": {
        "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": str(DEPTHS[0]), "MaxValue": str(DEPTHS[-1]),
                                    "ScalingType": "Linear"}]
    },
    "strategy": "Grid",
    "max_trials": len(DEPTHS),
    "max_parallel_trials": 2,
    "max_failed_trials": 3,
    "seed": 7,
}


def score(spec: JobSpec) -> tuple[str, dict, None]:
    """A fold score from the hyperparameters: max_depth 4 is best; later folds score a bit lower."""
    depth, fold = int(spec.hyperparameters["max_depth"]), int(spec.tags["cvtune:fold"])
    return JobStatus.COMPLETED, {"validation:auc": 0.95 - 0.02 * abs(depth - 4) - 0.001 * fold}, None


def expected_mean(depth: int) -> float:
    return sum(0.95 - 0.02 * abs(depth - 4) - 0.001 * f for f in range(FOLDS)) / FOLDS


@pytest.fixture
def disk(cvtune_conn, monkeypatch):
    """Every backend the connection makes (task, trigger, resumption) is a DiskBackend on one root."""
    root = os.path.join(cvtune_conn, "disk")
    monkeypatch.setattr(LocalPlatform, "make_backend", lambda self, **_: DiskBackend(root, score, capacity=2, end_after=2))
    return DiskBackend(root, score)


def collect(trigger) -> list:
    async def run():
        return [event async for event in trigger.run()]

    return asyncio.run(run())


def load_dag(path: str, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=path)
    assert bag.import_errors == {}, bag.import_errors
    return bag.get_dag(dag_id)


def ledgers_by_task(artifact_root: str) -> dict:
    from cvtune.ledger import RunLedger

    out = {}
    for uri in glob.glob(os.path.join(artifact_root, "runs", "*", "ledger.json")):
        ledger = RunLedger.load(uri)
        out[ledger.data["airflow"]["task_id"]] = ledger
    return out


def job_names(ledger) -> list[str]:
    return [j["job_name"] for t in ledger.trials for j in t["fold_jobs"] if j["state"] not in ("Pending", "Cancelled")]


# -- triggers ------------------------------------------------------------------------------------


def test_triggers_serialize_round_trip():
    from airflow.sdk._shared.module_loading import import_string

    from cvtune.triggers.tuning import TuningJobsTrigger, TuningRunTrigger

    for trigger in (
        TuningJobsTrigger(cvtune_conn_id="c", run_id="r1", ledger_uri="s3://b/runs/r1/ledger.json",
                          job_names=["r1-t0000-f0", "r1-t0000-f1"], poll_interval=5, timeout=60),
        TuningRunTrigger(ledger_uri="/x/runs/r1/ledger.json", run_id="r1", poll_interval=7),
    ):
        classpath, kwargs = trigger.serialize()
        assert json.loads(json.dumps(kwargs)) == kwargs  # JSON-serialisable, nothing but ids/URIs/numbers
        rebuilt = import_string(classpath)(**kwargs)
        assert type(rebuilt) is type(trigger)
        assert rebuilt.serialize() == (classpath, kwargs)


def test_jobs_trigger_fires_when_any_job_ended(disk, cvtune_conn):
    from cvtune.triggers.tuning import TuningJobsTrigger

    for name in ("r-t0000-f0", "r-t0000-f1"):
        disk.submit(JobSpec(name, TRAIN, {"max_depth": 4}, {}, tags={"cvtune:fold": "0"}))
    disk.describe("r-t0000-f1")  # one describe ahead: ends on the trigger's first poll (end_after=2)
    trigger = TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri="l",
                                job_names=["r-t0000-f0", "r-t0000-f1"], poll_interval=0)
    [event] = collect(trigger)
    assert event.payload == {"status": "ended", "run_id": "r", "ledger_uri": "l", "ended": ["r-t0000-f1"], "polls": 1}
    [event] = collect(trigger)  # f1 stays ended; f0 ends on this run's first poll too
    assert event.payload["ended"] == ["r-t0000-f0", "r-t0000-f1"]
    assert disk.async_polls() == 2  # the trigger used the backend's async path
    [event] = collect(TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri="l", job_names=[]))
    assert event.payload["status"] == "ended" and event.payload["ended"] == []  # never an endless wait


def test_jobs_trigger_polls_until_a_job_ends_or_times_out(cvtune_conn, monkeypatch):
    from cvtune.triggers.tuning import TuningJobsTrigger

    root = os.path.join(cvtune_conn, "disk")
    backend = DiskBackend(root, score, end_after=4)
    monkeypatch.setattr(LocalPlatform, "make_backend", lambda self, **_: DiskBackend(root, score, end_after=4))
    backend.submit(JobSpec("r-t0000-f0", TRAIN, {"max_depth": 3}, {}, tags={"cvtune:fold": "0"}))
    [event] = collect(TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri="l",
                                        job_names=["r-t0000-f0"], poll_interval=0))
    assert event.payload["status"] == "ended" and event.payload["polls"] == 4

    backend.submit(JobSpec("r-t0001-f0", TRAIN, {"max_depth": 3}, {}, tags={"cvtune:fold": "0"}))
    [event] = collect(TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri="l",
                                        job_names=["r-t0001-f0"], poll_interval=0, timeout=0))
    assert event.payload["status"] == "timeout" and "r-t0001-f0" not in event.payload.get("ended", [])
    assert "within 0 s" in event.payload["message"]


def test_jobs_trigger_reports_errors_as_events(cvtune_conn, monkeypatch):
    from cvtune.triggers.tuning import TuningJobsTrigger

    class Throttled(DiskBackend):
        def describe(self, name):
            raise RuntimeError("ThrottlingException: rate exceeded")

    root = os.path.join(cvtune_conn, "disk")
    monkeypatch.setattr(LocalPlatform, "make_backend", lambda self, **_: Throttled(root, score))
    trigger = TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri="l", job_names=["a"])
    [event] = collect(trigger)
    assert event.payload["status"] == "error" and event.payload["run_id"] == "r"
    assert "ThrottlingException: rate exceeded" in event.payload["message"]

    monkeypatch.undo()  # the real Settings again: a connection whose extra is invalid
    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_BAD", json.dumps({"conn_type": "cvtune", "extra": {"backend": "local",
                                                                                                 "wokers": 2}}))
    [event] = collect(TuningJobsTrigger(cvtune_conn_id="cvtune_bad", run_id="r", ledger_uri="l", job_names=["a"]))
    assert event.payload["status"] == "error"
    assert "cannot build the backend of connection cvtune_bad" in event.payload["message"]
    assert "wokers" in event.payload["message"]


@pytest.mark.timeout(120)
def test_jobs_trigger_on_real_local_backend_state_starts_no_worker(cvtune_conn, tmp_path, monkeypatch):
    """Jobs submitted by a (then closed) local backend are observed from their files only."""
    from cvtune.local.backend import LocalBackend
    from cvtune.triggers.tuning import TuningJobsTrigger

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        time.sleep(float(sys.argv[sys.argv.index("--sleep") + 1]))
        print("validation:auc=0.875;")
    """))
    names = ["loc-t0000-f0", "loc-t0000-f1"]
    backend = LocalBackend(os.path.join(cvtune_conn, "jobs"), max_parallel_jobs=2, preload=())
    for name, sleep in zip(names, ("0.2", "1.5"), strict=True):
        backend.submit(JobSpec(name, str(script), {"sleep": sleep}, {}, metric_definitions=CONFIG["metric_definitions"]))
    backend.close()  # like a task that deferred: busy workers finish their job on their own

    def no_workers(self):
        raise AssertionError("an observer must never start a worker")

    monkeypatch.setattr(LocalBackend, "_start_worker", no_workers)
    ended: list[str] = []
    while len(ended) < len(names):  # what the operator does: fire, record, wait on the rest
        waiting = [n for n in names if n not in ended]
        [event] = collect(TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="loc", ledger_uri="l",
                                            job_names=waiting, poll_interval=0.05))
        assert event.payload["status"] == "ended", event.payload
        ended += event.payload["ended"]
    assert sorted(ended) == names
    observer = LocalBackend(os.path.join(cvtune_conn, "jobs"))
    for name in names:
        desc = observer.describe(name)
        assert desc.status == JobStatus.COMPLETED and desc.final_metrics == {"validation:auc": 0.875}


def test_jobs_trigger_on_kill_stops_the_jobs_and_the_run(disk, tmp_path):
    from cvtune.triggers.tuning import TuningJobsTrigger

    uri = make_ledger(tmp_path, "InProgress")
    names = ["r-t0001-f0", "r-t0001-f1"]
    for name in names:
        disk.submit(JobSpec(name, TRAIN, {"max_depth": 4}, {}, tags={"cvtune:fold": "0"}))
    trigger = TuningJobsTrigger(cvtune_conn_id="cvtune_default", run_id="r", ledger_uri=uri,
                                job_names=[*names, "r-t0001-f2"])  # f2: never created
    asyncio.run(trigger.on_kill())
    assert [disk.describe(n).status for n in names] == ["Stopped", "Stopped"]
    from cvtune.ledger import RunLedger

    ledger = RunLedger.load(uri)
    assert ledger.status == "Stopped" and ledger.data["failure_reason"] == "the deferred Airflow task was killed"


def test_run_trigger_events(tmp_path):
    from cvtune.triggers.tuning import TuningRunTrigger

    uri = make_ledger(tmp_path, "InProgress")
    [event] = collect(TuningRunTrigger(ledger_uri=uri, run_id="r", poll_interval=0, timeout=0))
    assert event.payload["status"] == "timeout"

    finish(uri, "Completed")
    [event] = collect(TuningRunTrigger(ledger_uri=uri, poll_interval=0))
    assert event.payload["status"] == "success" and event.payload["run_id"] == "r"
    assert event.payload["summary"]["best"]["mean"] == 0.9 and event.payload["summary"]["trials"] == {"Completed": 1}

    finish(uri, "Failed", "3 trials failed")
    [event] = collect(TuningRunTrigger(ledger_uri=uri, run_id="r", poll_interval=0))
    assert event.payload["status"] == "failed" and "3 trials failed" in event.payload["message"]

    missing = str(tmp_path / "nowhere" / "ledger.json")  # not written yet: waited for
    [event] = collect(TuningRunTrigger(ledger_uri=missing, run_id="r", poll_interval=0, timeout=0))
    assert event.payload["status"] == "timeout"
    [event] = collect(TuningRunTrigger(ledger_uri=missing, run_id="r", poll_interval=0, timeout=0, until_started=True))
    assert event.payload["status"] == "timeout"
    finish(uri, "InProgress")  # a run in progress: "started" for a sensor that wants to drive it
    [event] = collect(TuningRunTrigger(ledger_uri=uri, run_id="r", poll_interval=0, until_started=True))
    assert event.payload == {"status": "started", "run_id": "r", "ledger_uri": uri}

    with open(uri, "w") as f:
        f.write("{not json")
    [event] = collect(TuningRunTrigger(ledger_uri=uri, run_id="r", poll_interval=0))
    assert event.payload["status"] == "error" and uri in event.payload["message"]


def make_ledger(tmp_path, status: str) -> str:
    from cvtune.ledger import RunLedger

    manifest = {"manifest_uri": "m", "fingerprint": "f", "folds": [{}, {}]}
    config = {"objective": {"metric": "validation:auc", "type": "Maximize"}}
    ledger = RunLedger.create(str(tmp_path / "runs" / "r" / "ledger.json"), run_id="r", config=config,
                              config_fingerprint="c", manifest=manifest)
    trial = ledger.new_trial({"x": 1}, {"x": 1})
    trial.update(state="Completed", mean=0.9, std=0.01, fold_scores=[0.89, 0.91])
    ledger.data["status"] = status
    ledger.save()
    return ledger.uri


def finish(uri: str, status: str, reason: str | None = None) -> None:
    from cvtune.ledger import RunLedger

    ledger = RunLedger.load(uri)
    ledger.data.update(status=status, failure_reason=reason)
    ledger.save()


# -- the operator --------------------------------------------------------------------------------


def test_execution_mode_local_backend_rejects_deferral_before_launching(tmp_path, monkeypatch):
    from cvtune.errors import ConfigError
    from cvtune.local.backend import LocalBackend
    from cvtune.operators import CVTuningOperator

    local = LocalBackend(str(tmp_path / "jobs"))
    disk = DiskBackend(str(tmp_path / "disk"), score)

    def op(**kwargs):
        return CVTuningOperator(task_id="t", manifest_uri="m", tuning_config=CONFIG, **kwargs)

    with pytest.raises(ConfigError) as err:
        op(deferrable=True).execution_mode(local)
    assert err.value.field == "deferrable" and "deferrable=False" in str(err.value)
    with pytest.raises(ConfigError) as err:
        op(wait_for_completion=False).execution_mode(local)
    assert err.value.field == "wait_for_completion" and "sagemaker" in str(err.value)
    assert op(deferrable=False).execution_mode(local) == "wait"
    assert op(deferrable=True).execution_mode(disk) == "defer"
    assert op(deferrable=False, wait_for_completion=False).execution_mode(disk) == "launch"
    assert op().deferrable is False  # [operators] default_deferrable is off by default

    # A deployment-wide default never turns into an error: the task polls in the worker.
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    default = op()
    assert default.deferrable is True
    assert default.execution_mode(local) == "wait"
    assert default.execution_mode(disk) == "defer"
    assert not os.listdir(tmp_path / "disk") and not os.path.exists(tmp_path / "jobs")  # nothing launched


DAG_HEADER = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from cvtune.operators import CVTuningOperator, FoldSplitOperator
from cvtune.sensors import TuningRunSensor
CONFIG = {config!r}
'''


@pytest.mark.timeout(300)
def test_deferrable_operator_defers_until_done_with_the_same_result(airflow_db, cvtune_conn, disk):
    dag_file = write_dag("deferrable_dag.py", DAG_HEADER.format(config=CONFIG) + textwrap.dedent(f'''
        with DAG("deferrable_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds={FOLDS}, seed=1)
            deferred = CVTuningOperator(task_id="deferred", manifest_uri=split.output["manifest"],
                                        tuning_config=CONFIG, deferrable=True, poll_interval=0)
            polling = CVTuningOperator(task_id="polling", manifest_uri=split.output["manifest"],
                                       tuning_config=CONFIG, deferrable=False, poll_interval=0)
            split >> deferred >> polling
    '''))
    run = load_dag(dag_file, "deferrable_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert tis["deferred"].try_number == 1

    ledgers = ledgers_by_task(cvtune_conn)
    deferred, polling = ledgers["deferred"], ledgers["polling"]
    # Every resumption records at most the 2 jobs in flight (capacity 2): 18 fold jobs need >= 9.
    assert deferred.data["deferrals"] >= FOLDS * len(DEPTHS) // 2
    assert "deferrals" not in polling.data
    assert disk.async_polls() >= deferred.data["deferrals"]  # each deferral's trigger polled the jobs

    # the same results as polling in the worker: every grid point, the same best
    for ledger in (deferred, polling):
        assert ledger.status == "Completed"
        assert ledger.counts() == {"Completed": len(DEPTHS)}
        assert ledger.fold_jobs_launched() == FOLDS * len(DEPTHS)
        assert sorted(t["params"]["max_depth"] for t in ledger.trials) == list(DEPTHS)
        for trial in ledger.trials:
            assert trial["mean"] == pytest.approx(expected_mean(trial["params"]["max_depth"]))
    assert deferred.summary()["best"]["params"] == polling.summary()["best"]["params"] == {"max_depth": 4}

    # no job launched twice, and every launched job is in a ledger
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == 2 * FOLDS * len(DEPTHS)
    assert set(submitted) == set(job_names(deferred)) | set(job_names(polling))

    # the deferred task's return value came from execute_complete
    result = xcom(run, "deferred")
    assert result["deferrals"] == deferred.data["deferrals"]
    assert result["best"]["params"] == {"max_depth": 4} and result["trials"] == {"Completed": len(DEPTHS)}


@pytest.mark.timeout(300)
def test_deferred_run_resumes_after_a_retry_without_launching_twice(airflow_db, cvtune_conn, disk, tmp_path):
    """Attempt 1 dies right after launching jobs at its 3rd resumption; the retry re-attaches."""
    dag_file = write_dag("deferrable_retry_dag.py", DAG_HEADER.format(config=CONFIG) + textwrap.dedent(f'''
        class Flaky(CVTuningOperator):
            def defer_on(self, inflight):
                if self._tuner.ledger.data.get("deferrals", 0) == 3 and self.flaky_try == 1:
                    open({str(tmp_path / "died")!r}, "w").write(repr(inflight))
                    raise RuntimeError("the worker died after launching")
                super().defer_on(inflight)

            def execute(self, context):
                self.flaky_try = context["ti"].try_number
                return super().execute(context)

            def execute_complete(self, context, event=None):
                self.flaky_try = context["ti"].try_number
                return super().execute_complete(context, event)

        with DAG("deferrable_retry_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds={FOLDS}, seed=1)
            Flaky(task_id="tune", manifest_uri=split.output["manifest"], tuning_config=CONFIG, deferrable=True,
                  poll_interval=0, retries=1, retry_delay=timedelta(seconds=0))
    '''))
    run = load_dag(dag_file, "deferrable_retry_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success" and tis["tune"].try_number == 2
    assert (tmp_path / "died").exists()

    ledger = ledgers_by_task(cvtune_conn)["tune"]
    assert ledger.counts() == {"Completed": len(DEPTHS)}
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == FOLDS * len(DEPTHS) == len(job_names(ledger))
    assert ledger.summary()["best"]["params"] == {"max_depth": 4}


@pytest.mark.timeout(300)
def test_launch_without_waiting_then_drive_and_sense(airflow_db, cvtune_conn, disk):
    """wait_for_completion=False returns at once; a task with the same run id drives the run; the
    sensor returns its summary."""
    dag_file = write_dag("launch_dag.py", DAG_HEADER.format(config=CONFIG) + textwrap.dedent(f'''
        with DAG("launch_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds={FOLDS}, seed=1)
            launch = CVTuningOperator(task_id="launch", manifest_uri=split.output["manifest"], tuning_config=CONFIG,
                                      run_id="nightly-1", wait_for_completion=False)
            drive = CVTuningOperator(task_id="drive", manifest_uri=split.output["manifest"], tuning_config=CONFIG,
                                     run_id="nightly-1", deferrable=True, poll_interval=0)
            wait = TuningRunSensor(task_id="wait", ledger_uri=launch.output, poke_interval=0.1, timeout=60)
            launch >> drive >> wait
    '''))
    run = load_dag(dag_file, "launch_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success", {t: ti.state for t, ti in tis.items()}
    launched = xcom(run, "launch")
    assert launched["run_id"] == "nightly-1" and launched["status"] == "InProgress" and launched["in_flight"] == 2
    assert launched["ledger"] == os.path.join(cvtune_conn, "runs", "nightly-1", "ledger.json")
    sensed = xcom(run, "wait")
    assert sensed["run_id"] == "nightly-1" and sensed["status"] == "Completed"
    assert sensed["best"]["params"] == {"max_depth": 4} and sensed["trials"] == {"Completed": len(DEPTHS)}
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == FOLDS * len(DEPTHS)


def xcom(run, task_id: str):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.query(XComModel.value).filter_by(
            dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value"
        ).scalar()
    return json.loads(value) if isinstance(value, str) else value


# -- the sensor ----------------------------------------------------------------------------------


def test_sensor_poke(tmp_path, cvtune_conn):
    from airflow.sdk.exceptions import AirflowException

    from cvtune.sensors import TuningRunSensor

    uri = make_ledger(tmp_path, "InProgress")
    sensor = TuningRunSensor(task_id="s", ledger_uri=uri)
    # drive=True, but the connection's backend is local: only watching (driving would rebuild the
    # tuner from this sketch of a ledger and fail on its config)
    assert sensor.poke({}) is False
    assert TuningRunSensor(task_id="s", ledger_uri=str(tmp_path / "later" / "ledger.json")).poke({}) is False

    finish(uri, "Completed")
    done = sensor.poke({})
    assert done.is_done and done.xcom_value["best"]["mean"] == 0.9 and done.xcom_value["run_id"] == "r"
    assert TuningRunSensor(task_id="s", ledger_uri={"ledger": uri, "run_id": "r"}).poke({}).is_done

    finish(uri, "Failed", "3 trials failed (max_failed_trials=3)")
    with pytest.raises(AirflowException, match="tuning run r failed: 3 trials failed"):
        sensor.poke({})
    finish(uri, "Stopped", "the Airflow task was killed")
    with pytest.raises(AirflowException, match="stopped: the Airflow task was killed"):
        sensor.poke({})

    # by run id, under the connection's artifact root
    os.makedirs(os.path.join(cvtune_conn, "runs", "r"))
    os.replace(uri, os.path.join(cvtune_conn, "runs", "r", "ledger.json"))
    finish(os.path.join(cvtune_conn, "runs", "r", "ledger.json"), "Completed")
    assert TuningRunSensor(task_id="s", run_id="r").poke({}).xcom_value["trials"] == {"Completed": 1}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("outcome", ["Completed", "Failed"])
def test_deferrable_sensor_waits_in_the_trigger(airflow_db, cvtune_conn, tmp_path, monkeypatch, outcome):
    from cvtune.sensors.tuning import TuningRunSensor
    from cvtune.triggers import tuning

    uri = make_ledger(tmp_path, "InProgress")
    calls, completes = [], []
    original_event, original_complete = tuning.run_event, TuningRunSensor.execute_complete

    def run_event(ledger_uri, run_id="", store=None):
        calls.append(ledger_uri)
        if len(calls) == 3:  # execute's check, the trigger's first poll, then the run ends
            finish(ledger_uri, outcome, None if outcome == "Completed" else "3 trials failed")
        return original_event(ledger_uri, run_id, store)

    def execute_complete(self, context, event=None):
        completes.append(event)
        return original_complete(self, context, event)

    monkeypatch.setattr(tuning, "run_event", run_event)
    monkeypatch.setattr(TuningRunSensor, "execute_complete", execute_complete)
    dag_file = write_dag(f"sensor_dag_{outcome}.py", textwrap.dedent(f'''
        from datetime import datetime
        from airflow.sdk import DAG
        from cvtune.sensors import TuningRunSensor

        with DAG("sensor_dag_{outcome}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            TuningRunSensor(task_id="wait", ledger_uri={uri!r}, deferrable=True, poke_interval=0)
    '''))
    run = load_dag(dag_file, f"sensor_dag_{outcome}").test()
    [ti] = run.get_task_instances()
    assert len(calls) == 3  # the trigger polled the ledger after the task deferred
    [event] = completes
    if outcome == "Completed":
        assert ti.state == "success" and event["status"] == "success"
        assert xcom(run, "wait")["best"]["mean"] == 0.9
    else:
        assert ti.state == "failed" and event["status"] == "failed" and "3 trials failed" in event["message"]


# -- the sensor drives a run launched without waiting --------------------------------------------


def launch_run(cvtune_conn: str, run_id: str = "hand-1", outcome=score, **overrides) -> str:
    """What CVTuningOperator(wait_for_completion=False) leaves behind: first jobs in flight, nobody driving."""
    from cvtune.config import load_config
    from cvtune.folds import split_dataset
    from cvtune.tuner import CVTuner

    manifest = split_dataset(DATA, os.path.join(cvtune_conn, "folds", run_id), target="target", folds=FOLDS, seed=1)
    backend = DiskBackend(os.path.join(cvtune_conn, "disk"), outcome, capacity=2, end_after=2)
    tuner = CVTuner(load_config(CONFIG, **overrides), manifest, backend, run_id=run_id, artifact_root=cvtune_conn)
    assert len(tuner.start()) == 2
    tuner.release()
    return tuner.uri


def job_describes(cvtune_conn: str) -> dict[str, int]:
    """How often each DiskBackend job was described: 0 means nobody looked at it."""
    out = {}
    for path in glob.glob(os.path.join(cvtune_conn, "disk", "*.json")):
        with open(path) as f:
            out[os.path.basename(path)[: -len(".json")]] = json.load(f)["describes"]
    return out


def test_sensor_only_watches_unless_it_may_drive(disk, cvtune_conn):
    from airflow.sdk.exceptions import AirflowException, TaskDeferred

    from cvtune.ledger import RunLedger
    from cvtune.sensors import TuningRunSensor
    from cvtune.triggers.tuning import TuningJobsTrigger, TuningRunTrigger

    # not started yet: the deferrable sensor wakes when the ledger appears, to drive the run
    sensor = TuningRunSensor(task_id="s", run_id="hand-1", deferrable=True, poke_interval=3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    assert isinstance(deferred.value.trigger, TuningRunTrigger) and deferred.value.trigger.until_started

    uri = launch_run(cvtune_conn)
    untouched = {"hand-1-t0000-f0": 0, "hand-1-t0000-f1": 0}  # oldest trial first, fold 0 first
    assert job_describes(cvtune_conn) == untouched

    # drive=False: the ledger is read, the jobs are never looked at, nothing is launched
    assert TuningRunSensor(task_id="s", ledger_uri=uri, drive=False).poke({}) is False
    with pytest.raises(TaskDeferred) as deferred:
        TuningRunSensor(task_id="s", ledger_uri=uri, drive=False, deferrable=True).execute({})
    assert isinstance(deferred.value.trigger, TuningRunTrigger)
    # a task that drives the run is named in the ledger: the sensor keeps out of its way
    ledger = RunLedger.load(uri)
    ledger.data["driver"] = {"dag_id": "d", "run_id": "r", "task_id": "tune", "map_index": -1, "mode": "defer"}
    ledger.save()
    assert TuningRunSensor(task_id="s", ledger_uri=uri).poke({}) is False
    assert job_describes(cvtune_conn) == untouched and disk.submitted() == list(untouched)

    with pytest.raises(TaskDeferred) as deferred:  # woken by "started", but the run has a driver
        sensor.execute_complete({}, {"status": "started", "run_id": "hand-1", "ledger_uri": uri})
    assert isinstance(deferred.value.trigger, TuningRunTrigger) and not deferred.value.trigger.until_started
    assert job_describes(cvtune_conn) == untouched

    # handed over (no driver): the deferrable sensor drives and defers on the jobs in flight
    ledger.data["driver"] = None
    ledger.save()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete({}, {"status": "started", "run_id": "hand-1", "ledger_uri": uri})
    trigger = deferred.value.trigger
    assert isinstance(trigger, TuningJobsTrigger) and deferred.value.method_name == "execute_complete"
    assert trigger.job_names == list(untouched) and trigger.run_id == "hand-1" and trigger.poll_interval == 3
    assert RunLedger.load(uri).data["deferrals"] == 1
    assert job_describes(cvtune_conn) == {name: 1 for name in untouched}  # re-attached, not relaunched

    # the trigger fired: one more step, deferring again; a wrong run or a failed poll is an error
    with pytest.raises(TaskDeferred):
        sensor.execute_complete({}, {"status": "ended", "run_id": "hand-1", "ledger_uri": uri, "ended": []})
    assert RunLedger.load(uri).data["deferrals"] == 2
    with pytest.raises(AirflowException, match="the trigger fired for run other, this task runs hand-1"):
        sensor.execute_complete({}, {"status": "ended", "run_id": "other", "ledger_uri": uri, "ended": []})
    with pytest.raises(AirflowException, match="ThrottlingException"):
        sensor.execute_complete({}, {"status": "error", "run_id": "hand-1", "message": "ThrottlingException: slow down"})
    submitted = disk.submitted()  # the second step found both jobs ended (end_after=2) and launched 2 more
    assert submitted[:2] == list(untouched) and len(submitted) == len(set(submitted)) == 4


def test_sensor_pokes_drive_the_run_to_its_end(disk, cvtune_conn):
    from cvtune.ledger import RunLedger
    from cvtune.sensors import TuningRunSensor

    uri = launch_run(cvtune_conn)
    sensor = TuningRunSensor(task_id="s", run_id="hand-1")  # looked up under the connection's root
    pokes, done = 0, False
    while not done:
        done = sensor.poke({})
        pokes += 1
        assert pokes < 100, RunLedger.load(uri).counts()
    ledger = RunLedger.load(uri)
    assert done.xcom_value == ledger.summary()
    assert ledger.status == "Completed" and ledger.counts() == {"Completed": len(DEPTHS)}
    for trial in ledger.trials:
        assert trial["mean"] == pytest.approx(expected_mean(trial["params"]["max_depth"]))
    assert done.xcom_value["best"]["params"] == {"max_depth": 4}
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == FOLDS * len(DEPTHS) == len(job_names(ledger))
    assert pokes > len(DEPTHS)  # many steps, each recording what ended and launching the next jobs
    assert "deferrals" not in ledger.data and disk.async_polls() == 0  # polled from the "worker" only
    assert sensor.poke({}).xcom_value == ledger.summary()  # finished: the ledger's summary, nothing launched
    assert disk.submitted() == submitted


def test_sensor_fails_clearly_when_the_run_it_drives_fails(cvtune_conn, monkeypatch):
    from airflow.sdk.exceptions import AirflowException

    from cvtune.ledger import RunLedger
    from cvtune.sensors import TuningRunSensor

    def crash(spec):
        return "Failed", {}, "AlgorithmError: boom"

    root = os.path.join(cvtune_conn, "disk")
    monkeypatch.setattr(LocalPlatform, "make_backend", lambda self, **_: DiskBackend(root, crash, capacity=2, end_after=2))
    uri = launch_run(cvtune_conn, "doomed", outcome=crash, max_failed_trials=1)
    sensor = TuningRunSensor(task_id="s", ledger_uri=uri)
    assert sensor.poke({}) is False  # jobs re-attached, still running
    with pytest.raises(AirflowException, match=r"tuning run doomed failed: .*AlgorithmError: boom"):
        sensor.poke({})
    assert RunLedger.load(uri).status == "Failed"
    with pytest.raises(AirflowException, match="tuning run doomed failed: 1 trials failed"):
        sensor.poke({})  # from the ledger now


def test_resume_rebuilds_a_warm_started_run_from_its_ledger(disk, cvtune_conn):
    from cvtune.config import load_config
    from cvtune.driving import drive_step
    from cvtune.errors import ConfigError
    from cvtune.folds import load_manifest
    from cvtune.ledger import RunLedger
    from cvtune.tuner import CVTuner, cross_validate
    from cvtune.warmstart import TRANSFER, WarmStart

    parent_uri = launch_run(cvtune_conn, "parent")
    manifest = load_manifest(RunLedger.load(parent_uri).data["manifest_uri"])
    backend = DiskBackend(os.path.join(cvtune_conn, "disk"), score, capacity=2, end_after=2)
    while drive_step(CVTuner.resume(parent_uri, backend)) is None:
        pass
    parent = RunLedger.load(parent_uri)
    best3 = sorted(parent.trials, key=lambda t: (-t["mean"], t["std"], t["number"]))[:3]

    # TRANSFER_LEARNING re-evaluates the parent's 3 best first; only 2 are asked before the hand-over
    config = load_config({**CONFIG, "strategy": "Random", "max_trials": 4})
    warm = WarmStart(TRANSFER, [parent], top_per_parent=3, uris=[parent_uri])
    child = CVTuner(config, manifest, backend, run_id="child", artifact_root=cvtune_conn, warm_start=warm)
    assert len(child.start()) == 2
    child.release()
    resumed = CVTuner.resume(child.uri, backend)
    assert resumed.config.fingerprint() == config.fingerprint() and resumed.config.max_trials == 4
    assert resumed.manifest["fingerprint"] == manifest["fingerprint"]
    while drive_step(resumed) is None:
        resumed = CVTuner.resume(child.uri, backend)
    trials = RunLedger.load(child.uri).trials
    # the third came from the warm start rebuilt from the ledger (top_per_parent=3 kept)
    assert [t["params"] for t in trials[:3]] == [t["params"] for t in best3]
    assert [t["source"] for t in trials[:3]] == [f"parent:parent#{t['number']}" for t in best3]

    # what cannot be resumed from a ledger says why
    with pytest.raises(ConfigError, match="is not where run child keeps its ledger"):
        CVTuner.resume(shutil.copy(child.uri, os.path.join(cvtune_conn, "ledger-copy.json")), backend)
    cross_validate(config, manifest, backend, {"max_depth": 3}, artifact_root=cvtune_conn, run_id="cv-1", poll_s=0)
    with pytest.raises(ConfigError, match="run cv-1 is a cv run"):
        CVTuner.resume(os.path.join(cvtune_conn, "runs", "cv-1", "ledger.json"), backend)


LAUNCH_DAG = DAG_HEADER + textwrap.dedent("""
    with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        split = FoldSplitOperator(task_id="split", data_uri={data!r}, target="target", folds={folds}, seed=1)
        launch = CVTuningOperator(task_id="launch", manifest_uri=split.output["manifest"], tuning_config=CONFIG,
                                  wait_for_completion=False)
        wait = TuningRunSensor(task_id="wait", ledger_uri=launch.output, deferrable={deferrable}, poke_interval=0,
                               timeout=240)
        polling = CVTuningOperator(task_id="polling", manifest_uri=split.output["manifest"], tuning_config=CONFIG,
                                   deferrable=False, poll_interval=0)
        split >> launch >> wait >> polling
""")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "poke"])
def test_sensor_finishes_a_run_launched_without_waiting(airflow_db, cvtune_conn, disk, deferrable):
    from cvtune.ledger import RunLedger

    dag_id = f"handover_{'deferrable' if deferrable else 'poke'}"
    dag_file = write_dag(f"{dag_id}.py", LAUNCH_DAG.format(config=CONFIG, dag_id=dag_id, data=DATA, folds=FOLDS,
                                                          deferrable=deferrable))
    run = load_dag(dag_file, dag_id).test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success", {t: ti.state for t, ti in tis.items()}
    assert xcom(run, "launch")["in_flight"] == 2

    ledgers = ledgers_by_task(cvtune_conn)
    launched, polling = ledgers["launch"], ledgers["polling"]
    assert launched.data["driver"] is None and polling.data["driver"]["task_id"] == "polling"
    assert launched.data["airflow"]["cvtune_conn_id"] == "cvtune_default"
    # the whole run, driven by the sensor alone: every trial, the same results as a normal run
    assert launched.status == "Completed" and launched.counts() == {"Completed": len(DEPTHS)}
    assert launched.fold_jobs_launched() == FOLDS * len(DEPTHS)
    assert sorted(t["params"]["max_depth"] for t in launched.trials) == list(DEPTHS)
    for trial in launched.trials:
        assert trial["mean"] == pytest.approx(expected_mean(trial["params"]["max_depth"]))
    # the same best (its trial number may differ: a rebuilt sampler draws the grid in another order)
    same = ("params", "hyperparameters", "mean", "std", "fold_scores")
    assert {k: launched.summary()["best"][k] for k in same} == {k: polling.summary()["best"][k] for k in same}
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == 2 * FOLDS * len(DEPTHS)
    assert set(submitted) == set(job_names(launched)) | set(job_names(polling))

    sensed = xcom(run, "wait")
    assert sensed == RunLedger.load(launched.uri).summary()
    if deferrable:  # the sensor waited in the trigger between its steps: at most 2 jobs end per step
        assert sensed["deferrals"] == launched.data["deferrals"] >= FOLDS * len(DEPTHS) // 2
        assert disk.async_polls() >= launched.data["deferrals"]
    else:
        assert "deferrals" not in launched.data and disk.async_polls() == 0


@pytest.mark.timeout(300)
def test_operator_and_sensor_taking_turns_launch_nothing_twice(airflow_db, cvtune_conn, disk, tmp_path):
    """launch → a sensor drives two steps → the operator (same run id) takes over, deferring → a sensor."""
    mark = tmp_path / "handoff.json"
    dag_file = write_dag("turns_dag.py", DAG_HEADER.format(config=CONFIG) + textwrap.dedent(f'''
        import json
        from cvtune.ledger import RunLedger

        class TwoSteps(TuningRunSensor):
            def poke(self, context):
                done = super().poke(context)
                self.steps = getattr(self, "steps", 0) + 1
                if done or self.steps < 2:
                    return done
                ledger = RunLedger.load(self.resolve_ledger_uri())
                open({str(mark)!r}, "w").write(json.dumps({{"launched": ledger.fold_jobs_launched(),
                                                           "driver": ledger.data["driver"]}}))
                return True  # hand the run over

        with DAG("turns_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds={FOLDS}, seed=1)
            kw = dict(manifest_uri=split.output["manifest"], tuning_config=CONFIG, run_id="turns-1", poll_interval=0)
            launch = CVTuningOperator(task_id="launch", wait_for_completion=False, **kw)
            sense = TwoSteps(task_id="sense", run_id="turns-1", poke_interval=0, timeout=120)
            drive = CVTuningOperator(task_id="drive", deferrable=True, **kw)
            done = TuningRunSensor(task_id="done", run_id="turns-1", deferrable=True, poke_interval=0, timeout=120)
            split >> launch >> sense >> drive >> done
    '''))
    run = load_dag(dag_file, "turns_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert run.state == "success", {t: ti.state for t, ti in tis.items()}

    handoff = json.loads(mark.read_text())
    assert handoff["launched"] > 2 and handoff["driver"] is None  # the sensor launched jobs of its own
    ledger = ledgers_by_task(cvtune_conn)["launch"]
    assert ledger.data["driver"]["task_id"] == "drive" and ledger.data["deferrals"] >= 1
    assert ledger.counts() == {"Completed": len(DEPTHS)} and ledger.summary()["best"]["params"] == {"max_depth": 4}
    submitted = disk.submitted()
    assert len(submitted) == len(set(submitted)) == FOLDS * len(DEPTHS) == len(job_names(ledger))
    assert xcom(run, "drive")["run_id"] == "turns-1" and xcom(run, "done") == ledger.summary()


@pytest.mark.timeout(300)
def test_sensor_with_drive_false_only_watches(airflow_db, cvtune_conn, disk):
    dag_file = write_dag("watch_dag.py", DAG_HEADER.format(config=CONFIG) + textwrap.dedent(f'''
        with DAG("watch_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            split = FoldSplitOperator(task_id="split", data_uri={DATA!r}, target="target", folds={FOLDS}, seed=1)
            launch = CVTuningOperator(task_id="launch", manifest_uri=split.output["manifest"], tuning_config=CONFIG,
                                      wait_for_completion=False)
            watch = TuningRunSensor(task_id="watch", ledger_uri=launch.output, drive=False, poke_interval=0.2,
                                    timeout=1, soft_fail=True)
            split >> launch >> watch
    '''))
    run = load_dag(dag_file, "watch_dag").test()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert tis["launch"].state == "success" and tis["watch"].state == "skipped"  # timed out, nobody drove
    ledger = ledgers_by_task(cvtune_conn)["launch"]
    assert ledger.status == "InProgress" and ledger.fold_jobs_launched() == 2
    assert job_describes(cvtune_conn) == {name: 0 for name in disk.submitted()} and len(disk.submitted()) == 2


# -- the Airflow layer ---------------------------------------------------------------------------


def test_provider_discovery_lists_trigger_and_sensor_and_they_import_light(airflow_db):
    import subprocess
    import sys

    code = (
        "import json, sys; from airflow.providers_manager import ProvidersManager as P; p = P(); "
        "info = p.providers['airflow-provider-cvtune'].data; "
        "triggers = [t.trigger_class_name for t in p.trigger if t.package_name == 'airflow-provider-cvtune']; "
        "import cvtune.triggers, cvtune.sensors; "
        "heavy = [m for m in ('optuna', 'sklearn', 'xgboost', 'pandas', 'boto3', 'botocore', 'numpy') "
        "if m in sys.modules]; "
        "print(json.dumps({'triggers': triggers, 'sensors': info.get('sensors'), 'heavy': heavy}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=os.environ.copy())
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert "cvtune.triggers.tuning" in found["triggers"]
    assert found["sensors"] == [{"integration-name": "cvtune", "python-modules": ["cvtune.sensors.tuning"]}]
    assert found["heavy"] == []
