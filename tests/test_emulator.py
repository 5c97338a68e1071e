"""The SageMaker emulator behaves as AWS documents: protocol, validation, lifecycle, script mode,
warm pools, quotas, billing, faults and isolation. Each rule's test quotes the AWS sentence it
implements. Scripts are tiny (standard library) so the file stays fast; the clock runs 1000x."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
import time

import pytest
from botocore.exceptions import ClientError

from tests.aws_fakes import EMU_BUCKET, EMU_KEYS, emulator_clients, script_job, upload_script, wait_job

SCRIPT = """
import json, os, sys
print("argv", json.dumps(sys.argv[1:]))
print("env", json.dumps(sorted(os.environ)))
print("hps", os.environ["SM_HPS"])
print("files", sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])))
print("validation:auc=0.5;")
print("validation:auc=0.75;")
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("trained")
"""


def _emulator(**kw):
    from cvtune.emulator.server import Emulator, EmulatorConfig

    return Emulator(EmulatorConfig(time_scale=kw.pop("time_scale", 0.001), **kw)).start()


@pytest.fixture(scope="module")
def emu():
    from cvtune.emulator.quotas import Quotas

    emulator = _emulator(quotas=Quotas(warm_pool={"ml.m5.large": 4}, training_instances={"ml.m5.large": 8}))
    sm, s3 = emulator_clients(emulator)
    s3.create_bucket(Bucket=EMU_BUCKET)
    s3.put_object(Bucket=EMU_BUCKET, Key="data/train/part-0.csv", Body=b"a,b\n1,2\n")
    emulator.code = upload_script(s3, SCRIPT)
    yield emulator
    emulator.stop()


@pytest.fixture
def sm(emu):
    return emulator_clients(emu)[0]


def _name(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns() % 10**9}"


# -- protocol and validation --------------------------------------------------------------------
def test_botocore_and_aiobotocore_reach_it_and_validation_covers_what_botocore_skips(emu, sm):
    from aiobotocore.session import get_session

    name = _name("proto")
    sm.create_training_job(**script_job(name, emu.code))

    async def describe():
        async with get_session().create_client("sagemaker", endpoint_url=emu.endpoint, **EMU_KEYS) as client:
            return await client.describe_training_job(TrainingJobName=name)

    assert asyncio.run(describe())["TrainingJobName"] == name
    bad = {
        "fold_1": script_job("fold_1", emu.code),  # job-name regex
        "keep": script_job(_name("keep"), emu.code, ResourceConfig={"KeepAlivePeriodInSeconds": 3601}),
        "tag": script_job(_name("tag"), emu.code, Tags=[{"Key": "team#1", "Value": "x"}]),
        "hp": script_job(_name("hp"), emu.code, HyperParameters={"x": "y" * 2501}),
        "hps": script_job(_name("hps"), emu.code, HyperParameters={f"h{i}": "1" for i in range(101)}),
    }
    for what, request in bad.items():
        with pytest.raises(ClientError) as caught:
            sm.create_training_job(**request)
        assert caught.value.response["Error"]["Code"] == "ValidationException", what
    with pytest.raises(ClientError, match="ResourceInUse|already exists"):
        sm.create_training_job(**script_job(name, emu.code))
    wait_job(sm, name)


# -- lifecycle and script mode ------------------------------------------------------------------
def test_script_mode_lifecycle_metrics_model_and_environment(emu, sm):
    name = _name("life")
    sm.create_training_job(**script_job(name, emu.code, Environment={"MY_SETTING": "1"}))
    job = wait_job(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s] == [
        "Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert job["FinalMetricDataList"][0]["MetricName"] == "validation:auc"
    assert job["FinalMetricDataList"][0]["Value"] == 0.75  # the last match wins
    uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{EMU_BUCKET}/jobs/{name}/output/model.tar.gz"
    _, s3 = emulator_clients(emu)
    body = s3.get_object(Bucket=EMU_BUCKET, Key=uri.split("/", 3)[3])["Body"].read()
    assert tarfile.open(fileobj=io.BytesIO(body)).extractfile("model.txt").read() == b"trained"
    log = emu.service.logs[name]
    env = json.loads(log.split("env ", 1)[1].splitlines()[0])
    assert "MY_SETTING" in env and "SM_CHANNEL_TRAIN" in env and "SM_HPS" in env
    assert not [k for k in env if k.startswith("AWS_") or k in ("PYTHONPATH", "AIRFLOW_HOME")], env
    assert json.loads(log.split("hps ", 1)[1].splitlines()[0]) == {"eta": 0.1, "model": "xgboost"}
    assert json.loads(log.split("argv ", 1)[1].splitlines()[0]) == ["--eta", "0.1", "--model", "xgboost"]
    assert "part-0.csv" in log


def test_failure_file_exit_code_max_runtime_and_stop(emu, sm):
    _, s3 = emulator_clients(emu)
    failing = upload_script(s3, "import os\nopen(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('bad target')\nraise SystemExit(1)\n", key="code/fail.tar.gz")
    crashing = upload_script(s3, "raise RuntimeError('boom')\n", key="code/crash.tar.gz")
    sleeping = upload_script(s3, "import time\ntime.sleep(60)\n", key="code/sleep.tar.gz")
    names = {k: _name(k) for k in ("fail", "crash", "slow", "stopme")}
    sm.create_training_job(**script_job(names["fail"], failing))
    sm.create_training_job(**script_job(names["crash"], crashing))
    sm.create_training_job(**script_job(names["slow"], sleeping, StoppingCondition={"MaxRuntimeInSeconds": 1}))
    sm.create_training_job(**script_job(names["stopme"], sleeping))
    wait_job(sm, names["stopme"], until=("Training",))
    sm.stop_training_job(TrainingJobName=names["stopme"])
    assert sm.describe_training_job(TrainingJobName=names["stopme"])["TrainingJobStatus"] in ("Stopping", "Stopped")
    fail, crash = wait_job(sm, names["fail"]), wait_job(sm, names["crash"])
    assert fail["TrainingJobStatus"] == "Failed" and fail["FailureReason"] == "AlgorithmError: bad target"
    assert crash["TrainingJobStatus"] == "Failed" and crash["FailureReason"].startswith("AlgorithmError:")
    assert "boom" in crash["FailureReason"]
    slow = wait_job(sm, names["slow"])
    assert (slow["TrainingJobStatus"], slow["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    stopped = wait_job(sm, names["stopme"])
    assert (stopped["TrainingJobStatus"], stopped["SecondaryStatus"]) == ("Stopped", "Stopped")
    with pytest.raises(ClientError, match="ValidationException"):
        sm.stop_training_job(TrainingJobName=names["stopme"])


def test_network_isolation_job_cannot_read_s3_but_code_channel_works(emu, sm):
    """AWS (CreateTrainingJob, EnableNetworkIsolation): "If you enable network isolation for training
    jobs that are configured to use a VPC, SageMaker downloads and uploads customer data and model
    artifacts through the specified VPC, but the training container does not have network access."
    The SDK then ships the code as a ``code`` input channel."""
    isolated = _name("iso")
    sm.create_training_job(**script_job(isolated, emu.code, EnableNetworkIsolation=True))
    job = wait_job(sm, isolated)
    assert job["TrainingJobStatus"] == "Failed" and "network" in job["FailureReason"]
    channel = _name("isochan")
    request = script_job(channel, emu.code, EnableNetworkIsolation=True)
    request["HyperParameters"]["sagemaker_submit_directory"] = json.dumps("/opt/ml/input/data/code/sourcedir.tar.gz")
    request["InputDataConfig"].append({"ChannelName": "code", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": emu.code, "S3DataDistributionType": "FullyReplicated"}}})
    sm.create_training_job(**request)
    assert wait_job(sm, channel)["TrainingJobStatus"] == "Completed"


# -- warm pools ---------------------------------------------------------------------------------
def test_matching_job_reuses_an_available_pool_and_skips_provisioning(emu, sm):
    """AWS: "If the warm pool identifies a second training job with matching specifications such as
    instance count or instance type, then the warm pool moves from the first training job to the
    second training job for reuse." and WarmPoolStatus "Reused: The warm pool moved to a matching
    training job for reuse." The reusing job skips provisioning: "Subsequent training jobs that
    match specified parameters run on the retained warm pool infrastructure, which speeds up start
    times by reducing the time spent provisioning resources." (SageMaker AI Managed Warm Pools)"""
    # (a job created while the pool's job still runs takes no pool: the gated test below, which
    # does not depend on how fast the first job ends)
    first, second = _name("wp1"), _name("wp2")
    keep = {"KeepAlivePeriodInSeconds": 900}
    sm.create_training_job(**script_job(first, emu.code, ResourceConfig=keep))
    assert wait_job(sm, first)["WarmPoolStatus"]["Status"] == "Available"
    sm.create_training_job(**script_job(second, emu.code, ResourceConfig=keep))
    done = wait_job(sm, second)
    provider = sm.describe_training_job(TrainingJobName=emu.service.jobs[second].took_pool_from)
    assert provider["WarmPoolStatus"]["Status"] == "Reused" and provider["WarmPoolStatus"]["ReusedByJob"] == second
    assert provider["WarmPoolStatus"]["ResourceRetainedBillableTimeInSeconds"] >= 1
    messages = [t["StatusMessage"] for t in done["SecondaryStatusTransitions"]]
    assert "Reusing warm pool instances" in messages and "Launching requested ML instances" not in messages
    listed = sm.list_training_jobs(NameContains=provider["TrainingJobName"], WarmPoolStatusEquals="Reused")
    assert [j["TrainingJobName"] for j in listed["TrainingJobSummaries"]] == [provider["TrainingJobName"]]


