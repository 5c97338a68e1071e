"""cvtune's SageMaker path against the SageMaker emulator, over the wire: the defects a Stubber
cannot show (issue 11) — transform filters, network isolation, transient failures — and their fixes.
The real training script trains real (small) models; the emulator's clock runs 1000x."""

from __future__ import annotations

import csv
import io
import json
import os
import time

import pytest

from tests.aws_fakes import EMU_BUCKET, emulated_sagemaker, emulator_clients, make_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "include", "training", "train.py")
DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
METRICS = [{"Name": "validation:auc", "Regex": "validation:auc=([-+0-9.eE]+);"}]
HPS = {"model": "logistic_regression", "task": "classification", "target": "target", "train_metrics": False}


@pytest.fixture(scope="module")
def emu():
    from cvtune.emulator.quotas import Quotas
    from cvtune.emulator.server import Emulator, EmulatorConfig

    emulator = Emulator(EmulatorConfig(time_scale=0.001, quotas=Quotas(warm_pool={"ml.m5.large": 4}))).start()
    _, s3 = emulator_clients(emulator)
    s3.create_bucket(Bucket=EMU_BUCKET)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    """A train and a validation directory of the sample data (header, 30 features, target last)."""
    with open(DATA) as f:
        rows = list(csv.reader(f))
    root = tmp_path_factory.mktemp("folds")
    for name, part in (("train", rows[1:301]), ("validation", rows[301:451]), ("score", rows[451:])):
        os.makedirs(root / name)
        with open(root / name / "part-0.csv", "w", newline="") as f:
            csv.writer(f).writerows([rows[0], *part])
    return root


def _backend(monkeypatch, emu, **options):
    from cvtune.sagemaker.backend import SageMakerBackend

    emulated_sagemaker(monkeypatch, emu, **options.pop("config_kwargs", {}))
    backend = SageMakerBackend(make_config(aws_conn_id="aws_emu", s3_prefix=f"s3://{EMU_BUCKET}/cv", **options),
                               sleep=lambda s: time.sleep(min(s, 0.05)))
    backend.poll_interval_s = 0.05
    return backend


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A training script that starts in milliseconds (the real one is used where its behaviour matters)."""
    path = tmp_path_factory.mktemp("tiny") / "train.py"
    path.write_text("import os\nassert os.listdir(os.environ['SM_CHANNEL_TRAIN'])\nprint('validation:auc=0.9;')\n")
    return str(path)


def _spec(name, folds, entry_point=TRAIN):
    from cvtune.backends.base import JobSpec

    return JobSpec(name=name, entry_point=entry_point, hyperparameters=HPS, metric_definitions=METRICS, max_runtime_s=600,
                   channels={"train": str(folds / "train"), "validation": str(folds / "validation")},
                   tags={"cvtune:run": name})


def _run(backend, spec, timeout=120.0):
    backend.submit(spec)
    deadline = time.monotonic() + timeout
    while not (ended := backend.wait([spec.name], timeout=1.0)):
        assert time.monotonic() < deadline, f"{spec.name} did not end"
    return ended[0]


def test_network_isolated_fold_job_gets_its_code_through_a_channel(monkeypatch, emu, folds, tiny):
    """Under EnableNetworkIsolation the container cannot download sourcedir.tar.gz from S3."""
    backend = _backend(monkeypatch, emu, enable_network_isolation=True)
    done = _run(backend, _spec("emu-isolated", folds, tiny))
    assert done.status == "Completed", done.failure_reason
    request = emu.service.jobs["emu-isolated"].request
    assert "code" in [c["ChannelName"] for c in request["InputDataConfig"]]


def test_internal_error_is_retried_by_retry_strategy(monkeypatch, emu, folds, tiny):
    backend = _backend(monkeypatch, emu)
    emu.service.faults.job_internal_error_first_n = emu.service.faults._job_attempts + 1
    done = _run(backend, _spec("emu-retried", folds, tiny))
    assert done.status == "Completed", done.failure_reason
    assert emu.service.jobs["emu-retried"].attempts == 2


def test_create_training_job_5xx_is_retried_with_backoff(monkeypatch, emu, folds, tiny):
    """With a connection that turns botocore's own retries off, a 500 still does not fail the job."""
    backend = _backend(monkeypatch, emu, config_kwargs={"retries": {"mode": "standard", "total_max_attempts": 1}})
    emu.service.faults.first_n["CreateTrainingJob"] = ("InternalServerError", emu.service.meter.calls["CreateTrainingJob"] + 2)
    try:
        done = _run(backend, _spec("emu-5xx", folds, tiny))
    finally:
        emu.service.faults.first_n.pop("CreateTrainingJob")
    assert done.status == "Completed"


