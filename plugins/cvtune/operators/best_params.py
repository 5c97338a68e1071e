"""BestParamsOperator: the overall best hyperparameters across one or more tuning runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cvtune.operators.base import CvtuneBaseOperator


class BestParamsOperator(CvtuneBaseOperator):
    """Pick the best trial across runs (``tune`` and, when it ran, ``refine``).

    :param runs: run summaries (``CVTuningOperator`` outputs) and/or ledger URIs; ``None``
        entries — the output of a skipped branch — are ignored.

    Returns the best trial's ``hyperparameters`` (static + tuned), ``mean``, ``std``,
    ``fold_scores``, ``run_id``, ``trial`` and ``ledger``. Ties: lower std wins, then the earlier
    trial.
    """

    template_fields: Sequence[str] = ("runs", "cvtune_conn_id")
    ui_color = "#fdf2d0"

    def __init__(self, *, runs: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs = runs

    def run(self, context: Any) -> dict[str, Any]:
        from cvtune.best import ledger_uris, overall_best
        from cvtune.ledger import RunLedger

        ledgers = [RunLedger.load(uri, self.store) for uri in ledger_uris(self.runs)]
        best = overall_best(ledgers)
        self.log.info(
            "best of %d completed trials in %s: run %s trial %s, %s %.6f ± %.6f, %s",
            best["candidates"], [ledger.run_id for ledger in ledgers], best["run_id"], best["trial"],
            best["objective"]["metric"], best["mean"], best["std"], best["hyperparameters"],
        )
        return best
