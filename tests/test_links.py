"""Extra links: what a finished task links to, and that nothing is linked before it ran."""

from __future__ import annotations

# the links of a real finished run: tests/test_lineage.py (one pipeline run serves both)


def test_console_links_from_the_names_in_xcom():
    from cvtune.links import (
        RunLedgerLink,
        SageMakerFinalTrainingJobLink,
        SageMakerModelPackageLink,
        SageMakerTrainingJobsLink,
        SageMakerTransformJobLink,
        TuningReportLink,
        tuning_info,
    )

    summary = {"run_id": "tune-abc", "best": {"trial": 7, "run_id": "tune-abc"}}
    info = {"view": "https://af.example.com/cvtune", "conn_id": "cvtune_default",
            **tuning_info(summary, "eu-west-1")}
    console = "https://console.aws.amazon.com/sagemaker/home?region=eu-west-1"
    assert TuningReportLink().url(info) == "https://af.example.com/cvtune/runs/tune-abc/report"
    assert RunLedgerLink().url(info) == "https://af.example.com/cvtune/runs/tune-abc/ledger.json"
    assert SageMakerTrainingJobsLink().url(info) == f"{console}#/jobs/tune-abc-t0007-f0"
    assert SageMakerFinalTrainingJobLink().url({"region": "eu-west-1", "training_job": "train-final-x"}) == (
        f"{console}#/jobs/train-final-x"
    )
    assert SageMakerModelPackageLink().url(
        {"region": "cn-north-1", "model_package_group": "grp", "model_package_version": 3}
    ) == "https://console.amazonaws.cn/sagemaker/home?region=cn-north-1#/model-packages/grp/3"
    assert SageMakerTransformJobLink().url({"region": "us-gov-west-1", "transform_job": "bt-1"}) == (
        "https://console.amazonaws-us-gov.com/sagemaker/home?region=us-gov-west-1#/transform-jobs/bt-1"
    )
    # another connection travels with the view link; local runs have no console
    other = {"view": "/cvtune", "conn_id": "cvtune_prod", **tuning_info(summary, None)}
    assert TuningReportLink().url(other) == "/cvtune/runs/tune-abc/report?conn=cvtune_prod"
    assert SageMakerTrainingJobsLink().url(other) is None
    assert SageMakerTransformJobLink().url({"region": "eu-west-1"}) is None
    # the pipeline report is addressed by its folder under the artifact root
    assert TuningReportLink().url({"view": "/cvtune", "report": "d/r1", "run_id": "x"}) == (
        "/cvtune/reports/d/r1/report.html"
    )


def test_region_of_a_sagemaker_connection():
    from cvtune.links import sagemaker_region
    from cvtune.settings import Settings

    sm = Settings.from_extra({"backend": "sagemaker", "role_arn": "arn:aws:iam::123456789012:role/x",
                              "s3_prefix": "s3://bucket/cv", "region_name": "ap-south-1"})
    assert sagemaker_region(sm) == "ap-south-1"
    assert sagemaker_region(Settings.from_extra({"backend": "local"})) is None