def test_fastfile_fold_data_is_fetched_once_per_warm_pool(monkeypatch, emu, folds):
    """The real training script on FastFile input and a warm pool: the first fold job reads its
    channels (and keeps a copy in the pool's cache under cvtune's content id), the next job on that
    pool with the same channels reads the copy and fetches nothing (issue 12, item 5)."""
    backend = _backend(monkeypatch, emu, input_mode="FastFile", keep_alive_period_s=60,
                       volume_size_gb=37)  # a pool no other test takes
    first, second = (_run(backend, _spec(name, folds)) for name in ("cache-t0000-f0", "cache-t0001-f0"))
    assert first.status == second.status == "Completed", (first.failure_reason, second.failure_reason)
    assert first.final_metrics["validation:auc"] == second.final_metrics["validation:auc"]  # same data, same model
    request = backend.build_request(_spec("cache-t0002-f0", folds))
    digests = {k: v for k, v in request["Environment"].items() if k.startswith("CVTUNE_CHANNEL_DIGEST_")}
    assert sorted(digests) == ["CVTUNE_CHANNEL_DIGEST_TRAIN", "CVTUNE_CHANNEL_DIGEST_VALIDATION"]
    assert all(f"/data/{d}/" in c["DataSource"]["S3DataSource"]["S3Uri"]  # the id of the content-addressed upload
               for c, d in zip(request["InputDataConfig"], (digests["CVTUNE_CHANNEL_DIGEST_TRAIN"],
                                                            digests["CVTUNE_CHANNEL_DIGEST_VALIDATION"]), strict=True))
    fetched = emu.report()["training_jobs"]["input_bytes"]
    total = sum(os.path.getsize(folds / c / "part-0.csv") for c in ("train", "validation"))
    assert fetched["cache-t0000-f0"] == {"bytes": total, "of": total, "took_pool": False}
    assert fetched["cache-t0001-f0"] == {"bytes": 0, "of": total, "took_pool": True}


def test_batch_transform_drops_the_target_column(monkeypatch, emu, folds):
    """The reference DAG excludes the target; AWS's ``$[0:30]`` would pass it (slice ends are inclusive)."""
    from cvtune.sagemaker.final_training import training_job_container
    from cvtune.sagemaker.transform import SageMakerBatchTransform

    backend = _backend(monkeypatch, emu)
    trained = _run(backend, _spec("emu-final", folds))
    assert trained.status == "Completed", trained.failure_reason
    _, s3 = emulator_clients(emu)
    with open(folds / "score" / "part-0.csv", "rb") as f:
        s3.put_object(Bucket=EMU_BUCKET, Key="score-emulated/part-0.csv", Body=f.read())
    transform = SageMakerBatchTransform(backend.config, poll_s=0.05)
    emu.service.faults.transform_internal_error_first_n = 1  # CreateTransformJob has no RetryStrategy: cvtune retries
    result = transform.run(
        container=training_job_container(transform.client, "emu-final"), input_uri=f"s3://{EMU_BUCKET}/score-emulated/",
        output_uri=f"s3://{EMU_BUCKET}/predictions", job_name="emu-transform", header=True, exclude_columns=["target"],
    )
    with open(folds / "score" / "part-0.csv") as f:
        assert result["records"] == len(f.read().splitlines()) - 1
    out = s3.get_object(Bucket=EMU_BUCKET, Key="predictions/part-0.csv.out")["Body"].read().decode()
    values = [float(line) for line in out.splitlines()]
    assert len(values) == result["records"] and all(0 <= v <= 1 for v in values)
    assert result["attempts"] == 2 and result["transform_job"] == "emu-transform-r1"
    assert emu.service.transforms["emu-transform"].describe()["FailureReason"].startswith("InternalServerError")
    job = emu.service.transforms["emu-transform-r1"].describe()
    assert job["TransformJobStatus"] == "Completed" and "DataProcessing" not in job
    staged = s3.get_object(Bucket=EMU_BUCKET, Key="cv/transform-input/emu-transform/part-0.csv")["Body"].read().decode()
    assert len(next(csv.reader(io.StringIO(staged)))) == 30  # the target was dropped while staging


