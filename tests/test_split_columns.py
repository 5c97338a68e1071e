"""Split columns: time-ordered folds on an unsorted file, group column, duplicate column names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cvtune.errors import ConfigError, DataError
from cvtune.folds import split_dataset


def unsorted_series(path, n=60, seed=3):
    rs = np.random.RandomState(seed)
    days = pd.date_range("2026-01-01", periods=n // 2, freq="D").repeat(2)  # two rows per day: ties
    frame = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "x": rs.normal(size=n), "y": rs.normal(size=n)})
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order is not time order
    frame.to_csv(path, index=False)
    return frame


def read(uri):
    import glob
    import os

    [path] = glob.glob(os.path.join(uri, "*"))
    return pd.read_csv(path)


def test_timeseries_folds_follow_the_time_column_not_the_file_order(tmp_path):
    unsorted_series(tmp_path / "d.csv")
    manifest = split_dataset(str(tmp_path / "d.csv"), str(tmp_path / "out"), target="y", folds=4,
                             strategy="timeseries", time_column="day", holdout=0.2)
    for fold in manifest["folds"]:
        train, valid = read(fold["train_uri"]), read(fold["validation_uri"])
        assert valid["day"].min() > train["day"].max()  # no validation row at or before a training row
    holdout, full = read(manifest["holdout"]["uri"]), read(manifest["full_train"]["uri"])
    assert holdout["day"].min() > full["day"].max()
    assert manifest["split"]["time_column"] == "day"


def test_timeseries_without_a_time_column_was_file_order_and_leaked(tmp_path):
    """What the issue saw: on an unsorted file, file order puts earlier rows into validation."""
    unsorted_series(tmp_path / "d.csv")
    manifest = split_dataset(str(tmp_path / "d.csv"), str(tmp_path / "out"), target="y", folds=4, strategy="timeseries")
    leaks = [read(f["validation_uri"])["day"].min() <= read(f["train_uri"])["day"].max() for f in manifest["folds"]]
    assert any(leaks)


def test_time_and_group_columns_are_checked(tmp_path):
    unsorted_series(tmp_path / "d.csv")
    data, out = str(tmp_path / "d.csv"), str(tmp_path / "out")
    with pytest.raises(ConfigError, match="time_column: is only used by strategy 'timeseries'"):
        split_dataset(data, out, target="y", folds=3, strategy="kfold", time_column="day")
    with pytest.raises(DataError, match="time_column: column 'when' not in"):
        split_dataset(data, out, target="y", folds=3, strategy="timeseries", time_column="when")
    with pytest.raises(DataError, match="time_column: column 't' is neither numeric nor dates"):
        pd.DataFrame({"t": ["a", "b", "c", "d", "e"], "y": [1.0, 2, 3, 4, 5]}).to_csv(tmp_path / "bad.csv", index=False)
        split_dataset(str(tmp_path / "bad.csv"), out, target="y", folds=2, strategy="timeseries", time_column="t")
    with pytest.raises(ConfigError, match="group_column: strategy 'group' needs a group column"):
        split_dataset(data, out, target="y", folds=3, strategy="group")


@pytest.mark.parametrize("header", ["a,y,y\n", "a,b,a,y\n"])
def test_duplicate_column_names_are_refused(tmp_path, header):
    """pandas renames a repeated name to 'y.1'; a repeated target then became a feature: the label itself."""
    width = header.count(",") + 1
    (tmp_path / "d.csv").write_text(header + "".join(",".join(str(i + j) for j in range(width)) + "\n" for i in range(10)))
    with pytest.raises(DataError, match=r"duplicate column name\(s\) \['(y|a)'\]"):
        split_dataset(str(tmp_path / "d.csv"), str(tmp_path / "out"), target="y", folds=2, strategy="kfold")
