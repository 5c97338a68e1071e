"""What Airflow's provider discovery reads (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from cvtune import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-cvtune",
        "name": "cvtune",
        "description": "Cross-validated hyperparameter tuning where every fold of every candidate is its own "
        "training job on a warm pool — locally or on Amazon SageMaker.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "cvtune",
                "external-doc-url": "https://github.com/cvtune/cvtune",
                "tags": ["ml", "hyperparameter-tuning"],
            }
        ],
        "operators": [{"integration-name": "cvtune", "python-modules": ["cvtune.operators"]}],
        "sensors": [{"integration-name": "cvtune", "python-modules": ["cvtune.sensors.tuning"]}],
        "hooks": [{"integration-name": "cvtune", "python-modules": ["cvtune.hooks.cvtune"]}],
        "triggers": [{"integration-name": "cvtune", "python-modules": ["cvtune.triggers.tuning", "cvtune.triggers.transform"]}],
        "extra-links": [
            "cvtune.links.TuningReportLink",
            "cvtune.links.RunLedgerLink",
            "cvtune.links.SageMakerTrainingJobsLink",
            "cvtune.links.SageMakerFinalTrainingJobLink",
            "cvtune.links.SageMakerModelPackageLink",
            "cvtune.links.SageMakerTransformJobLink",
        ],
        "connection-types": [{"connection-type": "cvtune", "hook-class-name": "cvtune.hooks.cvtune.CvtuneHook", "hook-name": "cvtune (cross-validated tuning)"}],
    }
