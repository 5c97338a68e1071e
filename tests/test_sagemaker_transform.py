"""Batch transform on SageMaker: exact CreateModel / CreateTransformJob requests (Stubber, checked
against botocore's model of the API), the job lifecycle, re-attach on retry, and the row-count
check against the ``.out`` objects in S3 (moto)."""

from __future__ import annotations

import json

import pytest

from tests.aws_fakes import (
    BUCKET,
    NOW,
    PREFIX,
    ROLE,
    container,
    make_config,
    model_data,
    moto_aws,
    record_to_thread,
    training_job,
)

MODEL_DATA = model_data("train-final-1")
MODEL_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model/cvtune-model"
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:transform-job/bt"
CONTAINER = container("train-final-1")


@pytest.fixture
def aws(monkeypatch):
    yield from moto_aws(monkeypatch)


def put(s3, key: str, text: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=text.encode())


def read(s3, key: str) -> str:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def transform_description(name: str, status: str, request: dict, reason: str | None = None) -> dict:
    out = {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
        "TransformJobStatus": status,
        "ModelName": request["ModelName"],
        "TransformInput": request["TransformInput"],
        "TransformOutput": request["TransformOutput"],
        "TransformResources": request["TransformResources"],
        "CreationTime": NOW,
    }
    if reason:
        out["FailureReason"] = reason
    return out


def not_found(stubber, operation: str, message: str, params: dict) -> None:
    stubber.add_client_error(operation, service_error_code="ValidationException", service_message=message,
                             http_status_code=400, expected_params=params)


def model_exists(stubber, model: str, container: dict = CONTAINER) -> None:
    """DescribeModel finds ``model``, serving ``container``."""
    stubber.add_response("describe_model", {"ModelName": model, "CreationTime": NOW, "ModelArn": MODEL_ARN,
                                            "PrimaryContainer": container}, {"ModelName": model})


class StubbedAsyncClients:
    """Stands in for ``SageMakerConfig.client("sagemaker", deferrable=True)``: each call gives a
    context opening a real aiobotocore client with an ``AioStubber`` (requests and responses
    checked against the API model) that ``script(stub)`` fills on opening. Counts opens and
    closes, and notes the job and the thread of every ``DescribeTransformJob``."""

    def __init__(self, script):
        self.script = script
        self.opened = self.closed = 0
        self.stubs: list = []
        self.polled: list[str] = []
        self.threads: list[int] = []

    def __call__(self, service: str):
        assert service == "sagemaker"
        return _StubbedAsyncClient(self)


class _StubbedAsyncClient:
    def __init__(self, owner: StubbedAsyncClients) -> None:
        self.owner = owner

    async def __aenter__(self):
        import threading

        from aiobotocore.session import get_session
        from aiobotocore.stub import AioStubber

        self.context = get_session().create_client("sagemaker", region_name="us-east-1")
        client = await self.context.__aenter__()

        def note(params, **_):  # before the stubber answers: the thread the call is made on
            self.owner.polled.append(params["TransformJobName"])
            self.owner.threads.append(threading.get_ident())

        client.meta.events.register("before-parameter-build.sagemaker.DescribeTransformJob", note)
        self.stub = AioStubber(client)
        self.owner.script(self.stub)
        self.stub.activate()
        self.owner.stubs.append(self.stub)
        self.owner.opened += 1
        return client

    async def __aexit__(self, *exc):
        self.stub.deactivate()
        self.owner.closed += 1
        return await self.context.__aexit__(*exc)


def expected_requests(job: str, input_prefix: str, output: str):
    from cvtune.sagemaker.transform import model_name

    model = model_name(CONTAINER)
    create_model = {
        "ModelName": model,
        "PrimaryContainer": CONTAINER,
        "ExecutionRoleArn": ROLE,
        "EnableNetworkIsolation": False,
        "Tags": [{"Key": "cvtune:dag", "Value": "d"}],
    }
    create_job = {
        "TransformJobName": job,
        "ModelName": model,
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_prefix}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Tags": [{"Key": "cvtune:dag", "Value": "d"}],
    }
    return model, create_model, create_job


