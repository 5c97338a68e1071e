"""Extra links on cvtune tasks: the run's report and ledger in the cvtune view, SageMaker consoles.

As the amazon provider does for its SageMaker operators (``BaseAwsLink.persist``), a task
stores what its links need in one XCom (key :data:`LINKS_KEY`) when it finishes; each link
formats its URL from that. Airflow 3 computes every link on the worker right after the task
ends and keeps the URL; an empty URL means "no link", which the UI does not show. So a link
whose pieces are missing (the task did not run yet, the run is local and has no console, a
report written outside the artifact root) is absent rather than broken.

The report and ledger links point at the cvtune view (:mod:`cvtune.plugins.view`), mounted on
the api-server at :data:`VIEW_PREFIX`; with ``[api] base_url`` set they are absolute.

Console URLs (``https://console.{partition domain}/sagemaker/home?region={region}#/...``), and where
each form comes from:

- transform job ``#/transform-jobs/{name}``: the amazon provider's ``SageMakerTransformJobLink``
  (``airflow/providers/amazon/aws/links/sagemaker.py``), and its ``BaseAwsLink`` console base;
- training job ``#/jobs/{name}``: the link AWS's own SageMaker components for Kubeflow Pipelines log
  for every job they create (kubeflow/pipelines ``components/aws/sagemaker``: "Training job in
  SageMaker: https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{name}");
  the amazon provider has no training-job link;
- model package version ``#/model-packages/{group}/{version}``: the console addresses a model
  package by the resource id of its ARN (``#/model-packages/{resource id}``, as ARN-to-console
  link tables map SageMaker's ``model-package`` resource type), and for a registry version that id
  is ``{group}/{version}``: "The ARN of this model package type has the structure:
  'arn:aws:sagemaker:region:account:model-package/group/version'" (AWS, SageMaker developer guide,
  "Model Registry Models, Model Versions, and Model Groups"). Neither the amazon provider nor an
  AWS-authored source we found links a version's page; the group's page,
  ``#/model-package-groups/{group}``, is the better-attested form should this one ever stop
  resolving. ``tests/test_stack.py`` checks the id against the ARN the registry returns.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from airflow.sdk import BaseOperatorLink

LINKS_KEY = "cvtune_links"
VIEW_PREFIX = "/cvtune"
DEFAULT_CONN = "cvtune_default"
CONSOLE = "https://console.{domain}/sagemaker/home?region={region}"
# the console's domain per AWS partition (as the amazon provider's BaseAwsLink.get_aws_domain)
DOMAINS = {"aws": "aws.amazon.com", "aws-cn": "amazonaws.cn", "aws-us-gov": "amazonaws-us-gov.com"}


def view_base() -> str:
    """Where the cvtune view is served: ``{[api] base_url}/cvtune``, or ``/cvtune`` when unset."""
    from airflow.sdk import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    return base + VIEW_PREFIX


def view_url(base: str, path: str, conn_id: str | None) -> str:
    query = "" if conn_id in (None, "", DEFAULT_CONN) else "?" + urlencode({"conn": conn_id})
    return f"{base}/{path}{query}"


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def console_base(region: str | None) -> str | None:
    if not region:
        return None
    return CONSOLE.format(domain=DOMAINS[partition_of(region)], region=quote(region, safe=""))


def console_page(info: dict[str, Any], page: str, key: str) -> str | None:
    """The console page ``#/<page>/<info[key]>`` in ``info``'s region; ``None`` without either."""
    base = console_base(info.get("region"))
    if not base or not info.get(key):
        return None
    return f"{base}#/{page}/{quote(info[key], safe='')}"


def sagemaker_region(settings: Any) -> str | None:
    """The region a connection's SageMaker jobs run in (``None`` for a platform without a console):
    its platform's :meth:`~cvtune.platform.Platform.console_region`."""
    from cvtune.platform import Platform, platform_for

    platform = settings if isinstance(settings, Platform) else platform_for(settings)
    return platform.console_region()


