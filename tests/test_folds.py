"""Tests of cvtune.folds: fold integrity per strategy, holdout, determinism, formats, bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cvtune import folds as F
from cvtune.errors import ConfigError, DataError

SAMPLE = Path(__file__).resolve().parents[1] / "include" / "data" / "breast_cancer.csv"


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def make_frame(n: int = 60, seed: int = 1) -> pd.DataFrame:
    """``id`` identifies rows; ``label`` is imbalanced 2:1; ``grp`` has 12 groups of uneven size."""
    rs = np.random.RandomState(seed)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": rs.randn(n),
            "label": np.where(np.arange(n) % 3 == 0, "b", "a"),
            "grp": [f"g{(i * 7) % 12 if i % 5 else i % 3}" for i in range(n)],
            "y": rs.rand(n) * 100,
        }
    )


def write_csv(df: pd.DataFrame, path: Path) -> str:
    df.to_csv(path, index=False)
    return str(path)


def read_dir(uri: str) -> pd.DataFrame:
    """Every data file in a channel directory, as a training script would read it."""
    names = sorted(os.listdir(uri))
    assert names, uri
    frames = [pd.read_parquet(os.path.join(uri, n)) if n.endswith(".parquet") else pd.read_csv(os.path.join(uri, n)) for n in names]
    return pd.concat(frames, ignore_index=True)


def ids(uri: str) -> list[int]:
    return read_dir(uri)["id"].tolist()


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_partition(manifest: dict, expected_ids: set[int]) -> None:
    """Validation folds are disjoint and cover ``expected_ids``; each train set is the complement."""
    seen: list[int] = []
    for fold in manifest["folds"]:
        train, valid = ids(fold["train_uri"]), ids(fold["validation_uri"])
        assert train == sorted(train) and valid == sorted(valid), "rows keep file order"
        assert set(train) == expected_ids - set(valid)
        assert len(train) == fold["train_rows"] and len(valid) == fold["validation_rows"]
        assert valid
        seen += valid
    assert len(seen) == len(set(seen)), "validation folds overlap"
    assert set(seen) == expected_ids
    assert set(ids(manifest["full_train"]["uri"])) == expected_ids


@pytest.fixture
def data(tmp_path: Path) -> str:
    return write_csv(make_frame(), tmp_path / "data.csv")


# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------


def test_kfold_partitions_rows(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="y", folds=4)
    assert m["split"]["strategy"] == "kfold" and m["split"]["task"] == "regression"
    assert_partition(m, set(range(60)))
    # shuffled, not contiguous blocks
    assert ids(m["folds"][0]["validation_uri"]) != list(range(15))


def test_stratified_partitions_and_balances(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="label", folds=5)
    assert m["split"]["strategy"] == "stratified" and m["split"]["task"] == "classification"
    assert_partition(m, set(range(60)))
    for fold in m["folds"]:
        valid = read_dir(fold["validation_uri"])
        assert (valid["label"] == "b").sum() == 4 and (valid["label"] == "a").sum() == 8
        assert fold["validation_class_balance"] == {"a": pytest.approx(2 / 3, abs=1e-6), "b": pytest.approx(1 / 3, abs=1e-6)}
        assert set(fold["train_class_balance"]) == {"a", "b"}


def test_group_keeps_groups_together(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="label", folds=3, strategy="group", group_column="grp")
    assert m["split"]["group_column"] == "grp"
    assert_partition(m, set(range(60)))
    owner: dict[str, int] = {}
    for fold in m["folds"]:
        valid_groups = set(read_dir(fold["validation_uri"])["grp"])
        train_groups = set(read_dir(fold["train_uri"])["grp"])
        assert not valid_groups & train_groups
        for g in valid_groups:
            assert g not in owner
            owner[g] = fold["fold"]
    assert set(owner) == set(make_frame()["grp"])


def test_timeseries_expanding_window(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="y", folds=4, strategy="timeseries")
    block = 60 // 5
    previous_end = 60 - 4 * block
    for fold in m["folds"]:
        train, valid = ids(fold["train_uri"]), ids(fold["validation_uri"])
        assert train == list(range(previous_end)), "trains on every row before its block"
        assert valid == list(range(previous_end, previous_end + block))
        previous_end += block
    assert previous_end == 60
    assert ids(m["full_train"]["uri"]) == list(range(60))


def test_classification_inferred_from_small_int_target(tmp_path):
    df = make_frame()
    df["cls"] = np.arange(60) % 3
    m = F.split_dataset(write_csv(df, tmp_path / "d.csv"), str(tmp_path / "out"), target="cls", folds=3)
    assert m["split"]["task"] == "classification" and m["split"]["strategy"] == "stratified"
    assert m["full_train"]["class_balance"] == {"0": pytest.approx(1 / 3, abs=1e-6), "1": pytest.approx(1 / 3, abs=1e-6), "2": pytest.approx(1 / 3, abs=1e-6)}


def test_explicit_task_and_kfold_on_classification(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="label", folds=3, strategy="kfold")
    assert m["split"]["task"] == "classification"
    assert m["folds"][0]["validation_class_balance"] is not None
    assert_partition(m, set(range(60)))


# ------------------------------------------------------------------------------------------------
# holdout
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "y", "strategy": "kfold"},
        {"target": "label", "strategy": "stratified"},
        {"target": "label", "strategy": "group", "group_column": "grp"},
        {"target": "y", "strategy": "timeseries"},
    ],
    ids=["kfold", "stratified", "group", "timeseries"],
)
def test_holdout_is_removed_before_folding(data, tmp_path, kwargs):
    m = F.split_dataset(data, str(tmp_path / "out"), folds=3, holdout=0.25, **kwargs)
    held = ids(m["holdout"]["uri"])
    assert m["holdout"]["rows"] == len(held) > 0
    rest = set(range(60)) - set(held)
    assert m["full_train"]["rows"] == len(rest)
    if kwargs["strategy"] == "timeseries":
        assert held == list(range(45, 60)), "the holdout is the last rows"
        for fold in m["folds"]:
            assert max(ids(fold["validation_uri"])) < 45
    else:
        assert_partition(m, rest)
    if kwargs["strategy"] == "group":
        frame = make_frame()
        held_groups = set(frame.loc[held, "grp"])
        assert not held_groups & set(frame.loc[sorted(rest), "grp"]), "whole groups are held out"
        assert 5 <= len(held) <= 25
    elif kwargs["strategy"] == "stratified":
        assert len(held) == 15
        labels = make_frame().loc[held, "label"]
        assert (labels == "b").sum() == 5 and (labels == "a").sum() == 10
    else:
        assert len(held) == 15


def test_holdout_rounds_up_like_sklearn(tmp_path):
    m = F.split_dataset(str(SAMPLE), str(tmp_path / "out"), target="target", holdout=0.2)
    assert (m["holdout"]["rows"], m["full_train"]["rows"]) == (114, 455)
    assert [f["validation_rows"] for f in m["folds"]] == [91] * 5


def test_sample_rows_survive_byte_for_byte(tmp_path):
    """The sample CSV was written by pandas, so its rows come back as the same text."""
    m = F.split_dataset(str(SAMPLE), str(tmp_path / "out"), target="target", holdout=0.2)
    original = SAMPLE.read_text().splitlines()
    full = Path(m["full_train"]["uri"], "data.csv").read_text().splitlines()
    held = Path(m["holdout"]["uri"], "data.csv").read_text().splitlines()
    assert full[0] == held[0] == original[0]
    assert sorted(full[1:] + held[1:]) == sorted(original[1:])


# ------------------------------------------------------------------------------------------------
# determinism, formats, inputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["stratified", "group"])
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_deterministic_bytes(data, tmp_path, file_format, strategy):
    kwargs = {"target": "label", "folds": 3, "holdout": 0.2, "seed": 7, "file_format": file_format, "strategy": strategy}
    if strategy == "group":
        kwargs["group_column"] = "grp"
    a = F.split_dataset(data, str(tmp_path / "a"), **kwargs)
    b = F.split_dataset(data, str(tmp_path / "b"), **kwargs)
    fa, fb = files_under(tmp_path / "a"), files_under(tmp_path / "b")
    assert fa.keys() == fb.keys()
    for name in fa:
        if name != "manifest.json":
            assert fa[name] == fb[name], name
    assert a["fingerprint"] == b["fingerprint"]
    assert json.loads(fa["manifest.json"].decode().replace(str(tmp_path / "a"), "X")) == json.loads(fb["manifest.json"].decode().replace(str(tmp_path / "b"), "X"))
    # same destination again (an Airflow retry): byte-identical manifest too, and it is what was returned
    again = F.split_dataset(data, str(tmp_path / "a"), **kwargs)
    assert files_under(tmp_path / "a") == fa
    assert again == a == json.loads(fa["manifest.json"])


def test_seed_changes_split_and_fingerprint(data, tmp_path):
    a = F.split_dataset(data, str(tmp_path / "a"), target="y", folds=3, seed=0)
    b = F.split_dataset(data, str(tmp_path / "b"), target="y", folds=3, seed=1)
    assert a["fingerprint"] != b["fingerprint"]
    assert ids(a["folds"][0]["validation_uri"]) != ids(b["folds"][0]["validation_uri"])


def test_floats_round_trip_exactly(tmp_path):
    values = np.array([0.1 + 0.2, 1e-300, 123456789.123456789, 1 / 3, -2.5e17, 5e-324] * 4)
    df = pd.DataFrame({"id": np.arange(len(values)), "v": values, "y": np.arange(len(values)) * 1.5})
    m = F.split_dataset(write_csv(df, tmp_path / "f.csv"), str(tmp_path / "out"), target="y", folds=2)
    back = read_dir(m["full_train"]["uri"])
    assert np.array_equal(back["v"].to_numpy(), values)


def test_parquet_in_and_out(tmp_path):
    df = make_frame()
    df["flag"] = df["id"] % 2 == 0
    df["i32"] = df["id"].astype("int32")
    df.to_parquet(tmp_path / "d.parquet", index=False)
    m = F.split_dataset(str(tmp_path / "d.parquet"), str(tmp_path / "out"), target="label", folds=3, holdout=0.1)
    assert m["dataset"]["format"] == "parquet" and m["output_format"] == "parquet"
    assert os.listdir(m["folds"][0]["train_uri"]) == ["data.parquet"]
    full = read_dir(m["full_train"]["uri"])
    assert full.dtypes.to_dict() == df.dtypes.to_dict()
    assert_partition(m, set(full["id"]))


@pytest.mark.parametrize(("source", "out_format"), [("csv", "parquet"), ("parquet", "csv")])
def test_format_conversion(tmp_path, source, out_format):
    df = make_frame()
    path = tmp_path / f"d.{source}"
    df.to_csv(path, index=False) if source == "csv" else df.to_parquet(path, index=False)
    m = F.split_dataset(str(path), str(tmp_path / "out"), target="y", folds=2, file_format=out_format)
    assert m["dataset"]["format"] == source and m["output_format"] == out_format
    assert os.listdir(m["full_train"]["uri"]) == [f"data.{out_format}"]
    back = read_dir(m["full_train"]["uri"])
    assert np.array_equal(back["x"].to_numpy(), df["x"].to_numpy())
    assert back["label"].tolist() == df["label"].tolist()


def test_directory_input(tmp_path):
    df = make_frame()
    parts = tmp_path / "parts"
    parts.mkdir()
    # Written out of name order; read in name order. Marker files are ignored.
    write_csv(df.iloc[30:], parts / "part-1.csv")
    write_csv(df.iloc[:30], parts / "part-0.csv")
    (parts / "_SUCCESS").write_text("")
    (parts / "README.txt").write_text("not data")
    m = F.split_dataset(str(parts) + "/", str(tmp_path / "out"), target="y", folds=3)
    assert m["dataset"]["rows"] == 60 and m["dataset"]["uri"] == str(parts)
    assert ids(m["full_train"]["uri"]) == list(range(60))
    assert_partition(m, set(range(60)))
    single = F.split_dataset(write_csv(df, tmp_path / "all.csv"), str(tmp_path / "out2"), target="y", folds=3)
    assert single["dataset"]["sha256"] != m["dataset"]["sha256"]


def test_manifest_shape_and_load(data, tmp_path):
    out = tmp_path / "out"
    m = F.split_dataset(data, str(out), target="label", folds=3, holdout=0.2)
    assert {"version", "manifest_uri", "fingerprint", "dataset", "split", "folds", "full_train", "holdout"} <= set(m)
    assert m["version"] == 1 and m["manifest_uri"] == str(out / "manifest.json")
    assert len(m["fingerprint"]) == 64
    assert m["dataset"]["columns"] == ["id", "x", "label", "grp", "y"] and m["dataset"]["rows"] == 60
    assert m["split"] == {"strategy": "stratified", "folds": 3, "seed": 0, "target": "label", "task": "classification", "group_column": None, "holdout": 0.2}
    assert [f["fold"] for f in m["folds"]] == [0, 1, 2]
    assert m["folds"][1]["train_uri"] == str(out / "folds" / "fold-1" / "train")
    assert m["folds"][1]["validation_uri"] == str(out / "folds" / "fold-1" / "validation")
    assert m["full_train"]["uri"] == str(out / "full" / "train") and m["holdout"]["uri"] == str(out / "holdout")
    assert sum(m["holdout"]["class_balance"].values()) == pytest.approx(1)
    assert F.load_manifest(str(out)) == m == F.load_manifest(str(out / "manifest.json"))
    assert F.manifest_summary(m) == {
        "manifest_uri": str(out / "manifest.json"),
        "fingerprint": m["fingerprint"],
        "rows": 60,
        "folds": 3,
        "strategy": "stratified",
        "task": "classification",
        "train_rows": 48,
        "holdout_rows": 12,
    }
    json.dumps(F.manifest_summary(m))


def test_regression_manifest_has_no_class_balance(data, tmp_path):
    m = F.split_dataset(data, str(tmp_path / "out"), target="y", folds=2)
    assert m["holdout"] is None and not (tmp_path / "out" / "holdout").exists()
    assert m["full_train"]["class_balance"] is None
    assert m["folds"][0]["train_class_balance"] is None and m["folds"][0]["validation_class_balance"] is None
    assert F.manifest_summary(m)["holdout_rows"] == 0


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, cvtune.folds; print('pandas' in sys.modules, 'sklearn' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(F.__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------------------------------------------
# bad inputs: the right error, naming the field, and nothing written
# ------------------------------------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, str]:
    df = make_frame()
    nan_target = df.copy()
    nan_target.loc[3, "y"] = np.nan
    rare = df.copy()
    rare.loc[:, "label"] = "a"
    rare.loc[[0, 1], "label"] = "rare"
    tiny = df.iloc[:4]
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "garbage.parquet").write_bytes(b"this is not parquet")
    (tmp_path / "data.txt").write_text("a,b\n1,2\n")
    (tmp_path / "emptydir").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_csv(df.iloc[:30], mixed / "a.csv")
    df.iloc[30:].to_parquet(mixed / "b.parquet", index=False)
    skew = tmp_path / "skew"
    skew.mkdir()
    write_csv(df.iloc[:30], skew / "a.csv")
    write_csv(df.iloc[30:, :3], skew / "b.csv")
    return {
        "ok": write_csv(df, tmp_path / "ok.csv"),
        "header_only": write_csv(df.iloc[:0], tmp_path / "header.csv"),
        "empty": str(tmp_path / "empty.csv"),
        "garbage": str(tmp_path / "garbage.parquet"),
        "txt": str(tmp_path / "data.txt"),
        "missing": str(tmp_path / "nope.csv"),
        "emptydir": str(tmp_path / "emptydir"),
        "mixed": str(mixed),
        "skew": str(skew),
        "nan_target": write_csv(nan_target, tmp_path / "nan.csv"),
        "rare": write_csv(rare, tmp_path / "rare.csv"),
        "tiny": write_csv(tiny, tmp_path / "tiny.csv"),
    }


BAD_CASES = [
    # (id, data key, kwargs, error type, field, words the message must contain)
    ("missing_file", "missing", {"target": "y"}, DataError, "data_uri", ["does not exist"]),
    ("unparseable", "garbage", {"target": "y"}, DataError, "data_uri", ["cannot parse"]),
    ("unsupported_ext", "txt", {"target": "y"}, DataError, "data_uri", [".csv or .parquet"]),
    ("zero_byte_file", "empty", {"target": "y"}, DataError, "data_uri", ["empty"]),
    ("header_only", "header_only", {"target": "y"}, DataError, "data_uri", ["no rows"]),
    ("empty_dir", "emptydir", {"target": "y"}, DataError, "data_uri", ["no .csv or .parquet"]),
    ("mixed_dir", "mixed", {"target": "y"}, DataError, "data_uri", ["mixes"]),
    ("mismatched_parts", "skew", {"target": "y"}, DataError, "data_uri", ["same columns"]),
    ("target_missing", "ok", {"target": "nope"}, DataError, "target", ["available columns", "label", "grp"]),
    ("target_nan", "nan_target", {"target": "y"}, DataError, "target", ["1 missing"]),
    ("target_empty", "ok", {"target": ""}, ConfigError, "target", []),
    ("folds_float", "ok", {"target": "y", "folds": 2.5}, ConfigError, "folds", ["integer"]),
    ("folds_str", "ok", {"target": "y", "folds": "5"}, ConfigError, "folds", ["integer"]),
    ("folds_bool", "ok", {"target": "y", "folds": True}, ConfigError, "folds", ["integer"]),
    ("folds_one", "ok", {"target": "y", "folds": 1}, ConfigError, "folds", ["at least 2"]),
    ("folds_gt_rows", "tiny", {"target": "y", "folds": 5}, DataError, "folds", ["4 rows"]),
    ("timeseries_folds_eq_rows", "tiny", {"target": "y", "folds": 4, "strategy": "timeseries"}, DataError, "folds", ["at least 5 rows"]),
    ("holdout_negative", "ok", {"target": "y", "holdout": -0.1}, ConfigError, "holdout", ["[0, 1)"]),
    ("holdout_one", "ok", {"target": "y", "holdout": 1.0}, ConfigError, "holdout", ["[0, 1)"]),
    ("holdout_nan", "ok", {"target": "y", "holdout": float("nan")}, ConfigError, "holdout", ["[0, 1)"]),
    ("holdout_str", "ok", {"target": "y", "holdout": "0.2"}, ConfigError, "holdout", []),
    ("holdout_too_big", "tiny", {"target": "y", "folds": 3, "holdout": 0.5}, DataError, "holdout", ["leaves 2 of 4"]),
    ("holdout_leaves_too_few_groups", "ok", {"target": "y", "strategy": "group", "group_column": "grp", "folds": 12, "holdout": 0.1}, DataError, "holdout", ["group"]),
    ("unknown_strategy", "ok", {"target": "y", "strategy": "loo"}, ConfigError, "strategy", ["kfold", "stratified", "group", "timeseries"]),
    ("stratified_regression", "ok", {"target": "y", "strategy": "stratified"}, DataError, "strategy", ["regression", "kfold"]),
    ("rare_class", "rare", {"target": "label", "folds": 3}, DataError, "folds", ["'rare'", "2 row", "kfold"]),
    ("rare_class_after_holdout", "rare", {"target": "label", "folds": 2, "holdout": 0.5}, DataError, "folds", ["'rare'", "outside the holdout"]),
    ("group_without_column", "ok", {"target": "y", "strategy": "group"}, ConfigError, "group_column", []),
    ("group_column_missing", "ok", {"target": "y", "strategy": "group", "group_column": "nope"}, DataError, "group_column", ["available columns"]),
    ("too_few_groups", "ok", {"target": "y", "strategy": "group", "group_column": "grp", "folds": 13}, DataError, "group_column", ["12 distinct"]),
    ("group_column_without_group", "ok", {"target": "y", "group_column": "grp"}, ConfigError, "group_column", ["strategy='group'"]),
    ("group_is_target", "ok", {"target": "label", "strategy": "group", "group_column": "label"}, ConfigError, "group_column", []),
    ("unknown_task", "ok", {"target": "y", "task": "ranking"}, ConfigError, "task", ["classification", "regression"]),
    ("regression_on_strings", "ok", {"target": "label", "task": "regression"}, DataError, "task", ["numeric"]),
    ("bad_format", "ok", {"target": "y", "file_format": "json"}, ConfigError, "file_format", ["csv", "parquet"]),
    ("bad_seed", "ok", {"target": "y", "seed": -1}, ConfigError, "seed", []),
]


@pytest.mark.parametrize(("key", "kwargs", "error", "field", "words"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_input(tmp_path, key, kwargs, error, field, words):
    (tmp_path / "in").mkdir()
    paths = _bad_files(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(error) as info:
        F.split_dataset(paths[key], str(out), **kwargs)
    assert info.value.field == field
    message = str(info.value)
    assert message.startswith(field + ":")
    for word in words:
        assert word in message, (word, message)
    assert not out.exists(), "nothing may be written on a bad input"


def test_foreign_files_in_out_uri_are_refused(data, tmp_path):
    out = tmp_path / "out"
    F.split_dataset(data, str(out), target="y", folds=2)
    before = files_under(out)
    # Same split in another format would leave data.csv beside data.parquet in each channel.
    with pytest.raises(ConfigError) as info:
        F.split_dataset(data, str(out), target="y", folds=2, file_format="parquet")
    assert info.value.field == "out_uri" and "data.csv" in str(info.value)
    assert files_under(out) == before


def test_out_uri_is_a_file(data, tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError) as info:
        F.split_dataset(data, str(target), target="y")
    assert info.value.field == "out_uri"


def test_load_manifest_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        F.load_manifest(str(tmp_path / "nowhere"))
    out = tmp_path / "out"
    m = F.split_dataset(data, str(out), target="y", folds=2)
    path = out / "manifest.json"
    path.write_text(json.dumps({**m, "version": 2}))
    with pytest.raises(ConfigError, match="version") as info:
        F.load_manifest(str(out))
    assert info.value.field == "manifest.version"
    path.write_text(json.dumps({k: v for k, v in m.items() if k != "folds"}))
    with pytest.raises(ConfigError, match="folds"):
        F.load_manifest(str(path))
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        F.load_manifest(str(path))


def test_fsspec_uris_in_and_out(tmp_path):
    """Non-local URIs go through fsspec (memory:// here stands in for s3://)."""
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/cvtune-test-{os.getpid()}-{tmp_path.name}"
    try:
        df = make_frame()
        with fs.open(f"{root}/in/part-0.csv", "wb") as f:
            f.write(df.iloc[:30].to_csv(index=False).encode())
        with fs.open(f"{root}/in/part-1.csv", "wb") as f:
            f.write(df.iloc[30:].to_csv(index=False).encode())
        m = F.split_dataset(f"memory://{root}/in/", f"memory://{root}/out", target="label", folds=3, holdout=0.2)
        assert m["folds"][2]["validation_uri"] == f"memory://{root}/out/folds/fold-2/validation"
        assert F.load_manifest(f"memory://{root}/out") == m
        local = F.split_dataset(write_csv(df, tmp_path / "d.csv"), str(tmp_path / "out"), target="label", folds=3, holdout=0.2)
        assert m["dataset"]["rows"] == 60 and m["folds"][0]["validation_rows"] == local["folds"][0]["validation_rows"]
        with fs.open(f"{root}/out/holdout/data.csv", "rb") as f:
            assert f.read() == Path(local["holdout"]["uri"], "data.csv").read_bytes()
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)