def test_transform_lifecycle_with_header_and_excluded_column(aws):
    """Header files are staged without the header and without the excluded target column (no
    InputFilter is sent), the job goes InProgress → Completed, and every .out is counted."""
    from botocore.stub import Stubber

    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    put(s3, "cv/scoring/a.csv", "x,y,target\n1,2,0\n3,4,1\n5,6,1\n")
    put(s3, "cv/scoring/b.csv", "x,y,target\n7,8,0\n")
    job, output = "batch-transform-1a2b", f"{PREFIX}/predictions/run-1"
    staged = f"{PREFIX}/transform-input/{job}/"
    model, create_model, create_job = expected_requests(job, staged, output)
    stubber = Stubber(client)
    not_found(stubber, "describe_model", f'Could not find model "{model}".', {"ModelName": model})
    stubber.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:us-east-1:123456789012:model/{model}"}, create_model)
    stubber.add_response("create_transform_job", {"TransformJobArn": JOB_ARN}, create_job)
    stubber.add_response("describe_transform_job", transform_description(job, "InProgress", create_job),
                         {"TransformJobName": job})
    stubber.add_response("describe_transform_job", transform_description(job, "Completed", create_job),
                         {"TransformJobName": job})
    sleeps = []

    def job_runs(seconds):  # while "running", the job writes what SageMaker would
        sleeps.append(seconds)
        put(s3, "cv/predictions/run-1/a.csv.out", "0.1\n0.9\n0.8\n")
        put(s3, "cv/predictions/run-1/b.csv.out", "0.2\n")

    runner = SageMakerBatchTransform(make_config(), client, s3, poll_s=7, sleep=job_runs)
    with stubber:
        result = runner.run(container=CONTAINER, input_uri=f"{PREFIX}/scoring", output_uri=output, job_name=job,
                            header=True, exclude_columns=["target"], tags={"cvtune:dag": "d"})
        stubber.assert_no_pending_responses()
    assert sleeps == [7]
    assert result["records"] == 4 and result["excluded_columns"] == ["target"] and not result["reattached"]
    assert [(f["input"], f["output"], f["records"]) for f in result["files"]] == [
        (f"{PREFIX}/scoring/a.csv", f"{output}/a.csv.out", 3),
        (f"{PREFIX}/scoring/b.csv", f"{output}/b.csv.out", 1),
    ]
    # SageMaker sees no header and no target: every staged line is a record of the features
    assert read(s3, f"cv/transform-input/{job}/a.csv") == "1,2\n3,4\n5,6\n"
    assert read(s3, f"cv/transform-input/{job}/b.csv") == "7,8\n"
    # what a deferred task resumes from
    assert runner.load_state(job)["entries"] == [{"input": f"{PREFIX}/scoring/a.csv", "key": "a.csv", "records": 3},
                                                 {"input": f"{PREFIX}/scoring/b.csv", "key": "b.csv", "records": 1}]


def test_prefix_without_header_is_transformed_in_place_and_counts_are_checked(aws):
    from botocore.stub import Stubber

    from cvtune.errors import RunFailedError
    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    put(s3, "cv/plain/a.csv", "1,2\n3,4\n5,6\n")
    job, output = "bt-2", f"{PREFIX}/out2"
    model, _create_model, create_job = expected_requests(job, f"{PREFIX}/plain/", output)
    del create_job["Tags"]
    stubber = Stubber(client)
    model_exists(stubber, model)
    stubber.add_response("create_transform_job", {"TransformJobArn": JOB_ARN}, create_job)
    stubber.add_response("describe_transform_job", transform_description(job, "Completed", create_job),
                         {"TransformJobName": job})
    put(s3, "cv/out2/a.csv.out", "0.1\n0.2\n")  # one record short
    runner = SageMakerBatchTransform(make_config(), client, s3, sleep=lambda s: pytest.fail("must not wait"))
    with stubber, pytest.raises(RunFailedError, match="3 input records but 2 output records"):
        runner.run(container=CONTAINER, input_uri=f"{PREFIX}/plain", output_uri=output, job_name=job)
    stubber.assert_no_pending_responses()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="cv/transform-input/")  # nothing staged


