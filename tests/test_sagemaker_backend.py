"""The SageMaker backend against botocore's own model of the API (Stubber) and S3 on moto.

Every SageMaker call goes through a real botocore client with a Stubber, so requests and
responses are validated against the service model. Single calls use a strict Stubber with the
exact expected request; whole tuning runs use :class:`FakeSageMaker`, which keeps job state and
answers each call through a Stubber as it comes (the tuner's call order depends on timing).
The async path (a deferred run's polls in the triggerer) runs on a real aiobotocore client with
aiobotocore's ``AioStubber`` (botocore's Stubber with async-shaped responses: the same request
and response validation against the model).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import json
import re
import tarfile
import threading

import boto3
import botocore.exceptions
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from cvtune.backends import get_backend
from cvtune.backends.base import JobSpec
from cvtune.config import parse_config
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError, RunFailedError
from cvtune.ledger import RunLedger
from cvtune.platform import platform_for
from cvtune.sagemaker.backend import SageMakerBackend
from cvtune.sagemaker.config import SAGEMAKER_KEYS, SageMakerConfig
from cvtune.sagemaker.staging import pack_sourcedir
from cvtune.sagemaker.throttle import CapacityError
from cvtune.settings import Settings
from cvtune.store import ArtifactStore
from cvtune.tuner import CVTuner
from tests.aws_fakes import record_to_thread

REGION = "us-east-1"
BUCKET = "cvtune-test-bucket"
PREFIX = f"s3://{BUCKET}/cv"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:123456789012:training-job/"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
T0 = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
BASE = {"role_arn": ROLE, "s3_prefix": PREFIX, "region_name": REGION}


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


def sm_client():
    return botocore.session.get_session().create_client("sagemaker", region_name=REGION)


def count_calls(client, operation: str) -> list[dict]:
    calls: list[dict] = []
    client.meta.events.register(f"before-call.s3.{operation}", lambda params, **_: calls.append(params))
    return calls


@pytest.fixture
def code_dir(tmp_path):
    d = tmp_path / "code"
    d.mkdir()
    (d / "train.py").write_text("print('validation:score=0.9;')\n")
    (d / "helpers.py").write_text("X = 1\n")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"junk")
    return d


@pytest.fixture
def channels(tmp_path):
    out = {}
    for name in ("train", "validation"):
        d = tmp_path / "fold-0" / name
        d.mkdir(parents=True)
        (d / "data.csv").write_text(f"target,x\n1,{len(name)}\n0,2\n")
        out[name] = str(d)
    return out


def spec(code_dir, channels, name="run1-t0000-f0", **changes) -> JobSpec:
    values = dict(
        name=name,
        entry_point=str(code_dir / "train.py"),
        hyperparameters={"eta": 0.1, "max_depth": 5, "model": "xgboost", "flag": True},
        channels=channels,
        metric_definitions=[{"Name": "validation:score", "Regex": "validation:score=([0-9.]+);"}],
        max_runtime_s=900,
        tags={"cvtune:run": "run1", "cvtune:trial": "0", "cvtune:fold": "0"},
    )
    values.update(changes)
    return JobSpec(**values)


def backend(client, s3, sleeps: list[float] | None = None, **options) -> SageMakerBackend:
    config = SageMakerConfig.from_options({**BASE, **options})
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return SageMakerBackend(config, sagemaker_client=client, s3_client=s3, sleep=sleep)


def describe_response(name, status, **extra):
    out = {
        "TrainingJobName": name,
        "TrainingJobArn": ACCOUNT_ARN + name,
        "ModelArtifacts": {"S3ModelArtifacts": f"{PREFIX}/jobs/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": {"InProgress": "Training", "Completed": "Completed", "Failed": "Failed",
                            "Stopping": "Stopping", "Stopped": "Stopped"}[status],
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
        "CreationTime": T0,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30,
                           "KeepAlivePeriodInSeconds": 1800},
    }
    out.update(extra)
    return out


# -- config and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"rol_arn": ROLE}, "rol_arn", "did you mean 'role_arn'"),
        ({"role_arn": ""}, "role_arn", "is required"),
        ({"role_arn": "arn:aws:iam::12:role/x"}, "role_arn", "not an IAM role ARN"),
        ({"s3_prefix": ""}, "s3_prefix", "is required"),
        ({"s3_prefix": "/local/dir"}, "s3_prefix", "not an s3://bucket/prefix"),
        ({"instance_type": "m5.large"}, "instance_type", "not a SageMaker instance type"),
        ({"instance_count": "2"}, "instance_count", "expected an integer"),
        ({"instance_count": 0}, "instance_count", "between 1 and"),
        ({"volume_size_gb": True}, "volume_size_gb", "expected an integer"),
        ({"keep_alive_period_s": 3601}, "keep_alive_period_s", "0 disables warm pools"),
        ({"keep_alive_period_s": -1}, "keep_alive_period_s", "between 0 and 3600"),
        ({"use_spot_instances": True}, "use_spot_instances", "set keep_alive_period_s to 0"),
        ({"enable_profiler": "yes"}, "enable_profiler", "true or false"),
        ({"region_name": "mars-1"}, "region_name", "not an AWS region"),
        ({"framework": "pytorch"}, "framework", "set image_uri"),
        ({"framework_version": "9.9-9"}, "framework_version", "set image_uri"),
        ({"vpc_config": {"Subnets": ["subnet-1"]}}, "vpc_config.SecurityGroupIds", "non-empty list"),
        ({"vpc_config": {"Subnets": ["s"], "SecurityGroupIds": ["g"], "Extra": 1}}, "vpc_config.Extra", "unknown"),
        ({"tags": {"aws:x": "1"}}, "tags.aws:x", "reserved"),
        ({"tags": {"team": 5}}, "tags.team", "strings"),
        ({"tags": ["team"]}, "tags", "mapping"),
        ({"max_parallel_jobs": 0}, "max_parallel_jobs", "between 1 and"),
        ({"image_uri": ""}, "image_uri", "non-empty string"),
        ({"release_pools": "always"}, "release_pools", "one of auto, never"),
        ({"input_mode": "Pipe"}, "input_mode", "one of File, FastFile"),
        ({"price_per_instance_hour": -1}, "price_per_instance_hour", "non-negative number"),
        ({"price_per_instance_hour": "0.1"}, "price_per_instance_hour", "non-negative number"),
    ],
)
def test_each_bad_setting_is_a_config_error_naming_it(options, field, words):
    with pytest.raises(ConfigError) as err:
        SageMakerConfig.from_options({**BASE, **options}, source="connection cvtune_default extra")
    assert err.value.field == f"connection cvtune_default extra.{field}"
    assert words in str(err.value)


def test_config_pieces_and_image_lookup():
    config = SageMakerConfig.from_options(
        {**BASE, "s3_prefix": PREFIX + "/", "volume_kms_key_id": "kms-1", "tags": {"team": "ml"},
         "vpc_config": {"Subnets": ["subnet-b", "subnet-a"], "SecurityGroupIds": ["sg-1"]}}
    )
    assert config.s3_prefix == PREFIX  # trailing slash dropped
    assert config.resource_config() == {
        "InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30, "VolumeKmsKeyId": "kms-1",
        "KeepAlivePeriodInSeconds": 1800,
    }
    assert config.resolved_image_uri() == IMAGE
    assert SageMakerConfig.from_options({**BASE, "region_name": "eu-west-1"}).resolved_image_uri() == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:1.7-1"
    )
    assert SageMakerConfig.from_options({**BASE, "region_name": "cn-north-1"}).resolved_image_uri().endswith(
        ".dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-xgboost:1.7-1"
    )
    assert SageMakerConfig.from_options({**BASE, "image_uri": "my/image:1"}).resolved_image_uri() == "my/image:1"
    with pytest.raises(ConfigError, match="region_name.*set image_uri"):
        SageMakerConfig.from_options({**BASE, "region_name": "xx-nowhere-9"}).resolved_image_uri()
    assert config.tag_list({"cvtune:run": "r"}) == [{"Key": "team", "Value": "ml"}, {"Key": "cvtune:run", "Value": "r"}]
    # the subnet order does not matter for a warm pool, any other difference does
    same = SageMakerConfig.from_options(
        {**BASE, "volume_kms_key_id": "kms-1", "tags": {"other": "tag"},
         "vpc_config": {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}}
    )
    assert same.warm_pool_key() == config.warm_pool_key()
    for change in ({"instance_count": 2}, {"volume_size_gb": 31}, {"enable_network_isolation": True},
                   {"role_arn": ROLE + "2"}, {"framework_version": "1.5-1"}):
        other = SageMakerConfig.from_options(
            {**BASE, "volume_kms_key_id": "kms-1",
             "vpc_config": {"Subnets": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-1"]}, **change}
        )
        assert other.warm_pool_key() != config.warm_pool_key(), change


def test_settings_and_get_backend_build_the_sagemaker_backend(monkeypatch):
    settings = Settings.from_extra({"backend": "sagemaker", **BASE}, source="connection c extra")
    assert settings.artifact_root == f"{PREFIX}/artifacts"
    assert Settings.from_extra({"backend": "sagemaker", **BASE, "artifact_root": "s3://x-y/z"}).artifact_root == "s3://x-y/z"
    with pytest.raises(ConfigError) as err:
        Settings.from_extra({"backend": "sagemaker", **BASE, "workers": 2}, source="connection c extra")
    assert err.value.field == "connection c extra.workers"
    assert {"role_arn", "s3_prefix", "keep_alive_period_s", "artifact_root", "backend"} <= SAGEMAKER_KEYS
    backend = platform_for(settings).make_backend()
    assert isinstance(backend, SageMakerBackend) and backend.config.role_arn == ROLE
    direct = get_backend("sagemaker", **BASE, max_parallel_jobs=3, source="x")
    assert direct.capacity == 3
    with pytest.raises(ConfigError) as err:
        get_backend("sagemaker", **BASE, worker=1, source="--backend-config")
    assert err.value.field == "--backend-config.worker"


def test_clients_come_from_the_amazon_provider_hook_with_adaptive_retries(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_TEST",
        json.dumps({"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret",
                    "extra": {"region_name": "eu-west-2"}}),
    )
    config = SageMakerConfig.from_options({**BASE, "region_name": None, "aws_conn_id": "aws_test"})
    client = config.client()
    assert client.meta.service_model.service_name == "sagemaker"
    assert client.meta.region_name == "eu-west-2"  # from the Airflow connection
    assert client.meta.config.retries["mode"] == "adaptive" and client.meta.config.retries["total_max_attempts"] == 11  # 10 retries
    assert config.client("s3").meta.service_model.service_name == "s3"
    assert SageMakerBackend(config).region == "eu-west-2"


# -- code and data staging -------------------------------------------------------------------


def test_sourcedir_is_deterministic_and_skips_caches(code_dir):
    data, sha = pack_sourcedir(str(code_dir))
    (code_dir / "train.py").touch()  # a new mtime alone changes nothing
    assert pack_sourcedir(str(code_dir)) == (data, sha)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["helpers.py", "train.py"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    (code_dir / "train.py").write_text("print('changed')\n")
    assert pack_sourcedir(str(code_dir))[1] != sha


# -- single calls, strict Stubber ------------------------------------------------------------


def test_create_training_job_sends_the_exact_request_and_uploads_once(code_dir, channels, s3):
    client = sm_client()
    puts = count_calls(s3, "PutObject")
    b = backend(client, s3, tags={"team": "ml"})
    expected = {
        "TrainingJobName": "run1-t0000-f0",
        "HyperParameters": {
            "eta": "0.1",
            "max_depth": "5",
            "model": '"xgboost"',
            "flag": "true",
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": ANY,
            "sagemaker_region": '"us-east-1"',
            "sagemaker_container_log_level": "20",
            "sagemaker_job_name": '"run1-t0000-f0"',
        },
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "EnableSageMakerMetricsTimeSeries": False,
            "MetricDefinitions": [{"Name": "validation:score", "Regex": "validation:score=([0-9.]+);"}],
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {"ChannelName": name, "InputMode": "File", "ContentType": "text/csv",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": ANY,
                                             "S3DataDistributionType": "FullyReplicated"}}}
            for name in ("train", "validation")
        ],
        "OutputDataConfig": {"S3OutputPath": f"{PREFIX}/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30,
                           "KeepAlivePeriodInSeconds": 1800},
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
        "EnableNetworkIsolation": False,
        "EnableInterContainerTrafficEncryption": False,
        "Tags": [{"Key": "team", "Value": "ml"}, {"Key": "cvtune:run", "Value": "run1"},
                 {"Key": "cvtune:trial", "Value": "0"}, {"Key": "cvtune:fold", "Value": "0"}],
        "ProfilerConfig": {"DisableProfiler": True},
        "RetryStrategy": {"MaximumRetryAttempts": 2},
        # on warm pools: each channel's content id, the key of its copy in the pool's cache
        "Environment": {"CVTUNE_CHANNEL_DIGEST_TRAIN": ANY, "CVTUNE_CHANNEL_DIGEST_VALIDATION": ANY},
    }
    with Stubber(client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": ACCOUNT_ARN + "run1-t0000-f0"}, expected)
        stub.add_response("create_training_job", {"TrainingJobArn": ACCOUNT_ARN + "run1-t0000-f1"}, {
            **expected, "TrainingJobName": "run1-t0000-f1", "Tags": ANY,
            "HyperParameters": {**expected["HyperParameters"], "sagemaker_job_name": '"run1-t0000-f1"'}})
        b.submit(spec(code_dir, channels))
        request = b.build_request(spec(code_dir, channels))
        b.submit(spec(code_dir, channels, name="run1-t0000-f1", tags={"cvtune:run": "run1", "cvtune:trial": "0", "cvtune:fold": "1"}))
        stub.assert_no_pending_responses()

    code_uri = json.loads(request["HyperParameters"]["sagemaker_submit_directory"])
    assert re.fullmatch(rf"{PREFIX}/code/[0-9a-f]{{64}}/sourcedir\.tar\.gz", code_uri)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert f"cv/code/{code_uri.split('/')[-2]}/sourcedir.tar.gz" in keys
    uris = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]]
    for uri, name in zip(uris, ("train", "validation"), strict=True):
        assert re.fullmatch(rf"{PREFIX}/data/[0-9a-f]{{64}}/", uri)
        assert uri.split("/")[-2] == request["Environment"][f"CVTUNE_CHANNEL_DIGEST_{name.upper()}"]
        body = s3.get_object(Bucket=BUCKET, Key=uri[len(f"s3://{BUCKET}/"):] + "data.csv")["Body"].read()
        assert body == open(channels[name] + "/data.csv", "rb").read()
    # code + 2 channel files, once each although two jobs were submitted
    assert len(puts) == 3
    tarball = s3.get_object(Bucket=BUCKET, Key=code_uri[len(f"s3://{BUCKET}/"):])["Body"].read()
    assert tarball == pack_sourcedir(str(code_dir))[0]

    # a second process: HeadObject finds everything, nothing is uploaded again
    other = backend(sm_client(), s3, tags={"team": "ml"})
    assert other.build_request(spec(code_dir, channels)) == request
    assert len(puts) == 3


def test_optional_request_parts(code_dir, channels, s3):
    b = backend(sm_client(), s3, keep_alive_period_s=0, use_spot_instances=True, enable_profiler=True,
                output_kms_key_id="kms-out", volume_kms_key_id="kms-vol", enable_network_isolation=True,
                vpc_config={"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}, instance_count=2)
    request = b.build_request(spec(code_dir, channels, output_uri=f"{PREFIX}/final/"))
    assert request["ResourceConfig"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 30,
                                         "VolumeKmsKeyId": "kms-vol"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 900, "MaxWaitTimeInSeconds": 1800}
    assert request["EnableManagedSpotTraining"] is True and "ProfilerConfig" not in request
    assert request["OutputDataConfig"] == {"S3OutputPath": f"{PREFIX}/final", "KmsKeyId": "kms-out"}
    assert request["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}
    assert request["EnableNetworkIsolation"] is True
    with pytest.raises(ConfigError, match="hyperparameters.notes: too long for SageMaker"):
        b.build_request(spec(code_dir, channels, hyperparameters={"notes": "x" * 2500}))


def test_s3_channels_are_used_in_place_with_their_content_type(code_dir, s3):
    s3.put_object(Bucket=BUCKET, Key="folds/fold-0/train/data.parquet", Body=b"x")
    b = backend(sm_client(), s3)
    request = b.build_request(spec(code_dir, {"train": f"s3://{BUCKET}/folds/fold-0/train/"}))
    [channel] = request["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/folds/fold-0/train/"
    assert channel["ContentType"] == "application/x-parquet"


def test_describe_in_progress_then_completed(s3):
    client = sm_client()
    b = backend(client, s3)
    name = "run1-t0002-f1"
    tags = [{"Key": "cvtune:run", "Value": "run1"}, {"Key": "cvtune:trial", "Value": "2"}, {"Key": "cvtune:fold", "Value": "1"}]
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe_response(name, "InProgress", TrainingStartTime=T0,
                          WarmPoolStatus={"Status": "InUse"}), {"TrainingJobName": name})
        stub.add_response("describe_training_job", describe_response(name, "Stopping"), {"TrainingJobName": name})
        stub.add_response(
            "describe_training_job",
            describe_response(
                name, "Completed", TrainingStartTime=T0, TrainingEndTime=T0 + dt.timedelta(seconds=95),
                BillableTimeInSeconds=95, WarmPoolStatus={"Status": "Available", "ResourceRetainedBillableTimeInSeconds": 7},
                FinalMetricDataList=[{"MetricName": "validation:auc", "Value": 0.93, "Timestamp": T0},
                                     {"MetricName": "train:auc", "Value": 0.99, "Timestamp": T0}],
            ),
            {"TrainingJobName": name},
        )
        # tags only when someone asks who owns the job (re-attaching), listed once
        stub.add_response("list_tags", {"Tags": tags[:2], "NextToken": "more"}, {"ResourceArn": ACCOUNT_ARN + name})
        stub.add_response("list_tags", {"Tags": tags[2:]}, {"ResourceArn": ACCOUNT_ARN + name, "NextToken": "more"})
        running = b.describe(name)
        stopping = b.describe(name)  # Stopping is still in flight for the tuner
        done = b.describe(name)  # one DescribeTrainingJob per describe, nothing else
        owner = b.owner_tags(name)
        assert b.owner_tags(name) is owner  # ListTags once per job
        stub.assert_no_pending_responses()
    assert running.status == "InProgress" and not running.done and running.warm_pool_status == "InUse"
    assert owner == {"cvtune:run": "run1", "cvtune:trial": "2", "cvtune:fold": "1"}
    assert stopping.status == "InProgress"
    assert done.status == "Completed" and done.done
    assert done.final_metrics == {"validation:auc": 0.93, "train:auc": 0.99}
    assert done.model_artifacts == f"{PREFIX}/jobs/{name}/output/model.tar.gz"
    assert done.start_time == T0.timestamp() and done.end_time == T0.timestamp() + 95
    assert done.billable_seconds == 95
    assert done.warm_pool_status == "Available" and done.pool_status == "Available" and done.retained_seconds == 7
    assert done.log_uri.startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/") and name in done.log_uri


def test_describe_failed_stopped_and_passed_on(s3):
    client = sm_client()
    b = backend(client, s3, keep_alive_period_s=0)  # no warm pools: no ListTrainingJobs either
    b._tags.update({n: {} for n in ("a", "b", "c")})
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe_response(
            "a", "Failed", FailureReason="AlgorithmError: ValueError: bad column"), {"TrainingJobName": "a"})
        stub.add_response("describe_training_job", describe_response("b", "Stopped"), {"TrainingJobName": "b"})
        stub.add_response("describe_training_job", describe_response(
            "c", "Completed", WarmPoolStatus={"Status": "Reused", "ReusedByJob": "d"}), {"TrainingJobName": "c"})
        failed, stopped, provider = b.describe("a"), b.describe("b"), b.describe("c")
        stub.assert_no_pending_responses()
    assert failed.status == "Failed" and failed.failure_reason == "AlgorithmError: ValueError: bad column"
    assert stopped.status == "Stopped" and stopped.done
    assert provider.warm_pool_status == "PassedOn"  # its pool went to d: not a reuse by c
    assert provider.pool_status == "Reused" and provider.pool_reused_by == "d"


def test_not_found_and_name_collision(code_dir, channels, s3):
    client = sm_client()
    b = backend(client, s3)
    with Stubber(client) as stub:
        stub.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.",
                              expected_params={"TrainingJobName": "nope"})
        stub.add_client_error(
            "create_training_job", "ResourceInUse",
            "Training job names must be unique within an AWS account and region, and a training job with this name already exists",
        )
        stub.add_response("describe_training_job", describe_response("run1-t0000-f0", "InProgress"),
                          {"TrainingJobName": "run1-t0000-f0"})
        stub.add_response("list_tags", {"Tags": [{"Key": "cvtune:run", "Value": "other"}]},
                          {"ResourceArn": ACCOUNT_ARN + "run1-t0000-f0"})
        with pytest.raises(JobNotFoundError):
            b.describe("nope")
        with pytest.raises(JobExistsError):
            b.submit(spec(code_dir, channels))
        # after a collision the tags are those of the job that exists, not of our spec
        assert b.owner_tags("run1-t0000-f0") == {"cvtune:run": "other"}
        stub.assert_no_pending_responses()


def test_stop(s3):
    client = sm_client()
    b = backend(client, s3)
    with Stubber(client) as stub:
        stub.add_response("stop_training_job", {}, {"TrainingJobName": "j1"})
        stub.add_client_error("stop_training_job", "ValidationException",
                              "The request was rejected because the training job is in status Completed.",
                              expected_params={"TrainingJobName": "j2"})
        stub.add_client_error("stop_training_job", "ValidationException", "Requested resource not found.",
                              expected_params={"TrainingJobName": "j3"})
        b.stop("j1")
        b.stop("j2")  # already ended: left as it is
        with pytest.raises(JobNotFoundError):
            b.stop("j3")
        stub.assert_no_pending_responses()


def test_throttled_create_backs_off_then_succeeds_or_gives_up(code_dir, channels, s3):
    client = sm_client()
    sleeps: list[float] = []
    b = backend(client, s3, sleeps=sleeps)
    with Stubber(client) as stub:
        stub.add_client_error("create_training_job", "ThrottlingException", "Rate exceeded")
        stub.add_client_error("create_training_job", "ResourceLimitExceeded", "The account-level service limit ...")
        stub.add_response("create_training_job", {"TrainingJobArn": ACCOUNT_ARN + "run1-t0000-f0"})
        b.submit(spec(code_dir, channels))
        stub.assert_no_pending_responses()
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= b.backoff.base_s and 0 <= sleeps[1] <= b.backoff.limit_base_s * 2

    sleeps.clear()
    with Stubber(client) as stub:
        for _ in range(b.backoff.attempts):
            stub.add_client_error("create_training_job", "ResourceLimitExceeded", "limit")
        with pytest.raises(CapacityError, match="refused 6 times .*ResourceLimitExceeded.*lower max_parallel_jobs"):
            b.submit(spec(code_dir, channels, name="run1-t0000-f1"))
        stub.assert_no_pending_responses()
    assert len(sleeps) == b.backoff.attempts - 1
    assert all(s <= b.backoff.limit_cap_s for s in sleeps)

    with Stubber(client) as stub:  # other errors are not retried
        stub.add_client_error("create_training_job", "ValidationException", "Could not assume role")
        with pytest.raises(Exception, match="Could not assume role"):
            b.submit(spec(code_dir, channels, name="run1-t0000-f2"))
        stub.assert_no_pending_responses()


# -- whole runs through the tuner ------------------------------------------------------------


class FakeSageMaker:
    """A scripted SageMaker: job state in memory, every answer through a real client + Stubber.

    Jobs finish on their second describe with ``outcome(name)``; a completed job keeps its pool
    ``Available`` and the next job created takes it (the provider becomes ``Reused``).
    """

    def __init__(self, outcome, jobs=None):
        self.client = sm_client()
        self.meta = self.client.meta
        self.stubber = Stubber(self.client)
        self.stubber.activate()
        self.outcome = outcome
        self.jobs: dict[str, dict] = {} if jobs is None else jobs
        self.calls: list[tuple[str, str]] = []
        self.hide_once: set[str] = set()  # describe says "not found" once (eventual consistency)
        self.crash_after_create: set[str] = set()

    def _answer(self, operation, params, response=None, error=None):
        if error:
            self.stubber.add_client_error(operation, error[0], error[1], expected_params=params)
        else:
            self.stubber.add_response(operation, response, params)
        return getattr(self.client, operation)(**params)

    def create_training_job(self, **params):
        name = params["TrainingJobName"]
        self.calls.append(("create", name))
        if name in self.jobs:
            return self._answer("create_training_job", params, error=("ResourceInUse", f"job {name} already exists"))
        pool = next((j for j in self.jobs.values() if j["pool"] == "Available"), None)
        if pool is not None:
            pool["pool"], pool["reused_by"] = "Reused", name
        self.jobs[name] = {"request": params, "status": "InProgress", "polls": 0, "pool": "InUse",
                           "reused": pool is not None, "tags": {t["Key"]: t["Value"] for t in params["Tags"]}}
        out = self._answer("create_training_job", params, {"TrainingJobArn": ACCOUNT_ARN + name})
        if name in self.crash_after_create:
            raise KeyboardInterrupt(f"simulated crash after creating {name}")
        return out

    def describe_training_job(self, **params):
        name = params["TrainingJobName"]
        self.calls.append(("describe", name))
        if name not in self.jobs or name in self.hide_once:
            self.hide_once.discard(name)
            return self._answer("describe_training_job", params, error=("ValidationException", "Requested resource not found."))
        job = self.jobs[name]
        job["polls"] += 1
        if job["status"] == "Stopping" or (job["status"] == "InProgress" and job["polls"] >= 2):
            status, metrics, reason = ("Stopped", {}, None) if job["status"] == "Stopping" else self.outcome(name)
            job.update(status=status, metrics=metrics, reason=reason, billable=30 if job["reused"] else 90)
            job["pool"] = "Available" if status == "Completed" else "Terminated"
        extra = {"TrainingStartTime": T0, "WarmPoolStatus": {"Status": job["pool"]}}
        if job["pool"] == "Available":
            job["retained"] = job.get("retained", 0) + 5  # the pool is billed while it waits
        if job["pool"] in ("Available", "Reused", "Terminated") and "retained" in job:
            extra["WarmPoolStatus"]["ResourceRetainedBillableTimeInSeconds"] = job["retained"]
        if job["pool"] == "Reused":
            extra["WarmPoolStatus"]["ReusedByJob"] = job["reused_by"]
        if job["status"] not in ("InProgress", "Stopping"):
            extra.update(TrainingEndTime=T0 + dt.timedelta(seconds=job["billable"]), BillableTimeInSeconds=job["billable"],
                         FinalMetricDataList=[{"MetricName": k, "Value": v, "Timestamp": T0} for k, v in job["metrics"].items()])
            if job["reason"]:
                extra["FailureReason"] = job["reason"]
        return self._answer("describe_training_job", params, describe_response(name, job["status"], **extra))

    def list_tags(self, **params):
        name = params["ResourceArn"].rsplit("/", 1)[-1]
        self.calls.append(("list_tags", name))
        tags = [{"Key": k, "Value": v} for k, v in self.jobs[name]["tags"].items()]
        return self._answer("list_tags", params, {"Tags": tags})

    def list_training_jobs(self, **params):
        self.calls.append(("list", params["NameContains"]))
        summaries = [
            {"TrainingJobName": n, "TrainingJobArn": ACCOUNT_ARN + n, "CreationTime": T0, "TrainingJobStatus": j["status"],
             "WarmPoolStatus": {"Status": "Reused", "ReusedByJob": j["reused_by"]}}
            for n, j in self.jobs.items() if params["NameContains"] in n and j["pool"] == "Reused"
        ]
        return self._answer("list_training_jobs", params, {"TrainingJobSummaries": summaries})

    def update_training_job(self, **params):
        name = params["TrainingJobName"]
        self.calls.append(("update", name))
        if self.jobs[name]["pool"] != "Available":
            return self._answer("update_training_job", params, error=("ValidationException", "no warm pool to update"))
        self.jobs[name]["pool"] = "Terminated"
        return self._answer("update_training_job", params, {"TrainingJobArn": ACCOUNT_ARN + name})

    def stop_training_job(self, **params):
        name = params["TrainingJobName"]
        self.calls.append(("stop", name))
        if self.jobs[name]["status"] != "InProgress":
            return self._answer("stop_training_job", params, error=("ValidationException", "job already ended"))
        self.jobs[name]["status"] = "Stopping"
        return self._answer("stop_training_job", params, {})


def tuning_config(code_dir, **changes):
    data = {
        "entry_point": str(code_dir / "train.py"),
        "static_hyperparameters": {"model": "toy"},
        "objective": {"metric": "validation:score", "type": "Maximize"},
        "metric_definitions": [{"Name": "validation:score", "Regex": "validation:score=([0-9.]+);"}],
        "parameter_ranges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        "max_trials": 4,
        "max_parallel_trials": 2,
        "seed": 5,
    }
    data.update(changes)
    return parse_config(data, base_dir=None)


@pytest.fixture
def manifest(tmp_path):
    folds = []
    for i in range(3):
        fold = {"fold": i, "train_rows": 2, "validation_rows": 1}
        for name in ("train", "validation"):
            d = tmp_path / "folds" / f"fold-{i}" / name
            d.mkdir(parents=True)
            (d / "data.csv").write_text(f"target,x\n1,{i}\n0,{name}\n")
            fold[f"{name}_uri"] = str(d)
        folds.append(fold)
    return {"manifest_uri": str(tmp_path / "folds" / "manifest.json"), "fingerprint": "fp-1", "folds": folds}


def score(name: str) -> float:
    trial, fold = re.search(r"-t(\d+)-f(\d+)$", name).groups()
    return 0.8 + 0.01 * int(trial) + 0.001 * int(fold)


def completes(name):
    return "Completed", {"validation:score": score(name)}, None


def outcome(name):
    if name.endswith("-t0001-f1"):
        return "Failed", {}, "AlgorithmError: simulated failure"
    return completes(name)


def test_a_tuning_run_on_sagemaker_with_failures_billing_and_warm_pool_reuse(code_dir, manifest, s3, s3_server):
    fake = FakeSageMaker(outcome)
    s3_server.create_bucket("ledgers")
    root = "s3://ledgers/artifacts"  # the ledger lives on S3 too (moto's server: the store is s3fs)
    store = ArtifactStore({"key": "k", "secret": "s", "endpoint_url": s3_server.endpoint, "region_name": REGION})
    b = SageMakerBackend(SageMakerConfig.from_options({**BASE, "max_parallel_jobs": 3}), sagemaker_client=fake,
                         s3_client=s3, sleep=lambda s: None)
    tuner = CVTuner(tuning_config(code_dir), manifest, b, run_id="smrun", artifact_root=root, poll_s=0, store=store)
    summary = tuner.run()
    fake.stubber.assert_no_pending_responses()

    assert summary["trials"] == {"Completed": 3, "Failed": 1}
    assert summary["best"]["trial"] == 3 and summary["best"]["fold_scores"] == [score(f"smrun-t0003-f{f}") for f in range(3)]
    created = [n for op, n in fake.calls if op == "create"]
    # trial 1 failed on fold 1: its fold 2 was cancelled or stopped, never completed
    assert "smrun-t0001-f1" in created and len(created) == len(set(created))
    ended = {n: j for n, j in fake.jobs.items() if j["status"] in ("Completed", "Failed", "Stopped")}
    assert summary["billable_seconds"] == sum(j["billable"] for j in ended.values())
    reused = sum(1 for j in ended.values() if j["reused"])
    assert reused >= 3 and summary["warm_pool_reused"] == reused
    assert summary["fold_jobs"] == len(created)
    assert len(created) <= 12
    # every job went out with the same warm-pool-relevant request parts
    assert len({json.dumps(j["request"]["ResourceConfig"], sort_keys=True) for j in fake.jobs.values()}) == 1
    # the tags the tuner checks on resume were sent with every job
    assert all(j["tags"]["cvtune:run"] == "smrun" for j in fake.jobs.values())
    ledger = RunLedger.load(f"{root}/runs/smrun/ledger.json", store)
    assert ledger.status == "Completed" and store.exists(f"{root}/runs/smrun")
    # the jobs the ledger counts as reusing a pool are exactly those that took one
    counted = {j["job_name"] for t in ledger.trials for j in t["fold_jobs"] if j["warm_pool_status"] == "Reused"}
    assert counted == {n for n, j in ended.items() if j["reused"]}
    passed_on = {j["job_name"] for t in ledger.trials for j in t["fold_jobs"] if j["warm_pool_status"] == "PassedOn"}
    assert passed_on <= {n for n, j in fake.jobs.items() if j["pool"] == "Reused"}
    assert store.listdir(f"{root}/runs") == ["smrun"]
    # code + 6 channel directories uploaded once for 11-12 fold jobs
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="cv/")["Contents"]]
    assert sum(k.startswith("cv/code/") for k in keys) == 1 and sum(k.startswith("cv/data/") for k in keys) == 6


def test_pools_are_released_once_nothing_will_use_them_and_billed_with_retained_time(code_dir, manifest, s3, tmp_path):
    fake = FakeSageMaker(completes)
    options = {**BASE, "max_parallel_jobs": 3, "price_per_instance_hour": 0.5, "instance_count": 2}
    b = SageMakerBackend(SageMakerConfig.from_options(options), sagemaker_client=fake, s3_client=s3, sleep=lambda s: None)
    summary = CVTuner(tuning_config(code_dir), manifest, b, run_id="rel", artifact_root=str(tmp_path), poll_s=0).run()
    ops = [op for op, _ in fake.calls]
    last_create = max(i for i, op in enumerate(ops) if op == "create")
    released = [n for op, n in fake.calls if op == "update"]
    assert released and all(i > last_create for i, op in enumerate(ops) if op == "update")
    # every pool ended but one — the one the next step (final training) takes
    assert [n for n, j in fake.jobs.items() if j["pool"] == "Available"] == [
        n for n in fake.jobs if n not in released and fake.jobs[n]["pool"] not in ("Reused", "Terminated")]
    assert sum(1 for j in fake.jobs.values() if j["pool"] == "Available") == 1
    ledger = RunLedger.load(summary["ledger"])
    jobs = {j["job_name"]: j for t in ledger.trials for j in t["fold_jobs"]}
    assert {n for n, j in jobs.items() if j.get("pool_released")} == set(released)
    # retained time is counted per job, with the pool's last status; reuse learned from providers only
    assert summary["retained_seconds"] == sum(j.get("retained_seconds") or 0 for j in jobs.values()) > 0
    assert summary["billable_seconds"] == sum(j["billable"] for j in fake.jobs.values())
    assert summary["instance_count"] == 2
    assert summary["instance_seconds"] == 2 * (summary["billable_seconds"] + summary["retained_seconds"])
    assert summary["instance_hours"] == round(summary["instance_seconds"] / 3600, 4)
    assert summary["cost"] == round(summary["instance_seconds"] / 3600 * 0.5, 4)
    assert {n for n, j in jobs.items() if j.get("took_pool_of")} == {n for n, j in fake.jobs.items() if j["reused"]}
    assert all(jobs[j["reused_by"]]["took_pool_of"] == n for n, j in fake.jobs.items() if j["pool"] == "Reused")
    assert "list" not in ops and "list_tags" not in ops

    never = FakeSageMaker(completes)
    b = SageMakerBackend(SageMakerConfig.from_options({**BASE, "max_parallel_jobs": 3, "release_pools": "never"}),
                         sagemaker_client=never, s3_client=s3, sleep=lambda s: None)
    CVTuner(tuning_config(code_dir), manifest, b, run_id="keep", artifact_root=str(tmp_path), poll_s=0).run()
    assert "update" not in [op for op, _ in never.calls]


@pytest.mark.parametrize("trials", [8, 40])
def test_api_calls_per_fold_job_stay_flat_as_the_run_grows(code_dir, manifest, s3, tmp_path, trials):
    """Every operation but the polling DescribeTrainingJob at most once per fold job, at any run length."""
    fake = FakeSageMaker(completes)
    b = SageMakerBackend(SageMakerConfig.from_options({**BASE, "max_parallel_jobs": 4}), sagemaker_client=fake,
                         s3_client=s3, sleep=lambda s: None)
    config = tuning_config(code_dir, max_trials=trials, max_parallel_trials=2)
    summary = CVTuner(config, manifest, b, run_id=f"flat{trials}", artifact_root=str(tmp_path), poll_s=0).run()
    jobs = summary["fold_jobs"]
    assert jobs == 3 * trials
    counts: dict[str, int] = {}
    for op, _ in fake.calls:
        counts[op] = counts.get(op, 0) + 1
    assert counts["create"] == jobs and counts.get("list", 0) == 0 and counts.get("list_tags", 0) == 0
    assert counts.get("update", 0) <= 4  # pools released at the end only: bounded by the concurrency
    # polling: each job is described until it ends (twice here), plus its pool until it is taken
    assert counts["describe"] <= 4 * jobs


def test_a_retried_run_reattaches_to_its_jobs_and_refuses_foreign_ones(code_dir, manifest, s3, tmp_path):
    root = str(tmp_path / "artifacts")
    config = tuning_config(code_dir, max_trials=2, max_parallel_trials=1)
    first = FakeSageMaker(completes)
    first.crash_after_create.add("retry-t0000-f1")
    b1 = SageMakerBackend(SageMakerConfig.from_options(BASE), sagemaker_client=first, s3_client=s3, sleep=lambda s: None)
    with pytest.raises(KeyboardInterrupt):
        CVTuner(config, manifest, b1, run_id="retry", artifact_root=root, poll_s=0).run()
    ledger = RunLedger.load(f"{root}/runs/retry/ledger.json")
    assert [j["state"] for j in ledger.trials[0]["fold_jobs"]][:2] == ["Launching", "Launching"]  # one write-ahead per batch

    # the attempt after the crash: a new process, same SageMaker account; f1 exists but its
    # describe lags ("not found"), so the tuner re-creates it, hits ResourceInUse, then
    # describes it and checks its tags before adopting it
    second = FakeSageMaker(completes, jobs=first.jobs)
    second.hide_once.add("retry-t0000-f1")
    b2 = SageMakerBackend(SageMakerConfig.from_options(BASE), sagemaker_client=second, s3_client=s3, sleep=lambda s: None)
    summary = CVTuner(config, manifest, b2, run_id="retry", artifact_root=root, poll_s=0).run()
    assert summary["trials"] == {"Completed": 2}
    f1 = [(op, n) for op, n in second.calls if n == "retry-t0000-f1"]
    assert f1[:4] == [("describe", "retry-t0000-f1"), ("create", "retry-t0000-f1"), ("describe", "retry-t0000-f1"),
                      ("list_tags", "retry-t0000-f1")]
    assert [n for op, n in first.calls + second.calls if op == "create"].count("retry-t0000-f0") == 1

    # a job of someone else holds the name of this run's first fold job
    foreign = FakeSageMaker(completes)
    foreign.jobs["taken-t0000-f0"] = {"request": {}, "status": "Completed", "polls": 5, "pool": "Terminated",
                                      "reused": False, "tags": {"owner": "someone-else"}, "metrics": {},
                                      "reason": None, "billable": 10}
    b3 = SageMakerBackend(SageMakerConfig.from_options(BASE), sagemaker_client=foreign, s3_client=s3, sleep=lambda s: None)
    with pytest.raises(RunFailedError, match="taken-t0000-f0 is taken by a job that is not fold 0"):
        CVTuner(config, manifest, b3, run_id="taken", artifact_root=root, poll_s=0).run()
    assert ("create", "taken-t0000-f1") not in foreign.calls


def test_wait_describes_once_per_poll_and_sleeps_through_the_fake_clock(s3, monkeypatch):
    client = sm_client()
    sleeps: list[float] = []
    b = backend(client, s3, sleeps=sleeps, keep_alive_period_s=0, poll_interval_s=10)
    b._tags["w1"] = {}
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe_response("w1", "InProgress"), {"TrainingJobName": "w1"})
        clock = iter([100.0, 100.0, 100.5, 130.0])  # deadline, the round begins, after describing, after sleeping
        monkeypatch.setattr("cvtune.sagemaker.backend.time.monotonic", lambda: next(clock))
        assert b.wait(["w1"], timeout=30) == []
        stub.assert_no_pending_responses()  # one DescribeTrainingJob, not one more at the deadline
    assert sleeps == [9.5]  # the rest of the poll interval since the round began, the deadline being further away


def test_wait_returns_at_the_first_end_and_the_next_call_finishes_the_round(s3, monkeypatch):
    client = sm_client()
    sleeps: list[float] = []
    b = backend(client, s3, sleeps=sleeps, keep_alive_period_s=0, poll_interval_s=10)
    monkeypatch.setattr("cvtune.sagemaker.backend.time.monotonic", lambda: 300.0)
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe_response("r1", "Completed"), {"TrainingJobName": "r1"})
        assert [d.name for d in b.wait(["r1", "r2", "r3"], timeout=30)] == ["r1"]
        stub.assert_no_pending_responses()  # r2 and r3 wait: the tuner launches on r1's pool first
        stub.add_response("describe_training_job", describe_response("r2", "InProgress"), {"TrainingJobName": "r2"})
        stub.add_response("describe_training_job", describe_response("r3", "Completed"), {"TrainingJobName": "r3"})
        # r1 recorded, r4 launched on its pool: the round goes on with r2 and r3 — not r4, not r1 again
        assert [d.name for d in b.wait(["r2", "r3", "r4"], timeout=30)] == ["r3"]
        stub.assert_no_pending_responses()
    assert sleeps == []  # no poll interval waited within a round


def aio_client_context():
    from aiobotocore.session import get_session

    return get_session().create_client("sagemaker", region_name=REGION)


def record_threads(client, threads: list[int]) -> None:
    """Note the thread every SageMaker call of ``client`` is made on (before the Stubber answers it)."""
    client.meta.events.register("before-parameter-build.sagemaker", lambda **_: threads.append(threading.get_ident()))


def test_async_client_comes_from_the_amazon_provider_hook_with_adaptive_retries(monkeypatch, s3):
    from aiobotocore.client import AioBaseClient

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_TEST",
        json.dumps({"conn_type": "aws", "login": "AKIDEXAMPLE", "password": "secret",
                    "extra": {"region_name": "eu-west-2"}}),
    )
    config = SageMakerConfig.from_options({**BASE, "region_name": None, "aws_conn_id": "aws_test"})

    async def main():
        async with config.client("sagemaker", deferrable=True) as client:
            assert isinstance(client, AioBaseClient) and client.meta.service_model.service_name == "sagemaker"
            assert client.meta.region_name == "eu-west-2"  # from the Airflow connection
            assert client.meta.config.retries["mode"] == "adaptive" and client.meta.config.retries["total_max_attempts"] == 11
        backend = SageMakerBackend(config, s3_client=s3)
        first = await backend.async_sagemaker()
        assert await backend.async_sagemaker() is first  # one client per event loop, not one per poll
        await backend.aclose()
        again = await backend.async_sagemaker()
        assert again is not first and isinstance(again, AioBaseClient)
        await backend.aclose()

    asyncio.run(main())


def script_describes(stub) -> None:
    """One throttled DescribeTrainingJob, a running job, a completed one, and an unknown name — the
    same answers for the sync and the async client, one DescribeTrainingJob per job and poll."""
    running, done = "run1-t0002-f1", "run1-t0002-f0"
    stub.add_client_error("describe_training_job", "ThrottlingException", "Rate exceeded",
                          expected_params={"TrainingJobName": running})
    stub.add_response("describe_training_job", describe_response(running, "InProgress", TrainingStartTime=T0,
                      WarmPoolStatus={"Status": "InUse"}), {"TrainingJobName": running})
    stub.add_response(
        "describe_training_job",
        describe_response(
            done, "Completed", TrainingStartTime=T0, TrainingEndTime=T0 + dt.timedelta(seconds=40),
            BillableTimeInSeconds=40, WarmPoolStatus={"Status": "Available"},
            FinalMetricDataList=[{"MetricName": "validation:auc", "Value": 0.91, "Timestamp": T0}],
        ),
        {"TrainingJobName": done},
    )
    stub.add_client_error("describe_training_job", "ValidationException", "Requested resource not found.",
                          expected_params={"TrainingJobName": "nope"})


def test_adescribe_many_on_the_async_client_matches_describe(s3, monkeypatch):
    from aiobotocore.stub import AioStubber

    names = ["run1-t0002-f1", "run1-t0002-f0"]
    sleeps: list[float] = []
    sync_client = sm_client()
    sync_backend = backend(sync_client, s3, sleeps=sleeps)
    with Stubber(sync_client) as stub:
        script_describes(stub)
        expected = [sync_backend.describe(n) for n in names]
        with pytest.raises(JobNotFoundError):
            sync_backend.describe("nope")
        stub.assert_no_pending_responses()
    assert len(sleeps) == 1  # the throttled describe, retried

    def no_sync_client(self, service="sagemaker", *, deferrable=False):
        raise AssertionError(f"the async path made a {service} client (deferrable={deferrable})")

    monkeypatch.setattr(SageMakerConfig, "client", no_sync_client)
    async_sleeps: list[float] = []
    threads: list[int] = []

    async def asleep(seconds: float) -> None:
        async_sleeps.append(seconds)

    async def main():
        async with aio_client_context() as client:
            b = SageMakerBackend(SageMakerConfig.from_options(BASE), async_sagemaker_client=client, s3_client=s3)
            b.backoff.asleep = asleep
            record_threads(client, threads)
            with AioStubber(client) as stub:
                script_describes(stub)
                got = await b.adescribe_many(names)
                with pytest.raises(JobNotFoundError) as missing:
                    await b.adescribe_many(["nope"])
                stub.assert_no_pending_responses()
            assert await b.adescribe_many([]) == []  # no call at all
            await b.aclose()  # an injected client is its owner's to close: still usable
            stub2 = AioStubber(client)
            stub2.add_response("stop_training_job", {}, {"TrainingJobName": "x"})
            with stub2:
                await client.stop_training_job(TrainingJobName="x")
            return got, missing.value, threading.get_ident()

    got, missing, loop_thread = asyncio.run(main())
    assert got == expected  # one mapping for both paths: the same descriptions, field for field
    running, done = got
    assert running.status == "InProgress" and not running.done and running.warm_pool_status == "InUse"
    assert done.status == "Completed" and done.final_metrics == {"validation:auc": 0.91}
    assert done.billable_seconds == 40 and done.end_time == T0.timestamp() + 40
    assert done.pool_status == "Available"
    assert done.model_artifacts == f"{PREFIX}/jobs/run1-t0002-f0/output/model.tar.gz"
    assert "region=us-east-1" in done.log_uri
    assert "nope" in str(missing) and isinstance(missing.__cause__, botocore.exceptions.ClientError)
    assert len(async_sleeps) == 1 and 0 <= async_sleeps[0] <= 2.0  # Backoff.base_s: awaited, not slept
    assert len(threads) == 5 and set(threads) == {loop_thread}  # 4 DescribeTrainingJob + the owner's StopTrainingJob, all in the loop


def test_jobs_trigger_on_sagemaker_polls_through_the_async_client(monkeypatch, tmp_path):
    """A deferred run's trigger, built from the connection like in the triggerer: its polls are
    awaited on the provider's aiobotocore client (opened once, closed at the end), never in a thread."""
    from aiobotocore.stub import AioStubber

    from cvtune.triggers.tuning import TuningJobsTrigger

    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_SM", json.dumps({"conn_type": "cvtune", "extra": {"backend": "sagemaker", **BASE}}))
    names = ["smr-t0000-f0", "smr-t0000-f1"]
    threads: list[int] = []

    class StubbedAsyncClient:
        """What the hook hands out for ``deferrable=True``, with an AioStubber on the client it opens."""

        opened = closed = 0

        async def __aenter__(self):
            self.context = aio_client_context()
            client = await self.context.__aenter__()
            record_threads(client, threads)
            self.stub = AioStubber(client)
            for name in names:  # poll 1: both running (one DescribeTrainingJob each, no ListTags)
                self.stub.add_response("describe_training_job", describe_response(name, "InProgress"), {"TrainingJobName": name})
            # poll 2: f0 still running, f1 completed (no ListTrainingJobs: reuse is learned from the ledger)
            self.stub.add_response("describe_training_job", describe_response(names[0], "InProgress"),
                                   {"TrainingJobName": names[0]})
            self.stub.add_response("describe_training_job", describe_response(
                names[1], "Completed", FinalMetricDataList=[{"MetricName": "validation:auc", "Value": 0.9, "Timestamp": T0}]),
                {"TrainingJobName": names[1]})
            self.stub.activate()
            StubbedAsyncClient.opened += 1
            return client

        async def __aexit__(self, *exc):
            self.stub.assert_no_pending_responses()
            self.stub.deactivate()
            StubbedAsyncClient.closed += 1
            return await self.context.__aexit__(*exc)

    def client(self, service="sagemaker", *, deferrable=False):
        if not deferrable:
            raise AssertionError(f"the trigger made a blocking {service} client")
        return StubbedAsyncClient()

    monkeypatch.setattr(SageMakerConfig, "client", client)
    in_threads = record_to_thread(monkeypatch)

    async def main():
        trigger = TuningJobsTrigger(cvtune_conn_id="cvtune_sm", run_id="smr", ledger_uri="s3://b/runs/smr/ledger.json",
                                    job_names=names, poll_interval=0)
        return [event async for event in trigger.run()], threading.get_ident()

    events, loop_thread = asyncio.run(main())
    assert [e.payload for e in events] == [{"status": "ended", "run_id": "smr", "ledger_uri": "s3://b/runs/smr/ledger.json",
                                            "ended": ["smr-t0000-f1"], "polls": 2}]
    assert StubbedAsyncClient.opened == 1 and StubbedAsyncClient.closed == 1
    # threads only to build the backend from the connection and to open the client; the 4 calls in the loop
    assert in_threads == ["_observer", "client"]
    assert len(threads) == 4 and set(threads) == {loop_thread}


