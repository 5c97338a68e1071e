"""cvtune operators. Each module imports only Airflow's SDK at load time; work happens in ``execute``."""

from cvtune.operators.best_params import BestParamsOperator
from cvtune.operators.registry import RegisterModelOperator
from cvtune.operators.report import TuningReportOperator
from cvtune.operators.split import FoldSplitOperator
from cvtune.operators.training import TrainModelOperator
from cvtune.operators.transform import BatchTransformOperator
from cvtune.operators.tuning import CVTuningOperator
from cvtune.operators.validate import ValidateInputsOperator
from cvtune.operators.warm_start import RefinementDecisionOperator, WarmStartTuningOperator

__all__ = [
    "BatchTransformOperator",
    "BestParamsOperator",
    "CVTuningOperator",
    "FoldSplitOperator",
    "RefinementDecisionOperator",
    "RegisterModelOperator",
    "TrainModelOperator",
    "TuningReportOperator",
    "ValidateInputsOperator",
    "WarmStartTuningOperator",
]