def test_failed_job_raises_its_reason(aws):
    from botocore.stub import Stubber

    from cvtune.errors import RunFailedError
    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    put(s3, "cv/plain/a.csv", "1,2\n")
    job, output = "bt-3", f"{PREFIX}/out3"
    model, _cm, create_job = expected_requests(job, f"{PREFIX}/plain/", output)
    del create_job["Tags"]
    stubber = Stubber(client)
    model_exists(stubber, model)
    stubber.add_response("create_transform_job", {"TransformJobArn": JOB_ARN}, create_job)
    reason = "ClientError: See job logs for more information"
    stubber.add_response("describe_transform_job", transform_description(job, "Failed", create_job, reason),
                         {"TransformJobName": job})
    runner = SageMakerBatchTransform(make_config(), client, s3, sleep=lambda s: None)
    with stubber, pytest.raises(RunFailedError, match=f"bt-3 Failed: {reason}"):
        runner.run(container=CONTAINER, input_uri=f"{PREFIX}/plain", output_uri=output, job_name=job)


def test_retry_reattaches_to_its_job_and_refuses_a_foreign_one(aws):
    """Attempt 2 of the task: the model exists (same data) and CreateTransformJob says the name
    is in use — the job is described and followed, not created again."""
    from botocore.stub import Stubber

    from cvtune.errors import RunFailedError
    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    put(s3, "cv/plain/a.csv", "1,2\n3,4\n")
    put(s3, "cv/out4/a.csv.out", "0.5\n0.6\n")
    job, output = "bt-4", f"{PREFIX}/out4"
    model, _cm, create_job = expected_requests(job, f"{PREFIX}/plain/", output)
    del create_job["Tags"]
    stubber = Stubber(client)
    model_exists(stubber, model)
    stubber.add_client_error("create_transform_job", service_error_code="ResourceInUse", http_status_code=400,
                             service_message=f"Job {job} already exists", expected_params=create_job)
    stubber.add_response("describe_transform_job", transform_description(job, "Completed", create_job),
                         {"TransformJobName": job})
    stubber.add_response("describe_transform_job", transform_description(job, "Completed", create_job),
                         {"TransformJobName": job})
    runner = SageMakerBatchTransform(make_config(), client, s3, sleep=lambda s: pytest.fail("must not wait"))
    with stubber:
        result = runner.run(container=CONTAINER, input_uri=f"{PREFIX}/plain", output_uri=output, job_name=job)
        stubber.assert_no_pending_responses()
    assert result["reattached"] and result["records"] == 2

    foreign = dict(create_job, ModelName="someone-elses-model")
    stubber = Stubber(client)
    model_exists(stubber, model)
    stubber.add_client_error("create_transform_job", service_error_code="ResourceInUse", http_status_code=400,
                             service_message=f"Job {job} already exists", expected_params=create_job)
    stubber.add_response("describe_transform_job", transform_description(job, "InProgress", foreign),
                         {"TransformJobName": job})
    with stubber, pytest.raises(RunFailedError, match="taken by another job"):
        runner.run(container=CONTAINER, input_uri=f"{PREFIX}/plain", output_uri=output, job_name=job)


def test_model_name_clash_with_other_data_is_refused(aws):
    from botocore.stub import Stubber

    from cvtune.errors import RunFailedError
    from cvtune.sagemaker.transform import SageMakerBatchTransform, model_name

    s3, client = aws
    stubber = Stubber(client)
    other = dict(CONTAINER, ModelDataUrl=f"{PREFIX}/other/model.tar.gz")
    model_exists(stubber, model_name(CONTAINER), other)
    with stubber, pytest.raises(RunFailedError, match="other model data"):
        SageMakerBatchTransform(make_config(), client, s3).ensure_model(CONTAINER)


