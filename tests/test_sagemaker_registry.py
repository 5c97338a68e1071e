"""The model registry on SageMaker: exact requests (Stubber, checked against botocore's model of
the API), the champion/challenger gate and idempotent retries on moto's model package groups,
the statistics file on S3 (moto), and the registry the operators pick per backend."""

from __future__ import annotations

import datetime as dt
import hashlib
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
    training_job,
)

GROUP_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/grp"


@pytest.fixture
def aws(monkeypatch):
    yield from moto_aws(monkeypatch)


class Routed:
    """moto's model package group calls, with DescribeTrainingJob from a Stubber.

    moto runs no real training jobs (and its job lifecycle is not to be relied on), so the
    training job a version is made from is stubbed while the registry itself lives in moto.
    """

    def __init__(self, moto_client, stubbed_client):
        self._moto, self._stubbed = moto_client, stubbed_client
        self.meta = moto_client.meta

    def __getattr__(self, name):
        return getattr(self._stubbed if name == "describe_training_job" else self._moto, name)


def capture(client, operation: str) -> list[dict]:
    """The parameters of every ``operation`` call the client makes."""
    seen: list[dict] = []
    client.meta.events.register(f"provide-client-params.sagemaker.{operation}", lambda params, **_: seen.append(params))
    return seen


# -- exact requests --------------------------------------------------------------------------


