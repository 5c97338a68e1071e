"""SageMaker as a platform: training jobs on warm pools, model package groups, batch transform."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cvtune.platform import Platform
from cvtune.sagemaker.config import SageMakerConfig
from cvtune.sagemaker.options import SageMakerOptions
from cvtune.settings import Settings


class SageMakerPlatform(Platform):
    name = "sagemaker"
    options_model = SageMakerOptions

    @classmethod
    def parse_extra(cls, extra: Mapping[str, Any], source: str) -> Settings:
        options = dict(extra)
        root = options.pop("artifact_root", None)
        config = SageMakerConfig.from_options({**options, **({"artifact_root": root} if root else {})}, source=source)
        options["s3_prefix"] = config.s3_prefix  # normalized (no trailing slash)
        return Settings(backend=cls.name, artifact_root=root or f"{config.s3_prefix}/artifacts", options=options,
                        source=source)

    @classmethod
    def backend_from_options(cls, **options: Any):
        from cvtune.sagemaker.backend import SageMakerBackend

        source = options.pop("source", "backend")
        seams = {k: options.pop(k) for k in ("sagemaker_client", "async_sagemaker_client", "s3_client", "sleep")
                 if k in options}
        return SageMakerBackend(SageMakerConfig.from_options(options, source=source), **seams)

    @property
    def config(self) -> SageMakerConfig:
        return SageMakerConfig.from_options(self.settings.options, source=self.source)

    def make_backend(self, **overrides: Any):
        options = {**self.settings.options, **{k: v for k, v in overrides.items() if v is not None}}
        options.setdefault("source", self.source)
        return self.backend_from_options(**options)

    def console_region(self) -> str | None:
        config = self.config
        if config.region_name:
            return config.region_name
        try:  # the region of the AWS connection the jobs are created with
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            return AwsBaseHook(aws_conn_id=config.aws_conn_id, client_type="sagemaker").conn_region_name
        except Exception:  # noqa: BLE001 - a link is a convenience; never fail the task for it
            return None

    def plan(
        self, config: Any, manifest: dict[str, Any], *, run_id: str, warm_start: Any = None,
        assumptions: dict[str, float] | None = None, field: str = "plan_only",
    ) -> dict[str, Any]:
        from cvtune.sagemaker.dryrun import dry_run
        from cvtune.sagemaker.plan import Assumptions

        return dry_run(config, manifest, self.config, run_id=run_id, warm_start=warm_start,
                       assumptions=Assumptions(**(assumptions or {})))

    def batch_transform(self, poll_s: float | None = None):
        from cvtune.sagemaker.transform import SageMakerBatchTransform

        config = self.config
        return SageMakerBatchTransform(config, poll_s=config.poll_interval_s if poll_s is None else poll_s)

    def registry(self, client: Any = None, s3_client: Any = None) -> Any:
        from cvtune.sagemaker.registry import SageMakerModelRegistry

        return SageMakerModelRegistry(self.config, client=client, s3_client=s3_client)