def test_local_input_file_is_uploaded_and_vpc_kms_map_into_the_requests(aws, tmp_path):
    from cvtune.sagemaker.requests import validate
    from cvtune.sagemaker.transform import SageMakerBatchTransform, model_request, transform_request

    s3, client = aws
    config = make_config(
        vpc_config={"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
        output_kms_key_id="arn:aws:kms:us-east-1:123456789012:key/out", volume_kms_key_id="alias/vol",
    )
    data = tmp_path / "score.csv"
    data.write_text("a,b\n1,2\n\n3,4\n")
    runner = SageMakerBatchTransform(config, client, s3)
    prefix, entries = runner.prepare_input(str(data), "bt-5", header=True, exclude_columns=[])
    assert prefix == f"{PREFIX}/transform-input/bt-5/"
    assert entries == [{"input": str(data), "key": "score.csv", "records": 2}]
    assert read(s3, "cv/transform-input/bt-5/score.csv") == "1,2\n3,4\n"
    assert s3.head_object(Bucket=BUCKET, Key="cv/transform-input/bt-5/score.csv")["ServerSideEncryption"] == "aws:kms"

    model = model_request(config, "m", CONTAINER)
    assert model["VpcConfig"] == {"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1"]}
    job = transform_request(config, job_name="bt-5", model="m", input_prefix=prefix, output_uri=f"{PREFIX}/o",
                            instance_type="ml.c5.xlarge", instance_count=2, max_payload_mb=10)
    assert job["TransformOutput"]["KmsKeyId"] == "arn:aws:kms:us-east-1:123456789012:key/out"
    assert job["TransformResources"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2, "VolumeKmsKeyId": "alias/vol"}
    validate("CreateModel", model)
    validate("CreateTransformJob", job)


def test_bad_inputs_fail_before_anything_is_created(aws, tmp_path):
    from cvtune.errors import ConfigError
    from cvtune.sagemaker.transform import SageMakerBatchTransform, drop_columns, transform_request

    s3, client = aws  # an unstubbed client: any SageMaker call would go to moto and be noticed below
    runner = SageMakerBatchTransform(make_config(), client, s3)
    with pytest.raises(ConfigError, match="exclude_columns.*header"):
        runner.run(container=CONTAINER, input_uri=f"{PREFIX}/x", output_uri=f"{PREFIX}/o", job_name="j",
                   exclude_columns=["target"])
    with pytest.raises(ConfigError, match="output_uri"):
        runner.run(container=CONTAINER, input_uri=str(tmp_path), output_uri=str(tmp_path / "o"), job_name="j")
    with pytest.raises(ConfigError, match="holds no input files"):
        runner.run(container=CONTAINER, input_uri=f"{PREFIX}/empty", output_uri=f"{PREFIX}/o", job_name="j")
    with pytest.raises(ConfigError, match="instance_type"):
        transform_request(make_config(), job_name="j", model="m", input_prefix="s3://b/p/", output_uri="s3://b/o",
                          instance_type="ml.t3.medium")
    with pytest.raises(ConfigError, match="enable_network_isolation"):
        SageMakerBatchTransform(make_config(enable_network_isolation=True), client, s3).ensure_model(CONTAINER)
    # excluded columns are dropped by name, CSV quoting kept, any number and position of them
    header = ["id", "a", "b", "c", "target"]
    assert drop_columns(['1,"x,y",2,3,0'], header, ["id", "b", "target"]) == ['"x,y",3']
    with pytest.raises(ConfigError, match="not in the header"):
        drop_columns(["1,2,3,4,5"], header, ["nope"])
    with pytest.raises(ConfigError, match="every column"):
        drop_columns(["1,2,3,4,5"], header, header)
    assert client.list_models()["Models"] == []  # nothing reached SageMaker (moto)


