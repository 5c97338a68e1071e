"""cvtune: cross-validated hyperparameter tuning where every fold is its own training job.

The package is importable without Airflow; the Airflow layer lives in ``cvtune.operators``,
``cvtune.sensors``, ``cvtune.triggers`` and ``cvtune.hooks``.
"""

__version__ = "0.1.0"
