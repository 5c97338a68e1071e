"""cvtune triggers: what a deferred task waits on in the triggerer. Only Airflow is imported here."""

from cvtune.triggers.tuning import TuningJobsTrigger, TuningRunTrigger

__all__ = ["TuningJobsTrigger", "TuningRunTrigger"]