def test_container_is_read_back_from_the_training_job(aws):
    from botocore.stub import Stubber

    from cvtune.errors import ConfigError
    from cvtune.sagemaker.final_training import container_for, training_job_container

    _s3, client = aws
    job = training_job("train-final-1")
    stubber = Stubber(client)
    stubber.add_response("describe_training_job", job, {"TrainingJobName": "train-final-1"})
    stubber.add_response("describe_training_job", dict(job, HyperParameters={"eta": "0.1"}),
                         {"TrainingJobName": "train-final-1"})
    stubber.add_response("describe_training_job", dict(job, TrainingJobStatus="Failed"),
                         {"TrainingJobName": "train-final-1"})
    with stubber:
        assert container_for(client, {"job_name": "train-final-1", "model_package_arn": "local:x"}) == CONTAINER
        with pytest.raises(ConfigError, match="not a script-mode job"):
            training_job_container(client, "train-final-1")
        with pytest.raises(ConfigError, match="Failed, not Completed"):
            training_job_container(client, "train-final-1")
    with pytest.raises(ConfigError, match="neither"):
        container_for(client, {"model_uri": MODEL_DATA})


def test_operators_register_and_transform_on_the_sagemaker_backend(airflow_db, aws, monkeypatch):
    """RegisterModelOperator and BatchTransformOperator, run by Airflow (dag.test()) with a
    ``cvtune`` connection naming the sagemaker backend: the version goes to the model package
    group (moto), the transform runs the version's container (stubbed job) and defers to the
    triggerer while the job runs (whose trigger polls on the async client), XComs keep their shape."""
    import textwrap

    from botocore.stub import Stubber

    from cvtune.sagemaker.config import SageMakerConfig
    from cvtune.sagemaker.transform import model_name
    from tests.conftest import write_dag
    from tests.test_operators import load_dag
    from tests.test_sagemaker_registry import Routed

    s3, moto_sagemaker = aws
    import boto3

    stubbed = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(stubbed)
    job = "train-final-1"
    stubber.add_response("describe_training_job", dict(training_job(job), ModelArtifacts={"S3ModelArtifacts": MODEL_DATA}),
                         {"TrainingJobName": job})
    model = model_name(CONTAINER)
    not_found(stubber, "describe_model", f'Could not find model "{model}".', {"ModelName": model})
    stubber.add_response("create_model", {"ModelArn": MODEL_ARN}, None)
    stubber.add_response("create_transform_job", {"TransformJobArn": JOB_ARN}, None)
    created = []
    stubbed.meta.events.register("provide-client-params.sagemaker.*", lambda params, model, **_: created.append((model.name, params)))
    transform_ops = {"describe_training_job", "describe_model", "create_model", "create_transform_job"}

    class Clients(Routed):
        def __getattr__(self, name):
            return getattr(self._stubbed if name in transform_ops else self._moto, name)

        def describe_transform_job(self, TransformJobName):  # noqa: N803 - boto3's keyword
            # answers for whatever job the operator named (its name derives from the run id):
            # running when the task looks right after launching
            request = next(p for name, p in created if name == "CreateTransformJob")
            assert TransformJobName == request["TransformJobName"]
            described.append(TransformJobName)
            return transform_description(TransformJobName, "InProgress", request)

    sagemaker = Clients(moto_sagemaker, stubbed)
    described = []

    def trigger_polls(stub):  # the trigger sees the job the task launched end
        request = next(p for name, p in created if name == "CreateTransformJob")
        name = request["TransformJobName"]
        stub.add_response("describe_transform_job", transform_description(name, "Completed", request), {"TransformJobName": name})

    async_clients = StubbedAsyncClients(trigger_polls)

    def client(self, service="sagemaker", *, deferrable=False):
        if deferrable:
            return async_clients(service)
        return sagemaker if service == "sagemaker" else s3

    monkeypatch.setattr(SageMakerConfig, "client", client)
    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_DEFAULT", json.dumps({"conn_type": "cvtune", "extra": {
        "backend": "sagemaker", "role_arn": ROLE, "s3_prefix": PREFIX, "region_name": "us-east-1"}}))
    put(s3, "cv/scoring/a.csv", "x,y,target\n1,2,0\n3,4,1\n5,6,1\n")
    put(s3, "cv/predictions/a.csv.out", "0.1\n0.9\n0.8\n")  # what the (stubbed) job leaves behind
    trained = {"model_uri": MODEL_DATA, "job_name": job, "entry_point": "/x/train.py", "hyperparameters": {"eta": 0.1},
               "holdout_metrics": {"auc": 0.97}, "manifest_fingerprint": "fp",
               "cv": {"mean": 0.99, "std": 0.01, "objective": {"metric": "validation:auc", "type": "Maximize"}}}
    dag_file = write_dag("sagemaker_ops_dag.py", textwrap.dedent(f'''
        from datetime import datetime
        from airflow.sdk import DAG
        from cvtune.operators import BatchTransformOperator, RegisterModelOperator

        with DAG("sagemaker_ops_dag", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
            register = RegisterModelOperator(task_id="register", model={trained!r}, model_package_group="grp",
                                             approval_threshold=0.95)
            BatchTransformOperator(task_id="batch_transform", model=register.output, input_uri="{PREFIX}/scoring",
                                   output_uri="{PREFIX}/predictions", header=True, exclude_columns=["target"],
                                   poll_interval=0, deferrable=True)
    '''))

    with stubber:
        run = load_dag(dag_file, "sagemaker_ops_dag").test()
    assert run.state == "success"
    stubber.assert_no_pending_responses()
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    version = tis["register"].xcom_pull(task_ids="register")
    assert version["version"] == 1 and version["approval_status"] == "Approved"
    assert version["model_package_arn"].startswith("arn:aws:sagemaker:us-east-1:123456789012:model-package/grp")
    assert set(version) >= {"model_package_group", "model_uri", "entry_point", "hyperparameters", "holdout_metrics"}
    result = tis["batch_transform"].xcom_pull(task_ids="batch_transform")
    assert result["records"] == 3 and result["version"] == 1 and result["excluded_columns"] == ["target"]
    assert result["files"] == [{"input": f"{PREFIX}/scoring/a.csv", "output": f"{PREFIX}/predictions/a.csv.out", "records": 3}]
    # deferred: the task saw the job running (boto3), the trigger saw it end (aiobotocore, then closed)
    assert len(described) == 1 and async_clients.opened == async_clients.closed == 1
    assert async_clients.polled == described  # the trigger polled the job the task launched
    create_model = next(p for name, p in created if name == "CreateModel")
    assert create_model["PrimaryContainer"] == CONTAINER  # the version's container: the training job's code
    packages = moto_sagemaker.list_model_packages(ModelPackageGroupName="grp")["ModelPackageSummaryList"]
    assert len(packages) == 1