def persist(context: Any, operator: Any, **info: Any) -> None:
    """Store what this task's links need (``None`` values dropped); read back by ``get_link``."""
    ti = context.get("ti") if context else None
    if ti is None or not getattr(operator, "do_xcom_push", True):  # no task instance: nothing to link from
        return
    value = {"view": view_base(), "conn_id": getattr(operator, "cvtune_conn_id", None)}
    value.update({k: v for k, v in info.items() if v not in (None, "")})
    ti.xcom_push(key=LINKS_KEY, value=value)


def tuning_info(summary: dict[str, Any], region: str | None) -> dict[str, Any]:
    """Link pieces of a tuning run's summary: its id, and the first fold job of its best trial."""
    from cvtune.ledger import fold_job_name

    best = summary.get("best") or {}
    best_job = None
    if region and best.get("trial") is not None:
        best_job = fold_job_name(best.get("run_id") or summary["run_id"], int(best["trial"]), 0)
    return {"run_id": summary.get("run_id"), "region": region, "best_job": best_job}


class CvtuneLink(BaseOperatorLink):
    """A link formatted from the task's :data:`LINKS_KEY` XCom; ``""`` (no link) when it can't be."""

    name: ClassVar[str]

    def url(self, info: dict[str, Any]) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        try:
            info = XCom.get_value(key=LINKS_KEY, ti_key=ti_key)
        except Exception:  # noqa: BLE001 - no XCom yet (the task has not run): no link
            return ""
        if not isinstance(info, dict):
            return ""
        try:
            return self.url(info) or ""
        except (KeyError, TypeError, ValueError):
            return ""


class TuningReportLink(CvtuneLink):
    """The run's report in the cvtune view: the pipeline report, or a tuning run's own."""

    name = "Tuning report"

    def url(self, info: dict[str, Any]) -> str | None:
        if info.get("report"):
            return view_url(info["view"], f"reports/{quote(info['report'])}/report.html", info.get("conn_id"))
        if info.get("run_id"):
            return view_url(info["view"], f"runs/{quote(info['run_id'], safe='')}/report", info.get("conn_id"))
        return None


class RunLedgerLink(CvtuneLink):
    """The tuning run's ledger (JSON) in the cvtune view."""

    name = "Run ledger"

    def url(self, info: dict[str, Any]) -> str | None:
        if not info.get("run_id"):
            return None
        return view_url(info["view"], f"runs/{quote(info['run_id'], safe='')}/ledger.json", info.get("conn_id"))


class SageMakerTrainingJobsLink(CvtuneLink):
    """The run's training jobs in the SageMaker console: the fold jobs of its best trial."""

    name = "SageMaker training jobs"

    def url(self, info: dict[str, Any]) -> str | None:
        return console_page(info, "jobs", "best_job")


class SageMakerFinalTrainingJobLink(CvtuneLink):
    name = "SageMaker final training job"

    def url(self, info: dict[str, Any]) -> str | None:
        return console_page(info, "jobs", "training_job")


class SageMakerModelPackageLink(CvtuneLink):
    name = "SageMaker model package"

    def url(self, info: dict[str, Any]) -> str | None:
        base = console_base(info.get("region"))
        if not base or not info.get("model_package_group") or info.get("model_package_version") is None:
            return None
        group = quote(str(info["model_package_group"]), safe="")
        return f"{base}#/model-packages/{group}/{quote(str(info['model_package_version']), safe='')}"


class SageMakerTransformJobLink(CvtuneLink):
    name = "SageMaker transform job"

    def url(self, info: dict[str, Any]) -> str | None:
        return console_page(info, "transform-jobs", "transform_job")


TUNING_LINKS = (TuningReportLink(), RunLedgerLink(), SageMakerTrainingJobsLink())
ALL_LINKS = (
    TuningReportLink, RunLedgerLink, SageMakerTrainingJobsLink, SageMakerFinalTrainingJobLink,
    SageMakerModelPackageLink, SageMakerTransformJobLink,
)
