"""cvtune sensors. Each module imports only Airflow's SDK at load time; work happens in ``poke``."""

from cvtune.sensors.tuning import TuningRunSensor

__all__ = ["TuningRunSensor"]