def test_stop_asks_sagemaker_and_tolerates_an_ended_job(aws):
    from botocore.stub import Stubber

    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    stubber = Stubber(client)
    stubber.add_response("stop_transform_job", {}, {"TransformJobName": "bt-6"})
    stubber.add_client_error("stop_transform_job", service_error_code="ValidationException", http_status_code=400,
                             service_message="The job bt-6 is not in progress", expected_params={"TransformJobName": "bt-6"})
    stubber.add_client_error("stop_transform_job", service_error_code="ThrottlingException", http_status_code=400,
                             expected_params={"TransformJobName": "bt-6"})
    runner = SageMakerBatchTransform(make_config(), client, s3)
    with stubber:
        runner.stop("bt-6")
        runner.stop("bt-6")
        with pytest.raises(Exception, match="ThrottlingException"):
            runner.stop("bt-6")




def async_sagemaker(monkeypatch, s3, script) -> StubbedAsyncClients:
    """The ``cvtune_sm`` connection (sagemaker backend); its SageMaker clients are stubbed async
    ones, S3 is moto's, and a blocking SageMaker client is a test failure."""
    from cvtune.sagemaker.config import SageMakerConfig

    monkeypatch.setenv("AIRFLOW_CONN_CVTUNE_SM", json.dumps({"conn_type": "cvtune", "extra": {
        "backend": "sagemaker", "role_arn": ROLE, "s3_prefix": PREFIX, "region_name": "us-east-1"}}))
    clients = StubbedAsyncClients(script)

    def client(self, service="sagemaker", *, deferrable=False):
        if deferrable:
            return clients(service)
        if service == "s3":
            return s3
        raise AssertionError(f"a blocking {service} client was made")

    monkeypatch.setattr(SageMakerConfig, "client", client)
    return clients