def test_pool_matching_fields_keep_alive_expiry_and_update_to_zero(emu, sm):
    """AWS (WarmPoolStatus): "Terminated: The warm pool is no longer available. Warm pools are
    unavailable if they are terminated by a user, terminated for a patch update, or terminated for
    exceeding the specified KeepAlivePeriodInSeconds." and "To manually terminate a warm pool, set
    the KeepAlivePeriodInSeconds value to 0." (warm-pools guide, Terminate a warm pool). Matching
    needs the same volume size (every matching field: the next test)."""
    short, big, user = _name("short"), _name("bigvol"), _name("user")
    sm.create_training_job(**script_job(short, emu.code, ResourceConfig={"KeepAlivePeriodInSeconds": 60}))
    sm.create_training_job(**script_job(user, emu.code, ResourceConfig={"KeepAlivePeriodInSeconds": 3600, "VolumeSizeInGB": 77}))
    wait_job(sm, short)
    wait_job(sm, user)
    sm.create_training_job(**script_job(big, emu.code, ResourceConfig={"KeepAlivePeriodInSeconds": 60, "VolumeSizeInGB": 31}))
    assert emu.service.jobs[big].took_pool_from is None  # VolumeSizeInGB differs from every pool
    time.sleep(0.1)  # 60 emulated seconds at 1000x
    expired = sm.describe_training_job(TrainingJobName=short)["WarmPoolStatus"]
    assert expired == {"Status": "Terminated", "ResourceRetainedBillableTimeInSeconds": 60}
    sm.update_training_job(TrainingJobName=user, ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    assert sm.describe_training_job(TrainingJobName=user)["WarmPoolStatus"]["Status"] == "Terminated"
    wait_job(sm, big)


def test_a_pool_moves_only_to_a_job_identical_in_every_matching_field():
    """AWS (warm-pools guide, Matching training jobs): "The next training job is a match if the
    following values are identical: RoleArn; ResourceConfig values: InstanceCount, InstanceType,
    VolumeKmsKeyId, VolumeSizeInGB; VpcConfig values: SecurityGroupIds, Subnets;
    EnableInterContainerTrafficEncryption; EnableNetworkIsolation" and "All of these values must be
    the same for a warm pool to move to a subsequent training job for reuse." """
    from cvtune.emulator.quotas import Quotas

    plenty = {"ml.m5.large": 40, "ml.m5.xlarge": 40}
    with _emulator(quotas=Quotas(training_instances=plenty, warm_pool=plenty)) as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        code = upload_script(s3, "print('ok')\n")
        vpc = {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}
        base = {"ResourceConfig": {"KeepAlivePeriodInSeconds": 600, "VolumeKmsKeyId": "alias/a"}, "VpcConfig": vpc}
        first = _name("match0")
        sm.create_training_job(**script_job(first, code, **base))
        assert wait_job(sm, first)["WarmPoolStatus"]["Status"] == "Available"
        differing = {
            "RoleArn": {"RoleArn": "arn:aws:iam::123456789012:role/Other"},
            "InstanceCount": {"ResourceConfig": {**base["ResourceConfig"], "InstanceCount": 2}},
            "InstanceType": {"ResourceConfig": {**base["ResourceConfig"], "InstanceType": "ml.m5.xlarge"}},
            "VolumeKmsKeyId": {"ResourceConfig": {**base["ResourceConfig"], "VolumeKmsKeyId": "alias/b"}},
            "VolumeSizeInGB": {"ResourceConfig": {**base["ResourceConfig"], "VolumeSizeInGB": 31}},
            "SecurityGroupIds": {"VpcConfig": {**vpc, "SecurityGroupIds": ["sg-2"]}},
            "Subnets": {"VpcConfig": {**vpc, "Subnets": ["subnet-2"]}},
            "EnableInterContainerTrafficEncryption": {"EnableInterContainerTrafficEncryption": True},
            "EnableNetworkIsolation": {"EnableNetworkIsolation": True},
        }
        names = {}
        for field, change in differing.items():
            names[field] = _name(f"diff-{field.lower()[:20]}")
            sm.create_training_job(**script_job(names[field], code, **{**base, **change}))
        took = {field: emulator.service.jobs[name].took_pool_from for field, name in names.items()}
        assert took == dict.fromkeys(differing), took  # one differing field: no reuse, whichever
        same = _name("match1")
        sm.create_training_job(**script_job(same, code, **base))
        assert emulator.service.jobs[same].took_pool_from == first
        for name in [*names.values(), same]:
            wait_job(sm, name)
        assert sm.describe_training_job(TrainingJobName=first)["WarmPoolStatus"]["ReusedByJob"] == same


def test_only_an_available_pool_is_taken_and_the_reusing_job_is_in_use(tmp_path):
    """AWS (warm-pools guide, Warm pool lifecycle): "The warm pool stays Available until it either
    identifies a matching training job for reuse or it exceeds the specified
    KeepAlivePeriodInSeconds and is terminated." and "The status of the second training job that
    reused the warm pool becomes InUse." (WarmPoolStatus: "InUse: The warm pool is in use for the
    training job.") A job created while the pool's job still runs finds no Available pool. The
    scripts wait for a file, so no step depends on how fast the machine is."""
    from cvtune.emulator.quotas import Quotas

    gate = str(tmp_path / "open")
    with _emulator(quotas=Quotas(warm_pool={"ml.m5.large": 4})) as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        gated = upload_script(s3, "import os, time\nwhile not os.path.exists(os.environ['GATE']):\n    time.sleep(0.01)\n")
        keep, env = {"KeepAlivePeriodInSeconds": 900}, {"GATE": gate}
        first, early, reuser = _name("avail1"), _name("avail-early"), _name("avail2")
        try:
            sm.create_training_job(**script_job(first, gated, ResourceConfig=keep, Environment=env))
            assert wait_job(sm, first, until=("Training",))["WarmPoolStatus"] == {"Status": "InUse"}
            sm.create_training_job(**script_job(early, gated, ResourceConfig=keep, Environment=env))
            assert emulator.service.jobs[early].took_pool_from is None  # the first job's pool is not Available yet
            open(gate, "w").close()
            assert wait_job(sm, first)["WarmPoolStatus"]["Status"] == "Available"
            wait_job(sm, early)  # a second Available pool; the older one is taken first
            os.remove(gate)
            sm.create_training_job(**script_job(reuser, gated, ResourceConfig=keep, Environment=env))
            running = wait_job(sm, reuser, until=("Training",))
            assert running["WarmPoolStatus"] == {"Status": "InUse"}
            assert emulator.service.jobs[reuser].took_pool_from == first
            provider = sm.describe_training_job(TrainingJobName=first)["WarmPoolStatus"]
            assert (provider["Status"], provider["ReusedByJob"]) == ("Reused", reuser)
        finally:
            open(gate, "w").close()
        assert wait_job(sm, reuser)["WarmPoolStatus"]["Status"] == "Available"


def test_spot_with_keep_alive_is_refused(emu, sm):
    """AWS (warm-pools guide, Considerations): "SageMaker Managed Warm Pools cannot be used with spot
    instances." A spot job asking for a keep-alive is refused before it starts."""
    request = script_job(_name("spot"), emu.code, ResourceConfig={"KeepAlivePeriodInSeconds": 60},
                         EnableManagedSpotTraining=True, StoppingCondition={"MaxRuntimeInSeconds": 60, "MaxWaitTimeInSeconds": 120})
    with pytest.raises(ClientError, match="spot"):
        sm.create_training_job(**request)


# -- quotas and billing -------------------------------------------------------------------------
def test_default_warm_pool_quota_keeps_no_pool_and_raises_nothing():
    """AWS: "The default resource limit for warm pools is 0." and "If a training job is created with
    KeepAlivePeriodInSeconds specified, but you did not request a warm pool limit increase, then a
    warm pool is not retained after the completion of the training job." """
    with _emulator() as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        code = upload_script(s3, "print('ok')\n")
        name = _name("noquota")
        sm.create_training_job(**script_job(name, code, ResourceConfig={"KeepAlivePeriodInSeconds": 600}))
        job = wait_job(sm, name)
        assert job["TrainingJobStatus"] == "Completed" and "WarmPoolStatus" not in job
        assert not emulator.service.warm_pools.pools


def test_instance_quota_counts_running_jobs_and_retained_pools():
    """AWS: "All warm pool instance usage counts toward your SageMaker training resource limit." —
    beyond the per-instance-type limit CreateTrainingJob answers ResourceLimitExceeded."""
    from cvtune.emulator.quotas import Quotas

    quotas = Quotas(training_instances={"ml.m5.large": 2}, warm_pool={"ml.m5.large": 2})
    with _emulator(quotas=quotas) as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        code = upload_script(s3, "print('ok')\n")
        keep = {"KeepAlivePeriodInSeconds": 3600}
        a, b = _name("qa"), _name("qb")
        sm.create_training_job(**script_job(a, code, ResourceConfig=keep))
        sm.create_training_job(**script_job(b, code, ResourceConfig={**keep, "VolumeSizeInGB": 40}))
        wait_job(sm, a)
        wait_job(sm, b)  # both ended: 2 instances retained in pools, none running
        with pytest.raises(ClientError) as caught:
            sm.create_training_job(**script_job(_name("qc"), code, ResourceConfig={**keep, "VolumeSizeInGB": 50}))
        assert caught.value.response["Error"]["Code"] == "ResourceLimitExceeded"
        assert "current utilization of 2 Instances" in caught.value.response["Error"]["Message"]
        reuse = _name("qd")  # matches a's pool: takes it instead of new instances
        sm.create_training_job(**script_job(reuse, code, ResourceConfig=keep))
        assert wait_job(sm, reuse)["TrainingJobStatus"] == "Completed"


CACHE_SCRIPT = """
import os, shutil
cache = os.environ["SAGEMAKER_MANAGED_WARMPOOL_CACHE_DIRECTORY"]
copy = os.path.join(cache, "train")
print("cached before:", os.path.isdir(copy), cache.endswith("/sagemaker/warmpoolcache"))
if not os.path.isdir(copy):
    shutil.copytree(os.environ["SM_CHANNEL_TRAIN"], copy)
print("rows:", open(os.path.join(copy, "part.csv")).read().count(chr(10)))
"""


def test_fastfile_and_the_warm_pool_cache_fetch_a_channel_once_per_pool(emu, sm):
    """AWS: FastFile — "SageMaker streams data directly from S3 to the container with no code
    changes, and provides file system access to the data" (AlgorithmSpecification); the warm
    pool's "dedicated persistent cache directory to store and re-use your information in a
    different job" (SageMaker AI Managed Warm Pools). A FastFile job is charged the bytes its
    script reads; a File job all of its channels, pool or not; the cache ends with the pool."""

    _, s3 = emulator_clients(emu)
    body = b"a,b\n" + b"1,2\n" * 500
    s3.put_object(Bucket=EMU_BUCKET, Key="data/cached/part.csv", Body=body)
    code = upload_script(s3, CACHE_SCRIPT, key="code/cache.tar.gz")

    def channel(mode):
        return [{"ChannelName": "train", "InputMode": mode, "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{EMU_BUCKET}/data/cached/", "S3DataDistributionType": "FullyReplicated"}}}]

    keep = {"KeepAlivePeriodInSeconds": 60, "VolumeSizeInGB": 41}  # a pool key no other test uses
    names = [_name("ff-first"), _name("ff-reused"), _name("file-reused")]
    for name, mode in zip(names, ("FastFile", "FastFile", "File"), strict=True):
        sm.create_training_job(**script_job(name, code, InputDataConfig=channel(mode), ResourceConfig=keep))
        assert wait_job(sm, name)["TrainingJobStatus"] == "Completed", emu.service.logs.get(name)
    assert [sm.describe_training_job(TrainingJobName=n)["WarmPoolStatus"].get("ReusedByJob") for n in names[:2]] == names[1:]
    logs = [emu.service.logs[n] for n in names]
    assert "cached before: False True" in logs[0] and "cached before: True True" in logs[1] and "rows: 501" in logs[1]
    fetched = emu.report()["training_jobs"]["input_bytes"]
    assert [fetched[n] for n in names] == [
        {"bytes": len(body), "of": len(body), "took_pool": False},  # a new pool: read through FastFile, copied
        {"bytes": 0, "of": len(body), "took_pool": True},  # the copy in the pool's cache: nothing fetched
        {"bytes": len(body), "of": len(body), "took_pool": True},  # File mode downloads before the script, pool or not
    ]
    cache_dir = emu.service.warm_pools.pools[names[2]].cache_dir
    assert os.path.isfile(os.path.join(cache_dir, "train", "part.csv"))
    sm.update_training_job(TrainingJobName=names[2], ResourceConfig={"KeepAlivePeriodInSeconds": 0})
    assert not os.path.exists(cache_dir)  # the pool ended: its cache with it