def test_isolation_and_retry_settings_shape_every_request():
    """What the fixes send: the code as a ``code`` channel under isolation (the dry run shows it),
    RetryStrategy from ``retry_attempts`` (default 2, 0 for none), 5xx retried by the backoff."""
    from botocore.exceptions import ClientError

    from cvtune.backends.base import JobSpec
    from cvtune.errors import ConfigError
    from cvtune.sagemaker.requests import CODE_CHANNEL_SOURCEDIR, create_training_job, validate
    from cvtune.sagemaker.throttle import Backoff

    spec = JobSpec(name="run-t0000-f0", entry_point="train.py", hyperparameters={}, channels={})
    code = "s3://b/code/sha/sourcedir.tar.gz"
    isolated = create_training_job(spec, make_config(enable_network_isolation=True), region="us-east-1", code_uri=code,
                                   channels={"train": ("s3://b/train/", "text/csv")})
    validate("CreateTrainingJob", isolated)
    assert json.loads(isolated["HyperParameters"]["sagemaker_submit_directory"]) == CODE_CHANNEL_SOURCEDIR
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in isolated["InputDataConfig"]] == [
        ("train", "s3://b/train/"), ("code", code)]
    assert isolated["RetryStrategy"] == {"MaximumRetryAttempts": 2}
    plain = create_training_job(spec, make_config(retry_attempts=0), region="us-east-1", code_uri=code, channels={})
    assert "RetryStrategy" not in plain and json.loads(plain["HyperParameters"]["sagemaker_submit_directory"]) == code
    with pytest.raises(ConfigError, match="retry_attempts"):
        make_config(retry_attempts=31)
    with pytest.raises(ConfigError, match="poll_interval_s"):
        make_config(poll_interval_s=0)
    with pytest.raises(ConfigError, match="channels.code"):
        create_training_job(spec, make_config(enable_network_isolation=True), region="us-east-1", code_uri=code,
                            channels={"code": ("s3://b/x/", None)})
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"},
                               "ResponseMetadata": {"HTTPStatusCode": 500}}, "CreateTrainingJob")
        return "created"

    assert Backoff(sleep=lambda s: None).call("CreateTrainingJob x", flaky) == "created" and len(calls) == 3


def test_sagemaker_tasks_poll_every_30_s_unless_told(tmp_path):
    """Issue 11: tasks polled SageMaker every 2 s. Jobs take minutes; the amazon provider's
    operators poll every 30 s (check_interval), and so does cvtune now, from the connection's
    ``poll_interval_s``; the local backend keeps 2 s, and a task's ``poll_interval`` wins."""
    from cvtune.local.backend import LocalBackend
    from cvtune.operators import CVTuningOperator
    from cvtune.sagemaker.backend import SageMakerBackend

    sagemaker = SageMakerBackend(make_config(), sagemaker_client=object())
    emulated = SageMakerBackend(make_config(poll_interval_s=0.2), sagemaker_client=object())
    local = LocalBackend(str(tmp_path / "jobs"))
    config = {"objective": {"metric": "validation:auc", "direction": "Maximize"}, "space": {}}
    unset = CVTuningOperator(task_id="t", manifest_uri="m", tuning_config=config)
    given = CVTuningOperator(task_id="g", manifest_uri="m", tuning_config=config, poll_interval=5)
    assert [unset.poll_for(b) for b in (sagemaker, emulated, local)] == [30.0, 0.2, 2.0]
    assert given.poll_for(sagemaker) == 5.0