def run_trigger(trigger, monkeypatch):
    """``trigger.run()``'s events in a fresh event loop, the loop's thread, and what went to threads."""
    import asyncio
    import threading

    to_thread = asyncio.to_thread  # restored below: a second trigger run records afresh
    in_threads = record_to_thread(monkeypatch)

    async def main():
        return [event.payload async for event in trigger.run()], threading.get_ident()

    try:
        events, loop_thread = asyncio.run(main())
    finally:
        monkeypatch.setattr(asyncio, "to_thread", to_thread)
    return events, loop_thread, in_threads


def scripted(*statuses: str, job: str = "bt-7", reason: str | None = None):
    """A script answering ``DescribeTransformJob`` of ``job`` with ``statuses`` in turn."""
    _m, _cm, request = expected_requests(job, f"{PREFIX}/plain/", f"{PREFIX}/o")

    def script(stub):
        for status in statuses:
            stub.add_response("describe_transform_job",
                              transform_description(job, status, request, reason if status == "Failed" else None),
                              {"TransformJobName": job})
    return script


def test_transform_trigger_polls_on_the_async_client_until_the_job_completes(aws, monkeypatch):
    """The trigger, rebuilt from its serialized form as the triggerer does, polls
    DescribeTransformJob on the provider's aiobotocore client in the event loop (no thread),
    closes it, and fires the job's outcome — the same dict the worker's wait returns."""
    from botocore.stub import Stubber

    from cvtune.sagemaker.transform import SageMakerBatchTransform
    from cvtune.triggers.transform import TransformJobTrigger

    s3, sync_client = aws
    clients = async_sagemaker(monkeypatch, s3, scripted("InProgress", "InProgress", "Completed"))
    path, kwargs = TransformJobTrigger(cvtune_conn_id="cvtune_sm", job_name="bt-7", poll_interval=0).serialize()
    assert path == "cvtune.triggers.transform.TransformJobTrigger"
    assert kwargs == {"cvtune_conn_id": "cvtune_sm", "job_name": "bt-7", "poll_interval": 0.0}
    module, name = path.rsplit(".", 1)
    import importlib

    trigger = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert trigger.serialize() == (path, kwargs)

    events, loop_thread, in_threads = run_trigger(trigger, monkeypatch)
    assert events == [{"status": "Completed", "job_name": "bt-7", "failure_reason": None}]
    clients.stubs[0].assert_no_pending_responses()
    assert clients.opened == clients.closed == 1
    # threads only to read the connection and to open the client; the 3 polls in the loop itself
    assert in_threads == ["_runner", "client"]
    assert clients.polled == ["bt-7"] * 3 and clients.threads == [loop_thread] * 3

    # the worker's wait maps the same responses to the same outcome (one mapping for both)
    sleeps: list[float] = []
    runner = SageMakerBatchTransform(make_config(), sync_client, s3, poll_s=5, sleep=sleeps.append)
    with Stubber(sync_client) as stub:
        scripted("InProgress", "InProgress", "Completed")(stub)
        assert runner.wait("bt-7") == events[0]
        stub.assert_no_pending_responses()
    assert sleeps == [5, 5]