def test_billable_time_starts_at_training_start():
    """AWS (DescribeTrainingJob, TrainingStartTime): "You are billed for the time interval between
    this time and the value of TrainingEndTime." Provisioning (1000 emulated seconds here) is not billed."""
    from cvtune.emulator.service import Timing

    with _emulator(timing=Timing(provision_s=1000, download_s=5, upload_s=5)) as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        name = _name("bill")
        sm.create_training_job(**script_job(name, upload_script(s3, "print('ok')\n")))
        job = wait_job(sm, name)
        wall = (job["TrainingEndTime"] - job["CreationTime"]).total_seconds()
        assert 10 <= job["BillableTimeInSeconds"] < 10 + wall + 2
        assert job["TrainingStartTime"] > job["CreationTime"]
        report = emulator.report()
        assert report["training_jobs"]["billable_seconds"] == job["BillableTimeInSeconds"]
        assert report["api_calls"]["CreateTrainingJob"] == 1


# -- faults -------------------------------------------------------------------------------------
def test_injected_throttling_and_internal_errors_retried_by_retry_strategy():
    """AWS (RetryStrategy): "The retry strategy to use when a training job fails due to an
    InternalServerError." """
    from cvtune.emulator.faults import Faults

    faults = Faults(first_n={"DescribeTrainingJob": ("ThrottlingException", 1)}, job_internal_error_first_n=2)
    with _emulator(faults=faults) as emulator:
        sm, s3 = emulator_clients(emulator)
        s3.create_bucket(Bucket=EMU_BUCKET)
        s3.put_object(Bucket=EMU_BUCKET, Key="data/train/x.csv", Body=b"a\n1\n")
        code = upload_script(s3, "print('ok')\n")
        plain, retried = _name("ise"), _name("retry")
        sm.create_training_job(**script_job(plain, code))
        with pytest.raises(ClientError, match="ThrottlingException"):
            sm.describe_training_job(TrainingJobName=plain)
        failed = wait_job(sm, plain)
        assert failed["TrainingJobStatus"] == "Failed" and failed["FailureReason"].startswith("InternalServerError")
        sm.create_training_job(**script_job(retried, code, RetryStrategy={"MaximumRetryAttempts": 2}))
        job = wait_job(sm, retried)
        assert job["TrainingJobStatus"] == "Completed"
        assert "Restarting" in [t["Status"] for t in job["SecondaryStatusTransitions"]]
        assert emulator.report()["api_errors"]["DescribeTrainingJob:ThrottlingException"] == 1