def test_a_wait_right_after_the_last_round_waits_out_the_poll_interval_first(s3, monkeypatch):
    client = sm_client()
    sleeps: list[float] = []
    b = backend(client, s3, sleeps=sleeps, keep_alive_period_s=0, poll_interval_s=10)
    monkeypatch.setattr("cvtune.sagemaker.backend.time.monotonic", lambda: 200.0)
    b._last_round = 195.0  # the previous round of describes, 5 s ago
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe_response("w2", "Completed"), {"TrainingJobName": "w2"})
        assert [d.name for d in b.wait(["w2"], timeout=30)] == ["w2"]
        stub.assert_no_pending_responses()
    assert sleeps == [5.0]  # then one DescribeTrainingJob: never more than one per job and interval


def test_one_classifier_for_not_found_and_already_exists():
    from botocore.exceptions import ClientError

    from cvtune.sagemaker.errors import is_already_exists, is_not_found

    def err(code, message=""):
        return ClientError({"Error": {"Code": code, "Message": message}}, "Op")

    assert is_not_found(err("ResourceNotFound")) and is_not_found(err("NoSuchKey")) and is_not_found(err("404"))
    assert is_not_found(err("ValidationException", "Requested resource not found."))
    assert is_not_found(err("ValidationException", "Could not find model \"m\"."))
    assert not is_not_found(err("ValidationException", "1 validation error detected")) and not is_not_found(ValueError("x"))
    assert is_already_exists(err("ResourceInUse")) and is_already_exists(err("ValidationException", "Model already exists"))
    assert is_already_exists(err("ValidationException", "Job name must be unique within an AWS account and region"))
    assert not is_already_exists(err("ValidationException", "not found")) and not is_already_exists(err("ThrottlingException"))