def test_register_sends_exact_requests_and_uploads_statistics(aws):
    """First registration: group created, statistics on S3, CreateModelPackage as specified."""
    from botocore.stub import ANY, Stubber

    from cvtune.sagemaker.registry import SageMakerModelRegistry, key_digest

    s3, client = aws
    key = "cv_tuning_pipeline/manual__2026-01-01T00:00:00+00:00/register/-1"
    digest = key_digest(key)
    package_arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/grp/1"
    registry = SageMakerModelRegistry(make_config(tags={"team": "ml"}), client, s3)
    hyperparameters = {"eta": 0.1, "max_depth": 4, "objective": "binary:logistic", "weird": "a,b"}
    cv = {"mean": 0.99, "std": 0.005, "fold_scores": [0.98, 0.99, 1.0],
          "objective": {"metric": "validation:auc", "type": "Maximize"}, "run_id": "bc-1", "trial": 3}
    ledgers = [f"{PREFIX}/artifacts/runs/bc-1/ledger.json"]
    create = {
        "ModelPackageGroupName": "grp",
        "ModelPackageDescription": f"holdout auc 0.97 meets the threshold and there is no champion [cvtune {digest}]",
        "InferenceSpecification": {
            "Containers": [container("train-final-1")],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
        },
        "ModelApprovalStatus": "Approved",
        "ModelMetrics": {"ModelQuality": {"Statistics": {
            "ContentType": "application/json",
            "ContentDigest": ANY,
            "S3Uri": f"{PREFIX}/registry/grp/{digest}/statistics.json",
        }}},
        "MetadataProperties": {"GeneratedBy": "train-final-1"},
        "CustomerMetadataProperties": {
            "cvtune:idempotency-key": key,
            "cvtune:training-job": "train-final-1",
            "cvtune:data-fingerprint": "fp123",
            "cvtune:dag-run-id": "manual__2026-01-01T00:00:00+00:00",
            "cvtune:entry-point": "train.py",
            "cvtune:holdout:auc": "0.97",
            "cvtune:holdout:logloss": "0.1",
            "cvtune:cv:objective": "validation:auc",
            "cvtune:cv:objective-type": "Maximize",
            "cvtune:cv:mean": "0.99",
            "cvtune:cv:std": "0.005",
            "cvtune:cv:run_id": "bc-1",
            "cvtune:cv:trial": "3",
            "cvtune:tuning-ledger:0": ledgers[0],
            "cvtune:hp:eta": "0.1",
            "cvtune:hp:max_depth": "4",
            "cvtune:hp:objective": "binary:logistic",  # "weird": "a,b" does not fit the API's charset
        },
        "ClientToken": digest,
        "Tags": [{"Key": "team", "Value": "ml"}],
    }
    stubber = Stubber(client)
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": []},
                         {"ModelPackageGroupName": "grp", "SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100})
    stubber.add_response("describe_training_job", training_job("train-final-1"), {"TrainingJobName": "train-final-1"})
    stubber.add_client_error("describe_model_package_group", service_error_code="ValidationException",
                             service_message=f"ModelPackageGroup {GROUP_ARN} does not exist.", http_status_code=400,
                             expected_params={"ModelPackageGroupName": "grp"})
    stubber.add_response("create_model_package_group", {"ModelPackageGroupArn": GROUP_ARN}, {
        "ModelPackageGroupName": "grp", "ModelPackageGroupDescription": "cvtune models of grp",
        "Tags": [{"Key": "team", "Value": "ml"}],
    })
    stubber.add_response("create_model_package", {"ModelPackageArn": package_arn}, create)
    described = {
        "ModelPackageName": "grp", "ModelPackageGroupName": "grp", "ModelPackageVersion": 1,
        "ModelPackageArn": package_arn, "ModelPackageDescription": create["ModelPackageDescription"],
        "CreationTime": NOW, "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "InferenceSpecification": create["InferenceSpecification"], "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": create["CustomerMetadataProperties"],
        "ModelMetrics": {"ModelQuality": {"Statistics": dict(create["ModelMetrics"]["ModelQuality"]["Statistics"],
                                                             ContentDigest="sha256:" + "0" * 64)}},
    }
    stubber.add_response("describe_model_package", described, {"ModelPackageName": package_arn})
    sent = capture(client, "CreateModelPackage")
    with stubber:
        version = registry.register(
            "grp", model_uri=model_data("train-final-1"), hyperparameters=hyperparameters, cv_metrics=cv,
            holdout_metrics={"auc": 0.97, "logloss": 0.1}, data_fingerprint="fp123", approval_status="Approved",
            approval_reason="holdout auc 0.97 meets the threshold and there is no champion", idempotency_key=key,
            metadata={"entry_point": "/opt/airflow/include/training/train.py", "training_job": "train-final-1",
                      "tuning_ledgers": ledgers, "dag_run_id": "manual__2026-01-01T00:00:00+00:00"},
        )
        stubber.assert_no_pending_responses()
    # the statistics file: model-quality shape + the full record, its digest in the request
    body = s3.get_object(Bucket=BUCKET, Key=f"cv/registry/grp/{digest}/statistics.json")["Body"].read()
    assert sent[0]["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    stats = json.loads(body)
    assert stats["binary_classification_metrics"]["auc"] == {"value": 0.97, "standard_deviation": 0.005}
    assert stats["binary_classification_metrics"]["logloss"] == {"value": 0.1, "standard_deviation": "NaN"}
    assert stats["cvtune"]["hyperparameters"] == hyperparameters and stats["cvtune"]["cv_metrics"]["fold_scores"] == [0.98, 0.99, 1.0]
    # the version in LocalModelRegistry's shape
    assert version["version"] == 1 and version["model_package_arn"] == package_arn
    assert version["model_uri"] == model_data("train-final-1")
    assert version["holdout_metrics"] == {"auc": 0.97, "logloss": 0.1}
    assert version["hyperparameters"] == {"eta": 0.1, "max_depth": 4, "objective": "binary:logistic"}
    assert version["cv_metrics"]["objective"] == {"metric": "validation:auc", "type": "Maximize"}
    assert version["metadata"]["tuning_ledgers"] == ledgers
    assert version["approval_reason"] == "holdout auc 0.97 meets the threshold and there is no champion"
    assert version["idempotency_key"] == key and version["data_fingerprint"] == "fp123"


def test_retry_finds_the_version_without_creating_anything(aws):
    from botocore.stub import Stubber

    from cvtune.sagemaker.registry import SageMakerModelRegistry, key_digest

    s3, client = aws
    key = "dag/run/register/-1"
    arn2 = "arn:aws:sagemaker:us-east-1:123456789012:model-package/grp/2"

    def summary(n, description):
        return {"ModelPackageGroupName": "grp", "ModelPackageVersion": n, "CreationTime": NOW,
                "ModelPackageArn": f"arn:aws:sagemaker:us-east-1:123456789012:model-package/grp/{n}",
                "ModelPackageDescription": description, "ModelPackageStatus": "Completed",
                "ModelApprovalStatus": "PendingManualApproval"}

    stubber = Stubber(client)
    stubber.add_response("list_model_packages", {
        "ModelPackageSummaryList": [summary(1, "other [cvtune 0000]"), summary(2, f"x [cvtune {key_digest(key)}]"),
                                    summary(3, "manually added")],
    }, {"ModelPackageGroupName": "grp", "SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100})
    stubber.add_response("describe_model_package", {
        "ModelPackageName": "grp", "ModelPackageGroupName": "grp", "ModelPackageVersion": 2, "ModelPackageArn": arn2,
        "CreationTime": NOW, "ModelPackageStatus": "Completed", "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": "PendingManualApproval", "ModelPackageDescription": f"x [cvtune {key_digest(key)}]",
        "CustomerMetadataProperties": {"cvtune:idempotency-key": key, "cvtune:holdout:auc": "0.9"},
    }, {"ModelPackageName": arn2})
    with stubber:
        version = SageMakerModelRegistry(make_config(), client, s3).register(
            "grp", model_uri=model_data("j"), hyperparameters={}, cv_metrics={}, holdout_metrics={"auc": 0.9},
            data_fingerprint=None, approval_status="PendingManualApproval", idempotency_key=key,
            metadata={"training_job": "j"},
        )
        stubber.assert_no_pending_responses()  # and no Create* call: the Stubber rejects unexpected calls
    assert version["version"] == 2 and version["holdout_metrics"] == {"auc": 0.9}


def test_set_status_updates_the_package_and_keeps_its_metadata(aws):
    from botocore.stub import Stubber

    from cvtune.sagemaker.registry import SageMakerModelRegistry

    s3, client = aws
    arn = "arn:aws:sagemaker:us-east-1:123456789012:model-package/grp/1"
    meta = {"cvtune:idempotency-key": "k", "cvtune:holdout:auc": "0.9"}
    package = {
        "ModelPackageName": "grp", "ModelPackageGroupName": "grp", "ModelPackageVersion": 1, "ModelPackageArn": arn,
        "CreationTime": NOW, "ModelPackageStatus": "Completed", "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": "PendingManualApproval", "CustomerMetadataProperties": meta,
    }
    stubber = Stubber(client)
    stubber.add_response("list_model_packages", {"ModelPackageSummaryList": [{
        "ModelPackageArn": arn, "ModelPackageVersion": 1, "CreationTime": NOW, "ModelPackageStatus": "Completed"}]},
        {"ModelPackageGroupName": "grp", "SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100})
    stubber.add_response("describe_model_package", package, {"ModelPackageName": arn})
    stubber.add_response("update_model_package", {"ModelPackageArn": arn}, {
        "ModelPackageArn": arn, "ModelApprovalStatus": "Approved", "ApprovalDescription": "looked at it",
        "CustomerMetadataProperties": meta,
    })
    stubber.add_response("describe_model_package", dict(package, ModelApprovalStatus="Approved",
                                                        ApprovalDescription="looked at it"), {"ModelPackageName": arn})
    with stubber:
        version = SageMakerModelRegistry(make_config(), client, s3).set_status("grp", 1, "Approved", "looked at it")
        stubber.assert_no_pending_responses()
    assert version["approval_status"] == "Approved" and version["approval_reason"] == "looked at it"


# -- the gate and idempotency on moto's model registry ---------------------------------------


def test_champion_challenger_gate_and_retries_on_moto(aws):
    """The same sequence as the local registry's gate test, against moto's model package groups."""
    from botocore.stub import Stubber

    from cvtune.errors import ConfigError
    from cvtune.registry import APPROVED, PENDING, REJECTED, decide_approval
    from cvtune.sagemaker.registry import SageMakerModelRegistry

    s3, moto_sagemaker = aws
    import boto3

    stubbed = boto3.client("sagemaker", region_name="us-east-1")
    stubber = Stubber(stubbed)
    stubber.activate()
    registry = SageMakerModelRegistry(make_config(), Routed(moto_sagemaker, stubbed), s3)

    def add(auc, job, key=None, creates=True):
        if creates:
            stubber.add_response("describe_training_job", training_job(job), {"TrainingJobName": job})
        status, reason = decide_approval("auc", auc, 0.9, registry.approved("grp"), maximize=True)
        return registry.register("grp", model_uri=model_data(job), hyperparameters={"eta": auc}, cv_metrics={},
                                 holdout_metrics={"auc": auc}, data_fingerprint="f", approval_status=status,
                                 approval_reason=reason, idempotency_key=key, metadata={"training_job": job})

    assert registry.versions("grp") == [] and registry.approved("grp") is None
    v1 = add(0.85, "j1")
    assert v1["approval_status"] == PENDING and "threshold" in v1["approval_reason"]
    v2 = add(0.95, "j2")
    assert v2["approval_status"] == APPROVED and v2["version"] == 2
    v3 = add(0.93, "j3")
    assert v3["approval_status"] == PENDING and "worse than approved version 2" in v3["approval_reason"]
    v4 = add(0.96, "j4", key="dag/run/register/-1")
    assert v4["approval_status"] == APPROVED
    assert add(0.96, "j4", key="dag/run/register/-1", creates=False)["version"] == v4["version"]  # retry: nothing new
    assert [v["version"] for v in registry.versions("grp")] == [1, 2, 3, 4]
    assert registry.approved("grp")["version"] == 4
    assert registry.versions("grp")[3]["model_uri"] == model_data("j4")
    # a person rejects v4: v2 is the champion again, and v4's retry still finds v4
    assert registry.set_status("grp", 4, REJECTED, "bad on the new shop")["approval_status"] == REJECTED
    assert registry.approved("grp")["version"] == 2
    assert add(0.96, "j4", key="dag/run/register/-1", creates=False)["version"] == 4
    package = moto_sagemaker.describe_model_package(ModelPackageName=v4["model_package_arn"])
    assert package["ApprovalDescription"] == "bad on the new shop"
    assert package["InferenceSpecification"]["Containers"][0] == container("j4")
    with pytest.raises(ConfigError, match="no version 9"):
        registry.set_status("grp", 9, APPROVED)
    with pytest.raises(ConfigError, match="not the model of training job"):
        stubber.add_response("describe_training_job", training_job("j5"), {"TrainingJobName": "j5"})
        registry.register("grp", model_uri=model_data("other"), hyperparameters={}, cv_metrics={}, holdout_metrics={},
                          data_fingerprint=None, approval_status=PENDING, metadata={"training_job": "j5"})
    stubber.assert_no_pending_responses()
    stubber.deactivate()
    assert len(moto_sagemaker.list_model_packages(ModelPackageGroupName="grp")["ModelPackageSummaryList"]) == 4


def test_a_missing_group_has_no_versions_and_no_champion(aws):
    from botocore.stub import Stubber

    from cvtune.sagemaker.registry import SageMakerModelRegistry

    s3, client = aws
    stubber = Stubber(client)
    for params in (
        {"ModelPackageGroupName": "new-grp", "ModelApprovalStatus": "Approved", "SortBy": "CreationTime",
         "SortOrder": "Descending", "MaxResults": 1},
        {"ModelPackageGroupName": "new-grp", "SortBy": "CreationTime", "SortOrder": "Ascending", "MaxResults": 100},
    ):
        stubber.add_client_error("list_model_packages", service_error_code="ValidationException", http_status_code=400,
                                 service_message="ModelPackageGroup new-grp does not exist.", expected_params=params)
    stubber.add_client_error("list_model_packages", service_error_code="AccessDeniedException", http_status_code=400,
                             service_message="not allowed")
    registry = SageMakerModelRegistry(make_config(), client, s3)
    with stubber:
        assert registry.approved("new-grp") is None
        assert registry.versions("new-grp") == []
        with pytest.raises(Exception, match="AccessDenied"):
            registry.versions("new-grp")


def test_bad_input_is_refused_before_any_call(aws):
    from botocore.stub import Stubber

    from cvtune.errors import ConfigError
    from cvtune.sagemaker.registry import SageMakerModelRegistry, metadata_safe

    s3, client = aws
    registry = SageMakerModelRegistry(make_config(), client, s3)
    common = dict(hyperparameters={}, cv_metrics={}, holdout_metrics={}, data_fingerprint=None)
    with Stubber(client):  # no responses queued: any call would fail the test
        with pytest.raises(ConfigError, match="approval_status"):
            registry.register("grp", model_uri=model_data("j"), approval_status="Maybe", metadata={"training_job": "j"}, **common)
        with pytest.raises(ConfigError, match="model_package_group"):
            registry.register("bad_name!", model_uri=model_data("j"), approval_status="Approved", metadata={"training_job": "j"}, **common)
        with pytest.raises(ConfigError, match="training job"):
            registry.register("grp", model_uri=model_data("j"), approval_status="Approved", **common)
        with pytest.raises(ConfigError, match="not on S3"):
            registry.register("grp", model_uri="/tmp/model", approval_status="Approved", metadata={"training_job": "j"}, **common)
    assert metadata_safe("s3://b/k/ledger.json") and metadata_safe("manual__2026-01-01T00:00:00+00:00")
    assert not metadata_safe("a,b") and not metadata_safe('"x"') and not metadata_safe("x" * 257) and not metadata_safe("")


def test_operators_pick_the_registry_by_backend(monkeypatch, tmp_path):
    from cvtune.local.registry import LocalModelRegistry
    from cvtune.platform import platform_for
    from cvtune.sagemaker.registry import SageMakerModelRegistry

    local = platform_for({"backend": "local", "artifact_root": str(tmp_path)}).registry()
    assert isinstance(local, LocalModelRegistry)
    remote = platform_for({"backend": "sagemaker", "role_arn": ROLE, "s3_prefix": PREFIX}).registry()
    assert isinstance(remote, SageMakerModelRegistry) and remote.config.s3_prefix == PREFIX


# -- the final training job on the SageMaker backend -----------------------------------------


def test_final_training_uses_the_fold_jobs_pool_and_reads_holdout_from_metrics(aws, tmp_path):
    """train_final through the SageMaker backend: the fold jobs' ResourceConfig and keep-alive
    (so it starts on their warm pool), the holdout as channel ``test``, the model on S3, and the
    holdout metrics from FinalMetricDataList — the model never comes back to this machine."""
    from botocore.stub import Stubber

    from cvtune.backends.base import JobSpec
    from cvtune.sagemaker.backend import SageMakerBackend
    from cvtune.training import train_final

    s3, client = aws
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('test:auc=0.97;')\n")
    for name, text in (("full", "a,target\n1,0\n2,1\n"), ("holdout", "a,target\n3,1\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.csv").write_text(text)
    manifest = {"full_train": {"uri": str(tmp_path / "full")}, "holdout": {"uri": str(tmp_path / "holdout")}}
    config = make_config()
    backend = SageMakerBackend(config, sagemaker_client=client, s3_client=s3, sleep=lambda s: None)
    fold_request = backend.build_request(JobSpec(name="bc-1-t0000-f0", entry_point=str(code / "train.py"),
                                                 hyperparameters={"eta": 0.1}, channels={"train": str(tmp_path / "full")}))
    job = "train-final-abc"
    stubber = Stubber(client)
    stubber.add_response("create_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"}, None)  # asserted below, piece by piece
    running = dict(training_job(job), TrainingJobStatus="InProgress", SecondaryStatus="Training")
    stubber.add_response("describe_training_job", running, {"TrainingJobName": job})
    done = dict(training_job(job), BillableTimeInSeconds=41, WarmPoolStatus={"Status": "Available"}, FinalMetricDataList=[
        {"MetricName": "test:auc", "Value": 0.97, "Timestamp": NOW},
        {"MetricName": "train:auc", "Value": 0.999, "Timestamp": NOW},
        {"MetricName": "test:logloss", "Value": 0.12, "Timestamp": NOW},
    ])
    stubber.add_response("describe_training_job", done, {"TrainingJobName": job})
    # nothing after it trains on its pool: released at once
    stubber.add_response("update_training_job", {"TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"},
                         {"TrainingJobName": job, "ResourceConfig": {"KeepAlivePeriodInSeconds": 0}})
    # the backend learns that the final job took over fold job f4's pool: one ListTrainingJobs in
    # the window a provider can have been created in (keep-alive + max runtime before this job)
    stubber.add_response("describe_training_job", done, {"TrainingJobName": job})
    stubber.add_response("list_training_jobs", {"TrainingJobSummaries": [{
        "TrainingJobName": "bc-1-t0003-f4", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/bc-1-t0003-f4",
        "CreationTime": NOW, "TrainingJobStatus": "Completed",
        "WarmPoolStatus": {"Status": "Reused", "ReusedByJob": job}}]},
        {"WarmPoolStatusEquals": "Reused", "MaxResults": 100, "CreationTimeBefore": NOW,
         "CreationTimeAfter": NOW - dt.timedelta(seconds=1800 + 3600)})
    sent = capture(client, "CreateTrainingJob")
    with stubber:
        result = train_final(backend, manifest, entry_point=str(code / "train.py"), hyperparameters={"eta": 0.1, "max_depth": 4},
                             job_name=job, tags={"cvtune:run": "bc-1"}, poll_s=0.01)
        stubber.assert_no_pending_responses()
    request = sent[0]
    assert request["ResourceConfig"] == fold_request["ResourceConfig"] == {
        "InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30, "KeepAlivePeriodInSeconds": 1800}
    for key in ("RoleArn", "AlgorithmSpecification", "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption"):
        if key == "AlgorithmSpecification":
            assert request[key]["TrainingImage"] == fold_request[key]["TrainingImage"]
        else:
            assert request[key] == fold_request[key]
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert sorted(channels) == ["test", "train"] and all(u.startswith(f"{PREFIX}/data/") for u in channels.values())
    assert channels["train"] == fold_request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    names = {d["Name"] for d in request["AlgorithmSpecification"]["MetricDefinitions"]}
    assert {"test:auc", "test:logloss", "train:auc"} <= names
    assert request["HyperParameters"]["sagemaker_submit_directory"] == fold_request["HyperParameters"]["sagemaker_submit_directory"]
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {"cvtune:purpose": "final", "cvtune:run": "bc-1"}
    assert result["model_uri"] == model_data(job)
    assert result["holdout_metrics"] == {"auc": 0.97, "logloss": 0.12}
    assert result["warm_pool_status"] == "Reused" and result["billable_seconds"] == 41
    assert result["took_pool_of"] == "bc-1-t0003-f4" and result["pool_released"] is True