# -- batch transform ----------------------------------------------------------------------------
SERVE = """
import os
def model_fn(model_dir):
    return open(os.path.join(model_dir, "model.txt")).read()
def input_fn(body, content_type):
    return [line.split(",") for line in body.splitlines() if line]
def predict_fn(rows, model):
    return [f"{model}{len(r)}" for r in rows]
def output_fn(prediction, accept):
    return "\\n".join(prediction)
"""


def _model_and_input(sm, s3, name: str) -> None:
    code = upload_script(s3, SERVE, key=f"serve/{name}/sourcedir.tar.gz", name="serve.py")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"n"))
    s3.put_object(Bucket=EMU_BUCKET, Key=f"models/{name}/model.tar.gz", Body=raw.getvalue())
    sm.create_model(ModelName=name, ExecutionRoleArn="arn:aws:iam::123456789012:role/R", PrimaryContainer={
        "Image": "img", "ModelDataUrl": f"s3://{EMU_BUCKET}/models/{name}/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": code}})
    for key, rows in (("a.csv", 3), ("sub/b.csv", 2)):
        body = "\n".join(",".join(str(i * 10 + c) for c in range(6)) for i in range(rows)) + "\n"
        s3.put_object(Bucket=EMU_BUCKET, Key=f"score/{name}/{key}", Body=body.encode())