def test_transform_trigger_failed_job_and_errors_become_events_the_task_raises(aws, monkeypatch):
    """A Failed job fires with its reason; a job that does not exist, a refused call and a
    connection that does not exist fire error events with a clear message; the deferred task
    (execute_complete) raises each with the reason. The client is closed every time."""
    from cvtune.errors import RunFailedError
    from cvtune.operators import BatchTransformOperator
    from cvtune.triggers.transform import TransformJobTrigger

    s3, _client = aws

    def missing(stub):
        not_found(stub, "describe_transform_job", "Could not find requested job with name bt-8", {"TransformJobName": "bt-8"})

    def refused(stub):
        stub.add_client_error("describe_transform_job", service_error_code="AccessDeniedException", http_status_code=400,
                              service_message="not authorized to perform sagemaker:DescribeTransformJob",
                              expected_params={"TransformJobName": "bt-8"})

    scripts = iter([scripted("InProgress", "Failed", job="bt-8", reason="AlgorithmError: boom"), missing, refused])
    clients = async_sagemaker(monkeypatch, s3, lambda stub: next(scripts)(stub))
    trigger = TransformJobTrigger(cvtune_conn_id="cvtune_sm", job_name="bt-8", poll_interval=0)
    failed, loop_thread, in_threads = run_trigger(trigger, monkeypatch)
    gone = run_trigger(trigger, monkeypatch)[0]
    denied = run_trigger(trigger, monkeypatch)[0]
    no_conn = run_trigger(TransformJobTrigger(cvtune_conn_id="nope", job_name="bt-8", poll_interval=0), monkeypatch)[0]

    assert failed == [{"status": "Failed", "job_name": "bt-8", "failure_reason": "AlgorithmError: boom"}]
    assert in_threads == ["_runner", "client"] and clients.threads[:2] == [loop_thread] * 2
    assert [e["status"] for e in gone + denied + no_conn] == ["error"] * 3
    assert all(e["job_name"] == "bt-8" for e in gone + denied + no_conn)
    assert gone[0]["message"] == (
        "waiting for batch transform job bt-8 failed: JobNotFoundError: no batch transform job bt-8 "
        "(ValidationException: Could not find requested job with name bt-8)")
    assert "AccessDeniedException" in denied[0]["message"] and "not authorized" in denied[0]["message"]
    assert no_conn[0]["message"].startswith("cannot open a SageMaker client for connection nope: AirflowNotFoundException")
    for stub in clients.stubs:
        stub.assert_no_pending_responses()
    assert clients.polled == ["bt-8"] * 4 and clients.opened == clients.closed == 3  # none for the missing connection

    # the deferred task, resumed with these events, raises what they say
    put(s3, "cv/transform-state/bt-8.json", json.dumps({
        "job_name": "bt-8", "model_name": "m", "output_uri": f"{PREFIX}/o", "entries": [], "excluded_columns": [],
        "reattached": False, "started": 0.0}))
    task = BatchTransformOperator(task_id="batch_transform", model={"model_uri": MODEL_DATA, "entry_point": "train.py"},
                                  input_uri=f"{PREFIX}/plain", cvtune_conn_id="cvtune_sm", deferrable=True)
    with pytest.raises(RunFailedError, match="batch transform job bt-8 Failed: AlgorithmError: boom"):
        task.execute_complete({}, event=failed[0])
    with pytest.raises(RunFailedError, match="waiting for the batch transform job failed: .*no batch transform job bt-8"):
        task.execute_complete({}, event=gone[0])


def test_parquet_input_on_s3_is_staged_as_csv_records_without_excluded_columns(aws):
    """A transform job splits its input by line: Parquet parts are staged as headerless CSV records."""
    import io

    import pandas as pd

    from cvtune.sagemaker.transform import SageMakerBatchTransform

    s3, client = aws
    for i, part in enumerate(([1, 2], [3])):
        buf = io.BytesIO()
        pd.DataFrame({"id": part, "x": [v / 2 for v in part], "target": [v % 2 for v in part]}).to_parquet(buf, index=False)
        s3.put_object(Bucket=BUCKET, Key=f"cv/scoring-pq/part-{i}.parquet", Body=buf.getvalue())
    runner = SageMakerBatchTransform(make_config(), client, s3)
    prefix, entries = runner.prepare_input(f"{PREFIX}/scoring-pq", "bt-pq", header=True, exclude_columns=["target"])
    assert prefix == f"{PREFIX}/transform-input/bt-pq/"
    assert [(e["key"], e["records"]) for e in entries] == [("part-0.parquet", 2), ("part-1.parquet", 1)]
    assert read(s3, "cv/transform-input/bt-pq/part-0.parquet") == "1,0.5\n2,1.0\n"
