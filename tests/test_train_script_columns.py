"""The generic script's columns: exclude_columns, repeated names, and scoring records that still
hold the excluded columns (what batch transform sends); multiclass metrics on string labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_train_script import make_job, mixed_frame, run_main, ts  # noqa: F401 - fixtures

BASE = ["--task", "regression", "--target", "y", "--model", "ridge"]


def with_ids(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    rs = np.random.RandomState(seed)
    # an id that predicts nothing but is unique per row, and a day column
    return frame.assign(row_id=rs.permutation(len(frame)) + 1000, day=rs.randint(0, 30, len(frame)))


def test_exclude_columns_keeps_ids_out_of_the_features(tmp_path, ts, run_main):  # noqa: F811
    train, validation = with_ids(mixed_frame(200, 1, "regression"), 1), with_ids(mixed_frame(80, 2, "regression"), 2)
    job = make_job(tmp_path, train=train, validation=validation)
    metrics = run_main(job, [*BASE, "--exclude_columns", "row_id,day"])
    assert "rmse" in metrics["validation"]
    model = ts.model_fn(str(job.model_dir))
    assert "row_id" not in model["feature_columns"] and "day" not in model["feature_columns"]
    assert model["input_columns"] == [c for c in train.columns if c != "y"]
    # a scoring record with every column but the target, in file order, no header: excluded ones dropped
    records = validation.drop(columns=["y"]).head(5).to_csv(header=False, index=False)
    by_inputs = ts.predict_fn(ts.input_fn(records, "text/csv"), model)
    features_only = validation[model["feature_columns"]].head(5).to_csv(header=False, index=False)
    assert np.allclose(by_inputs, ts.predict_fn(ts.input_fn(features_only, "text/csv"), model))


def test_exclude_columns_mistakes_are_named(tmp_path, run_main):  # noqa: F811
    job = make_job(tmp_path, train=with_ids(mixed_frame(60, 1, "regression"), 1))
    with pytest.raises(SystemExit):
        run_main(job, [*BASE, "--exclude_columns", "row_idd"])
    assert "did you mean 'row_id'" in job.failure.read_text()


def test_a_repeated_target_column_is_refused_not_turned_into_a_feature(tmp_path, run_main):  # noqa: F811
    frame = mixed_frame(60, 1, "regression")
    job = make_job(tmp_path, train=frame)
    path = next((tmp_path / "input" / "data" / "train").iterdir())
    text = path.read_text().splitlines()
    # the label twice: before, pandas renamed the second to 'y.1' and it became a feature (a copy of y)
    path.write_text("\n".join([text[0] + ",y"] + [line + "," + line.rsplit(",", 1)[1] for line in text[1:]]) + "\n")
    with pytest.raises(SystemExit):
        run_main(job, BASE)
    assert "repeats column name(s) ['y']" in job.failure.read_text()


def test_multiclass_string_labels_report_macro_auc_f1_and_logloss(tmp_path, run_main):  # noqa: F811
    job = make_job(tmp_path, train=mixed_frame(300, 1, "classification", 3), test=mixed_frame(120, 2, "classification", 3))
    metrics = run_main(job, ["--task", "classification", "--target", "y", "--model", "logistic_regression"])
    assert set(metrics["test"]) >= {"auc", "f1", "logloss", "accuracy"}
    assert 0.5 < metrics["test"]["auc"] <= 1 and 0 < metrics["test"]["f1"] <= 1 and metrics["test"]["logloss"] > 0