def _transform(sm, name: str, job: str, processing: dict | None) -> dict:
    request = {
        "TransformJobName": job, "ModelName": name, "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{EMU_BUCKET}/score/{name}/"}},
                           "ContentType": "text/csv", "SplitType": "Line"},
        "TransformOutput": {"S3OutputPath": f"s3://{EMU_BUCKET}/out/{job}", "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    if processing:
        request["DataProcessing"] = processing
    sm.create_transform_job(**request)
    assert sm.describe_transform_job(TransformJobName=job)["TransformJobStatus"] == "InProgress"
    deadline = time.monotonic() + 60
    while (done := sm.describe_transform_job(TransformJobName=job))["TransformJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return done


def test_transform_reads_every_object_applies_inclusive_input_filters_and_writes_out_files(emu, sm):
    """Batch transform data processing: "$[1:4]" selects the 2nd through 5th columns (inclusive);
    every object under the S3Prefix gets an ``<object>.out``; one range per filter (sdk #1112)."""
    _, s3 = emulator_clients(emu)
    _model_and_input(sm, s3, "colcount")
    plain = _transform(sm, "colcount", _name("bt-all"), None)
    assert plain["TransformJobStatus"] == "Completed", plain.get("FailureReason")
    out = lambda job, key: s3.get_object(Bucket=EMU_BUCKET, Key=f"out/{job}/{key}.out")["Body"].read().decode()  # noqa: E731
    assert out(plain["TransformJobName"], "a.csv") == "n6\nn6\nn6\n" and out(plain["TransformJobName"], "sub/b.csv") == "n6\nn6\n"
    sliced = _transform(sm, "colcount", _name("bt-slice"), {"InputFilter": "$[1:4]"})
    assert out(sliced["TransformJobName"], "a.csv") == "n4\nn4\nn4\n"  # columns 1, 2, 3 and 4
    joined = _transform(sm, "colcount", _name("bt-join"), {"InputFilter": "$[0,5]", "JoinSource": "Input", "OutputFilter": "$[0,6]"})
    assert out(joined["TransformJobName"], "a.csv").splitlines()[1] == "10,n2"
    multi = _transform(sm, "colcount", _name("bt-multi"), {"InputFilter": "$[0:1,3:]"})
    assert multi["TransformJobStatus"] == "Failed" and "more than one range" in multi["FailureReason"]


def test_keep_alive_is_the_reusing_jobs_own(emu, sm):
    """AWS: "When the first training job completes, the provisioned resources are kept alive in a warm
    pool for the period specified in the KeepAlivePeriodInSeconds value" — of the job that ends: a job
    that reused a pool leaves it behind for its own keep-alive."""
    volume = {"VolumeSizeInGB": 61}
    long_, short = _name("keeplong"), _name("keepshort")
    sm.create_training_job(**script_job(long_, emu.code, ResourceConfig={**volume, "KeepAlivePeriodInSeconds": 3600}))
    wait_job(sm, long_)
    sm.create_training_job(**script_job(short, emu.code, ResourceConfig={**volume, "KeepAlivePeriodInSeconds": 30}))
    assert emu.service.jobs[short].took_pool_from == long_
    wait_job(sm, short)
    time.sleep(0.06)  # 30 emulated seconds at 1000x, and then some
    assert sm.describe_training_job(TrainingJobName=short)["WarmPoolStatus"] == {
        "Status": "Terminated", "ResourceRetainedBillableTimeInSeconds": 30}


def test_cli_command_serves_until_terminated(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "cvtune.cli", "sagemaker-emulator", "--time-scale", "0.01",
                             "--warm-pool-quota", "ml.m5.large=2", "--fault", "ListTrainingJobs=ThrottlingException:1",
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode() if proc.poll() is not None else "no ready file"
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        import boto3
        from botocore.config import Config

        sm = boto3.client("sagemaker", endpoint_url=info["endpoint"], config=Config(retries={"total_max_attempts": 1}),
                          **EMU_KEYS)
        with pytest.raises(ClientError, match="ThrottlingException"):
            sm.list_training_jobs()
        with urllib.request.urlopen(info["endpoint"] + "/_emulator/report") as response:
            assert json.load(response)["api_errors"] == {"ListTrainingJobs:ThrottlingException": 1}
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
    bad = subprocess.run([sys.executable, "-m", "cvtune.cli", "sagemaker-emulator", "--fault", "nonsense"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Operation=ErrorCode:rate" in bad.stderr


def test_s3_requests_to_the_emulator_reach_moto(emu):
    """One endpoint_url serves SageMaker and S3 (proxied byte for byte to moto's server)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=emu.endpoint, **EMU_KEYS)
    s3.put_object(Bucket=EMU_BUCKET, Key="proxy/x.txt", Body=b"through the emulator")
    direct = emulator_clients(emu)[1]
    assert direct.get_object(Bucket=EMU_BUCKET, Key="proxy/x.txt")["Body"].read() == b"through the emulator"
    assert s3.head_object(Bucket=EMU_BUCKET, Key="proxy/x.txt")["ContentLength"] == 20
    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket=EMU_BUCKET, Key="proxy/missing")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=EMU_BUCKET, Prefix="proxy/")["Contents"]] == ["proxy/x.txt"]


def test_the_launcher_runs_a_script_like_a_new_process(tmp_path, monkeypatch):
    """Scaled scripts start as forks of one interpreter (cvtune.emulator.launcher): same argv,
    replaced environment, working directory, own session, output to the log, exit codes and stop
    as a fresh process gives them — and each exit reaches its own job, however fast pids recycle."""
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from cvtune.emulator.launcher import Launcher
    from cvtune.emulator.runner import Process

    monkeypatch.setenv("HOST_SECRET", "leak")
    script = tmp_path / "train.py"
    script.write_text("import os, sys\nprint('argv', sys.argv[1:], os.getcwd() == os.environ['WANT_CWD'])\n"
                      "print('env', sorted(k for k in os.environ if k in ('HOST_SECRET', 'WANT_CWD')), os.getsid(0) == os.getpid())\n"
                      "sys.exit(int(os.environ.get('CODE', '0')))\n")
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    launcher = Launcher()
    never = threading.Event()

    def run(i: int) -> tuple[int | None, str]:
        log = tmp_path / f"log-{i}"
        env = {"WANT_CWD": str(tmp_path), "CODE": str(i % 3)}
        code, _ = Process([sys.executable, str(script), "--x", str(i)], env, str(tmp_path), str(log), launcher=launcher).wait(60, never)
        return code, log.read_text()

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(run, range(60)))
        for i, (code, log) in enumerate(results):
            assert code == i % 3 and log.splitlines() == [f"argv ['--x', '{i}'] True", "env ['WANT_CWD'] True"]
        process = Process([sys.executable, str(tmp_path / "boom.py")], {}, str(tmp_path), str(tmp_path / "log-b"), launcher=launcher)
        assert process.wait(30, never) == (1, None) and "RuntimeError: boom" in (tmp_path / "log-b").read_text()
        stop = threading.Event()
        process = Process([sys.executable, str(tmp_path / "sleep.py")], {}, str(tmp_path), str(tmp_path / "log-s"), launcher=launcher)
        stop.set()
        code, cut = process.wait(30, stop)
        assert cut == "stopped" and code is not None and code < 0  # ended by a signal, like a killed process
        assert os.getenv("HOST_SECRET") == "leak"  # the emulator's own environment is untouched
    finally:
        launcher.stop()
