"""Local batch transform of Parquet and of CSV with a header: what the script receives and returns."""

from __future__ import annotations

import pandas as pd
import pytest

from cvtune.errors import ConfigError
from cvtune.local.transform import batch_transform

SCRIPT = '''
import io, pandas as pd
def model_fn(model_dir): return None
def input_fn(body, content_type):
    assert content_type == "text/csv"
    return pd.read_csv(io.StringIO(body), header=None, dtype=str)
def predict_fn(data, model): return ["|".join(row) for row in data.values.tolist()]
def output_fn(prediction, accept): return "\\n".join(prediction)
'''


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "echo.py"
    path.write_text(SCRIPT)
    (tmp_path / "model").mkdir()
    return str(path)


def frame():
    return pd.DataFrame({"id": [1, 2, 3], "name": ["a,b", "c", "d"], "x": [0.5, 1.25, -2.0], "y": ["p", "q", "p"]})


def test_parquet_folder_is_scored_record_by_record_without_the_excluded_columns(tmp_path, script):
    """Before: a Parquet holdout failed here with UnicodeDecodeError, after everything else succeeded."""
    folder = tmp_path / "scoring"
    folder.mkdir()
    frame().iloc[:2].to_parquet(folder / "part-0.parquet", index=False)
    frame().iloc[2:].to_parquet(folder / "part-1.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    result = batch_transform(entry_point=script, model_uri=str(tmp_path / "model"), input_uri=str(folder),
                             output_uri=str(tmp_path / "out"), header=True, exclude_columns=["y"])
    assert result["records"] == 3 and [f["records"] for f in result["files"]] == [2, 1]
    first = (tmp_path / "out" / "part-0.parquet.out").read_text().splitlines()
    assert first == ["1|a,b|0.5", "2|c|1.25"]  # the target removed, a quoted comma kept inside its field


def test_csv_with_header_is_parsed_as_csv(tmp_path, script):
    frame().to_csv(tmp_path / "s.csv", index=False)
    batch_transform(entry_point=script, model_uri=str(tmp_path / "model"), input_uri=str(tmp_path / "s.csv"),
                    output_uri=str(tmp_path / "out"), header=True, exclude_columns=["y", "id"])
    assert (tmp_path / "out" / "s.csv.out").read_text().splitlines() == ["a,b|0.5", "c|1.25", "d|-2.0"]
    with pytest.raises(ConfigError, match=r"exclude_columns: \['target'\] not in the columns"):
        batch_transform(entry_point=script, model_uri=str(tmp_path / "model"), input_uri=str(tmp_path / "s.csv"),
                        output_uri=str(tmp_path / "out2"), header=True, exclude_columns=["target"])
