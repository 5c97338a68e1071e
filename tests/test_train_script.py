"""The generic training script ``include/training/train.py``: real training on small data.

Most jobs run in-process through ``main(argv)`` (fast); a few run the file as SageMaker does, in
a subprocess, and one through ``runpy.run_path(..., run_name="__main__")`` as the local warm-pool
backend does.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "include" / "training" / "train.py"
METRIC_LINE = re.compile(r"^(train|validation|test):([a-z0-9_]+)=(.*);$")
SM_VARS = (
    "SM_HPS",
    "SM_CHANNEL_TRAIN",
    "SM_CHANNEL_VALIDATION",
    "SM_CHANNEL_TEST",
    "SM_MODEL_DIR",
    "SM_OUTPUT_DATA_DIR",
    "SM_NUM_CPUS",
    "SM_HOSTS",
    "SM_CURRENT_HOST",
)
CLASSIFICATION_METRICS = ["auc", "logloss", "accuracy", "f1"]
REGRESSION_METRICS = ["rmse", "mae", "r2"]
SAGEMAKER_ARGS = [
    "--sagemaker_program",
    "train.py",
    "--sagemaker_submit_directory",
    "s3://bucket/prefix/sourcedir.tar.gz",
    "--sagemaker_region",
    "us-east-1",
    "--sagemaker_container_log_level",
    "20",
    "--sagemaker_job_name",
    "cv-job-1",
]


# ---------------------------------------------------------------------------------------------
# Helpers and fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ts():
    """The script imported as a module (what a serving container does): trains nothing."""
    spec = importlib.util.spec_from_file_location("cvtune_train_script_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cancer():
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return SimpleNamespace(train=frame.iloc[:400], validation=frame.iloc[400:500], test=frame.iloc[500:])


def mixed_frame(n: int, seed: int, task: str, n_classes: int = 2) -> pd.DataFrame:
    """Numeric, categorical (with missing values) and boolean features."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(0, 10, size=n)
    color = rng.choice(["red", "green", "blue"], size=n).astype(object)
    flag = rng.choice([True, False], size=n)
    signal = 2.0 * x1 + 0.3 * x2 + 1.5 * (color == "red") + 0.5 * flag + rng.normal(scale=0.3, size=n)
    x1[rng.random(n) < 0.1] = np.nan
    color[rng.random(n) < 0.05] = None
    frame = pd.DataFrame({"x1": x1, "x2": x2, "color": color, "flag": flag})
    if task == "regression":
        frame["y"] = signal
    else:
        edges = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
        names = np.array(["low", "mid", "high"] if n_classes == 3 else ["no", "yes"])
        frame["y"] = names[np.searchsorted(edges, signal)]
    return frame


def make_job(tmp_path: Path, **channels: pd.DataFrame) -> SimpleNamespace:
    """An /opt/ml-like layout under ``tmp_path`` and the SM_* variables describing it."""
    model_dir = tmp_path / "model"
    output_dir = tmp_path / "output" / "data"
    output_dir.mkdir(parents=True)
    env = {
        "SM_MODEL_DIR": str(model_dir),
        "SM_OUTPUT_DATA_DIR": str(output_dir),
        "SM_NUM_CPUS": "2",
        "SM_HOSTS": '["algo-1"]',
        "SM_CURRENT_HOST": "algo-1",
    }
    for name, frame in channels.items():
        directory = tmp_path / "input" / "data" / name
        directory.mkdir(parents=True)
        frame.to_csv(directory / "part-00000.csv", index=False)
        env[f"SM_CHANNEL_{name.upper()}"] = str(directory)
    return SimpleNamespace(
        env=env, model_dir=model_dir, output_dir=output_dir, failure=tmp_path / "output" / "failure"
    )


@pytest.fixture
def run_main(ts, monkeypatch):
    def run(job: SimpleNamespace, args: list[str], extra_env: dict[str, str] | None = None):
        for var in SM_VARS:
            monkeypatch.delenv(var, raising=False)
        for key, value in {**job.env, **(extra_env or {})}.items():
            monkeypatch.setenv(key, value)
        return ts.main(args)

    return run


def run_script(job: SimpleNamespace, args: list[str], extra_env: dict[str, str] | None = None):
    env = {k: v for k, v in os.environ.items() if k not in SM_VARS}
    env.update(job.env)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def metric_lines(stdout: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for line in stdout.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = match.group(3)
    return found


def args_for(model: str, task: str, target: str = "y", **tuned: object) -> list[str]:
    args = ["--model", model, "--task", task, "--target", target]
    for name, value in tuned.items():
        args += [f"--{name}", str(value)]
    return args


def exit_message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value.code)


# ---------------------------------------------------------------------------------------------
# Training end to end
# ---------------------------------------------------------------------------------------------


def test_xgboost_on_breast_cancer_as_sagemaker_runs_it(tmp_path, cancer):
    job = make_job(tmp_path, train=cancer.train, validation=cancer.validation, test=cancer.test)
    proc = run_script(job, args_for("xgboost", "classification", "target") + SAGEMAKER_ARGS)
    assert proc.returncode == 0, proc.stderr

    lines = metric_lines(proc.stdout)
    assert set(lines) == {"train", "validation", "test"}
    for channel, values in lines.items():
        assert list(values) == CLASSIFICATION_METRICS, channel
        for text in values.values():
            # Full precision: the printed text is exactly repr() of the float it parses to.
            assert repr(float(text)) == text
            assert math.isfinite(float(text))
    assert float(lines["validation"]["auc"]) > 0.95
    assert float(lines["test"]["auc"]) > 0.95
    # The regex a tuning config writes for the objective picks the value up.
    assert re.search(r"validation:auc=([-+0-9.eE]+);", proc.stdout).group(1) == lines["validation"]["auc"]

    metadata = json.loads((job.model_dir / "metadata.json").read_text())
    assert metadata["model"] == "xgboost" and metadata["task"] == "classification"
    assert metadata["target"] == "target"
    assert metadata["feature_columns"] == [c for c in cancer.train.columns if c != "target"]
    assert metadata["classes"] == [0, 1]
    assert metadata["training_rows"] == len(cancer.train)
    assert metadata["hyperparameters"]["num_round"] == 100
    assert metadata["metrics"]["validation"]["auc"] == float(lines["validation"]["auc"])
    assert {"numpy", "pandas", "scikit-learn", "xgboost", "python"} <= set(metadata["versions"])
    assert isinstance(metadata["fit_seconds"], float) and metadata["fit_seconds"] > 0  # a figure, not a speed goal
    assert sorted(metadata["ignored_hyperparameters"]) == sorted(a[2:] for a in SAGEMAKER_ARGS[0::2])
    assert (job.model_dir / "model.joblib").is_file()
    assert json.loads((job.output_dir / "metrics.json").read_text()) == metadata["metrics"]
    assert not job.failure.exists()


@pytest.mark.parametrize(
    "model,task",
    [
        ("xgboost", "classification"),
        ("xgboost", "regression"),
        ("hist_gradient_boosting", "classification"),
        ("hist_gradient_boosting", "regression"),
        ("random_forest", "classification"),
        ("random_forest", "regression"),
        ("logistic_regression", "classification"),
        ("ridge", "regression"),
    ],
)
def test_every_model_trains_for_its_tasks(tmp_path, run_main, capsys, model, task):
    job = make_job(
        tmp_path,
        train=mixed_frame(240, 1, task),
        validation=mixed_frame(80, 2, task),
        test=mixed_frame(60, 3, task),
    )
    small = {
        "xgboost": {"num_round": 30, "max_depth": 3, "eta": 0.2},
        "hist_gradient_boosting": {"max_iter": 30},
        "random_forest": {"n_estimators": 30, "max_features": "sqrt"},
        "logistic_regression": {"C": 0.5},
        "ridge": {"alpha": 2.0},
    }[model]
    metrics = run_main(job, args_for(model, task, **small))

    expected = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    printed = metric_lines(capsys.readouterr().out)
    assert set(metrics) == set(printed) == {"train", "validation", "test"}
    for channel in metrics:
        assert list(printed[channel]) == expected
        assert [float(v) for v in printed[channel].values()] == [metrics[channel][m] for m in expected]
    quality = metrics["validation"]["auc"] if task == "classification" else metrics["validation"]["r2"]
    assert quality > 0.7, metrics

    bundle = joblib.load(job.model_dir / "model.joblib")
    assert bundle["numeric_columns"] == ["x1", "x2"]
    assert bundle["categorical_columns"] == ["color", "flag"]
    metadata = json.loads((job.model_dir / "metadata.json").read_text())
    for name, value in small.items():
        assert metadata["hyperparameters"][name] == value


@pytest.mark.parametrize("model", ["xgboost", "logistic_regression"])
def test_multiclass(tmp_path, run_main, model):
    job = make_job(
        tmp_path,
        train=mixed_frame(300, 4, "classification", 3),
        validation=mixed_frame(90, 5, "classification", 3),
    )
    metrics = run_main(
        job,
        args_for(model, "classification", num_round=30)
        if model == "xgboost"
        else args_for(model, "classification"),
    )
    assert list(metrics["validation"]) == CLASSIFICATION_METRICS
    assert metrics["validation"]["auc"] > 0.8
    assert json.loads((job.model_dir / "metadata.json").read_text())["classes"] == ["high", "low", "mid"]


def test_numeric_classes_keep_numeric_order(ts, tmp_path, run_main):
    train = mixed_frame(300, 16, "classification", 3)
    train["y"] = train["y"].map({"low": 10, "mid": 2, "high": 3})
    job = make_job(tmp_path, train=train)
    run_main(job, args_for("logistic_regression", "classification"))
    bundle = ts.model_fn(str(job.model_dir))
    assert bundle["classes"] == [2, 3, 10]
    proba = ts.predict_fn(train.drop(columns=["y"]).head(50), bundle)
    # Column k of the probability matrix is classes[k]: the most likely class is mostly right.
    predicted = np.array(bundle["classes"])[proba.argmax(axis=1)]
    assert (predicted == train["y"].head(50).to_numpy()).mean() > 0.7


def test_runs_through_runpy_as_the_local_backend_does(tmp_path, cancer, monkeypatch, capsys):
    job = make_job(tmp_path, train=cancer.train, validation=cancer.validation)
    for var in SM_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in job.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(
        sys, "argv", [str(SCRIPT), *args_for("random_forest", "classification", "target", n_estimators=20)]
    )
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert float(metric_lines(capsys.readouterr().out)["validation"]["auc"]) > 0.95
    assert (job.model_dir / "model.joblib").is_file()


def test_importing_the_script_trains_nothing(capsys):
    spec = importlib.util.spec_from_file_location("cvtune_train_script_import_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert capsys.readouterr().out == ""
    assert all(
        callable(getattr(module, f)) for f in ("main", "model_fn", "input_fn", "predict_fn", "output_fn")
    )


# ---------------------------------------------------------------------------------------------
# Train-only preprocessing and label handling
# ---------------------------------------------------------------------------------------------


def test_preprocessing_is_fitted_on_train_rows_only(tmp_path, run_main):
    train = mixed_frame(200, 6, "classification")
    validation = mixed_frame(100, 7, "classification")
    # A validation channel nothing like train: shifted by orders of magnitude, a new category,
    # and more gaps. Any of it leaking into the fitted preprocessing would show below.
    validation["x1"] = validation["x1"] * 1000 + 5000
    validation["x2"] = np.nan
    validation.loc[::3, "color"] = "purple"
    test = validation.copy()
    job = make_job(tmp_path, train=train, validation=validation, test=test)
    metrics = run_main(job, args_for("logistic_regression", "classification"))
    assert set(metrics) == {"train", "validation", "test"}

    pipeline = joblib.load(job.model_dir / "model.joblib")["pipeline"]
    numeric = pipeline.named_steps["preprocess"].named_transformers_["num"]
    medians = train[["x1", "x2"]].median().to_numpy()
    np.testing.assert_allclose(numeric.named_steps["impute"].statistics_, medians)
    imputed = train[["x1", "x2"]].fillna(train[["x1", "x2"]].median())
    np.testing.assert_allclose(numeric.named_steps["scale"].mean_, imputed.mean().to_numpy())
    np.testing.assert_allclose(numeric.named_steps["scale"].scale_, imputed.std(ddof=0).to_numpy())
    onehot = pipeline.named_steps["preprocess"].named_transformers_["cat"]
    assert list(onehot.categories_[0]) == ["__missing__", "blue", "green", "red"]
    assert "purple" not in onehot.categories_[0]


def test_tree_models_encode_categories_seen_in_train_only(tmp_path, run_main):
    train = mixed_frame(200, 8, "regression")
    validation = mixed_frame(60, 9, "regression")
    validation["color"] = "purple"
    job = make_job(tmp_path, train=train, validation=validation)
    metrics = run_main(job, args_for("xgboost", "regression", num_round=20))
    assert list(metrics["validation"]) == REGRESSION_METRICS
    encoder = (
        joblib.load(job.model_dir / "model.joblib")["pipeline"]
        .named_steps["preprocess"]
        .named_transformers_["cat"]
    )
    assert list(encoder.categories_[0]) == ["__missing__", "blue", "green", "red"]
    assert list(encoder.categories_[1]) == ["False", "True"]


def test_validation_class_unseen_in_train_does_not_crash(tmp_path, run_main, capsys):
    train = mixed_frame(200, 10, "classification")
    validation = mixed_frame(80, 11, "classification")
    validation.loc[:9, "y"] = "maybe"
    job = make_job(tmp_path, train=train, validation=validation)
    metrics = run_main(job, args_for("hist_gradient_boosting", "classification", max_iter=20))
    assert list(metrics["validation"]) == CLASSIFICATION_METRICS
    assert all(math.isfinite(v) for v in metrics["validation"].values())
    err = capsys.readouterr().err
    assert "10 row(s) have classes not seen in training (maybe)" in err


def test_numeric_labels_match_across_channels_even_if_read_as_float(tmp_path, run_main, cancer):
    validation = cancer.validation.copy()
    validation["target"] = validation["target"].astype(float)
    validation.loc[validation.index[0], "target"] = np.nan  # unlabelled rows are dropped, not fatal
    job = make_job(tmp_path, train=cancer.train, validation=validation)
    metrics = run_main(job, args_for("xgboost", "classification", "target", num_round=20))
    assert metrics["validation"]["auc"] > 0.95


def test_integer_labels_take_a_vectorized_path_with_the_same_results(ts, tmp_path, run_main, capsys, monkeypatch):
    # Integer labels skip the per-row Python label handling; forcing the general path must give
    # the same classes, the same unseen-class handling and bit-identical metrics.
    codes = {"low": 2, "mid": 10, "high": 5}
    train = mixed_frame(200, 20, "classification", n_classes=3)
    validation = mixed_frame(80, 21, "classification", n_classes=3)
    train["y"] = train["y"].map(codes)
    validation["y"] = validation["y"].map(codes).astype(float)
    validation.loc[:2, "y"] = [7.0, 0.5, 7.0]
    results = []
    for path in ("vectorized", "general"):
        if path == "general":
            monkeypatch.setattr(ts, "_integer_labels", lambda values: None)
        job = make_job(tmp_path / path, train=train, validation=validation)
        metrics = run_main(job, args_for("xgboost", "classification", num_round=10))
        metadata = json.loads((job.model_dir / "metadata.json").read_text())
        encoder = joblib.load(job.model_dir / "model.joblib")["label_encoder"]
        results.append((metrics, metadata["classes"], encoder.classes_.tolist(), capsys.readouterr().err))
    assert results[0][1] == [2, 5, 10]
    assert "3 row(s) have classes not seen in training (0.5, 7)" in results[0][3]
    assert results[0] == results[1]


def test_train_metrics_false_skips_only_the_train_channel(tmp_path, run_main, cancer):
    args = args_for("xgboost", "classification", "target", num_round=20)
    scored = {}
    for flag in ("true", "false"):
        job = make_job(tmp_path / flag, train=cancer.train, validation=cancer.validation)
        scored[flag] = run_main(job, args + ["--train_metrics", flag])
        metadata = json.loads((job.model_dir / "metadata.json").read_text())
        assert metadata["hyperparameters"]["train_metrics"] is (flag == "true")
    assert sorted(scored["true"]) == ["train", "validation"]
    assert sorted(scored["false"]) == ["validation"]
    assert scored["false"]["validation"] == scored["true"]["validation"]


# ---------------------------------------------------------------------------------------------
# Hyperparameters
# ---------------------------------------------------------------------------------------------


def test_unknown_hyperparameter_fails_naming_it(tmp_path, cancer):
    job = make_job(tmp_path, train=cancer.train)
    proc = run_script(job, args_for("xgboost", "classification", "target", etaa=0.1))
    assert proc.returncode != 0
    assert "unknown hyperparameter 'etaa'" in proc.stderr
    assert "did you mean 'eta'" in proc.stderr
    assert "num_round" in proc.stderr and "colsample_bytree" in proc.stderr  # the accepted list
    assert "etaa" in job.failure.read_text()
    assert not (job.model_dir / "model.joblib").exists()


def test_hyperparameter_of_another_model_is_unknown(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("random_forest", "classification", "target", eta=0.1))
    assert "unknown hyperparameter 'eta' for model 'random_forest'" in exit_message(excinfo)


def test_sagemaker_hyperparameters_are_ignored(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train)
    run_main(job, args_for("ridge", "regression", "mean radius", alpha=1.0) + SAGEMAKER_ARGS)
    metadata = json.loads((job.model_dir / "metadata.json").read_text())
    assert "sagemaker_program" in metadata["ignored_hyperparameters"]
    assert "sagemaker_program" not in metadata["hyperparameters"]


def test_sm_hps_alone_is_enough_and_strings_are_coerced(tmp_path, cancer):
    job = make_job(tmp_path, train=cancer.train, validation=cancer.validation)
    hps = {
        "model": "xgboost",
        "task": "classification",
        "target": "target",
        "num_round": "25",
        "eta": "0.3",
        "max_depth": "3",
        "seed": "7",
        "sagemaker_program": "train.py",
    }
    proc = run_script(job, [], {"SM_HPS": json.dumps(hps)})
    assert proc.returncode == 0, proc.stderr
    assert float(metric_lines(proc.stdout)["validation"]["auc"]) > 0.95
    used = json.loads((job.model_dir / "metadata.json").read_text())["hyperparameters"]
    assert used["num_round"] == 25 and isinstance(used["num_round"], int)
    assert used["eta"] == 0.3 and isinstance(used["eta"], float)
    assert used["max_depth"] == 3 and used["seed"] == 7


def test_argv_wins_over_sm_hps(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train)
    hps = {"model": "xgboost", "task": "classification", "target": "target", "num_round": 50}
    run_main(job, ["--num_round", "10", "--max_depth=2"], {"SM_HPS": json.dumps(hps)})
    used = json.loads((job.model_dir / "metadata.json").read_text())["hyperparameters"]
    assert used["num_round"] == 10 and used["max_depth"] == 2


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--eta", "fast"], "'eta'"),
        (["--max_depth", "-1"], "'max_depth'"),
        (["--subsample", "1.5"], "'subsample'"),
        (["--num_round", "2.5"], "'num_round'"),
        (["--seed", "-3"], "'seed'"),
        (["--train_metrics", "maybe"], "'train_metrics'"),
        (["--model", "svm"], "model='svm'"),
        (["--task", "ranking"], "task='ranking'"),
        (["--eta"], "--eta has no value"),
        (["stray"], "unexpected command-line argument 'stray'"),
    ],
)
def test_bad_hyperparameter_values_fail_clearly(tmp_path, run_main, cancer, args, needle):
    job = make_job(tmp_path, train=cancer.train)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("xgboost", "classification", "target") + args)
    assert needle in exit_message(excinfo)
    assert needle in job.failure.read_text()


@pytest.mark.parametrize(
    "model,task,needle",
    [
        (
            "logistic_regression",
            "regression",
            "model 'logistic_regression' does not support task 'regression'",
        ),
        ("ridge", "classification", "model 'ridge' does not support task 'classification'"),
    ],
)
def test_model_task_mismatch(tmp_path, run_main, cancer, model, task, needle):
    job = make_job(tmp_path, train=cancer.train)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for(model, task, "target"))
    assert needle in exit_message(excinfo)


def test_task_and_target_are_required(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, ["--model", "xgboost", "--target", "target"])
    assert "'task' is required" in exit_message(excinfo)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, ["--model", "xgboost", "--task", "classification"])
    assert "'target' is required" in exit_message(excinfo)


def test_coerce_value(ts):
    assert ts.coerce_value("0.1") == 0.1 and isinstance(ts.coerce_value("0.1"), float)
    assert ts.coerce_value("6") == 6 and isinstance(ts.coerce_value("6"), int)
    assert ts.coerce_value("-2") == -2
    assert ts.coerce_value("1e-3") == 0.001
    assert ts.coerce_value("true") is True and ts.coerce_value("False") is False
    assert ts.coerce_value("sqrt") == "sqrt"
    assert ts.coerce_value('"xgboost"') == "xgboost"
    assert ts.coerce_value(3) == 3 and ts.coerce_value(None) is None


def test_max_features_forms(ts):
    table = ts.HYPERPARAMETERS["random_forest"]
    check = table["max_features"][1]
    assert check("sqrt") == "sqrt" and check("log2") == "log2" and check("None") is None
    assert check("0.5") == 0.5 and check("1.0") == 1.0 and check("3") == 3
    with pytest.raises(ValueError):
        check("auto-ish")
    assert table["max_depth"][1]("none") is None and table["max_depth"][1]("4.0") == 4


# ---------------------------------------------------------------------------------------------
# Data channels
# ---------------------------------------------------------------------------------------------


def test_missing_target_column_fails_clearly(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("xgboost", "classification", "label"))
    message = exit_message(excinfo)
    assert "target column 'label' not found" in message and "mean radius" in message
    assert "target column 'label' not found" in job.failure.read_text()


def test_channel_files_are_concatenated_in_name_order(tmp_path, run_main, cancer):
    job = make_job(tmp_path)
    train_dir = tmp_path / "input" / "data" / "train"
    (train_dir / "nested").mkdir(parents=True)
    cancer.train.iloc[:150].to_csv(train_dir / "b.csv", index=False)
    cancer.train.iloc[150:300].to_parquet(train_dir / "a.parquet", index=False)
    cancer.train.iloc[300:].to_csv(train_dir / "nested" / "c.csv", index=False)
    (train_dir / ".hidden.csv").write_text("not,a,valid\ncsv")
    (train_dir / "_SUCCESS").write_text("")
    (train_dir / "README.txt").write_text("ignored")
    job.env["SM_CHANNEL_TRAIN"] = str(train_dir)
    run_main(job, args_for("xgboost", "classification", "target", num_round=10))
    assert json.loads((job.model_dir / "metadata.json").read_text())["training_rows"] == len(cancer.train)


def test_reading_a_channel_keeps_file_name_order(ts, tmp_path):
    for name, value in [("b.csv", 2), ("a.csv", 1), ("c.csv", 3)]:
        pd.DataFrame({"v": [value], "w": [0]}).to_csv(tmp_path / name, index=False)
    assert ts.read_channel("train", str(tmp_path))["v"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    "setup,needle",
    [
        (lambda d: (d / "notes.txt").write_text("x"), "no .csv or .parquet files"),
        (lambda d: (d / "empty.csv").write_text("a,target\n"), "no rows"),
        (lambda d: (d / "gaps.csv").write_text("a,target\n1,\n2,\n"), "every row has a missing target"),
        (lambda d: (d / "one.csv").write_text("a,target\n1,0\n2,0\n"), "single class"),
    ],
)
def test_unusable_training_data_fails_clearly(tmp_path, run_main, setup, needle):
    job = make_job(tmp_path)
    train_dir = tmp_path / "input" / "data" / "train"
    train_dir.mkdir(parents=True)
    setup(train_dir)
    job.env["SM_CHANNEL_TRAIN"] = str(train_dir)
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("xgboost", "classification", "target"))
    assert needle in exit_message(excinfo)


def test_missing_channel_directory_and_missing_feature_columns(tmp_path, run_main, cancer):
    job = make_job(tmp_path, train=cancer.train, validation=cancer.validation.drop(columns=["mean radius"]))
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("xgboost", "classification", "target"))
    assert "channel 'validation': feature column(s) missing: mean radius" in exit_message(excinfo)
    job.env["SM_CHANNEL_VALIDATION"] = str(tmp_path / "nowhere")
    with pytest.raises(SystemExit) as excinfo:
        run_main(job, args_for("xgboost", "classification", "target"))
    assert "does not exist" in exit_message(excinfo)


def test_metric_line_format(ts):
    assert ts.format_metric("validation", "auc", np.float64(0.1)) == "validation:auc=0.1;"
    assert ts.format_metric("test", "rmse", np.float32(0.5)) == "test:rmse=0.5;"
    value = 2 / 3
    assert ts.format_metric("train", "r2", value) == f"train:r2={value!r};"


# ---------------------------------------------------------------------------------------------
# Inference handlers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer_model(ts, cancer, tmp_path_factory):
    job = make_job(tmp_path_factory.mktemp("cancer_model"), train=cancer.train)
    with pytest.MonkeyPatch.context() as mp:
        for var in SM_VARS:
            mp.delenv(var, raising=False)
        for key, value in job.env.items():
            mp.setenv(key, value)
        ts.main(args_for("xgboost", "classification", "target", num_round=20))
    bundle = ts.model_fn(str(job.model_dir))
    features = cancer.test.drop(columns=["target"])
    expected = bundle["pipeline"].predict_proba(features)[:, 1].astype("float64")
    return SimpleNamespace(bundle=bundle, features=features, expected=expected)


def to_csv_body(frame: pd.DataFrame, header: bool) -> str:
    # repr keeps every digit, so the parsed values are exactly the frame's.
    rows = [",".join(repr(float(v)) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(([",".join(frame.columns)] if header else []) + rows) + "\n"


def test_csv_without_header_round_trip(ts, cancer_model):
    body = to_csv_body(cancer_model.features, header=False).encode("utf-8")
    data = ts.input_fn(body, "text/csv")
    prediction = ts.predict_fn(data, cancer_model.bundle)
    np.testing.assert_array_equal(prediction, cancer_model.expected)

    out = ts.output_fn(prediction, "text/csv")
    lines = out.split("\n")
    assert len(lines) == len(cancer_model.features)
    assert [float(v) for v in lines] == prediction.tolist()
    assert all(repr(float(v)) == v for v in lines)


def test_csv_with_header_including_target_round_trip(ts, cancer, cancer_model):
    frame = cancer.test[["target"] + list(reversed(cancer_model.features.columns))]
    data = ts.input_fn(to_csv_body(frame, header=True), "text/csv; charset=utf-8")
    prediction = ts.predict_fn(data, cancer_model.bundle)
    np.testing.assert_array_equal(prediction, cancer_model.expected)


def test_json_and_jsonlines_round_trip(ts, cancer_model):
    records = cancer_model.features.to_dict(orient="records")
    for body, content_type in [
        (json.dumps(records), "application/json"),
        (json.dumps({"instances": records}), "application/json"),
        (json.dumps({"instances": cancer_model.features.values.tolist()}), "application/json"),
        ("\n".join(json.dumps(r) for r in records), "application/jsonlines"),
    ]:
        prediction = ts.predict_fn(ts.input_fn(body, content_type), cancer_model.bundle)
        np.testing.assert_array_equal(prediction, cancer_model.expected)

    single = ts.predict_fn(ts.input_fn(json.dumps(records[0]), "application/json"), cancer_model.bundle)
    np.testing.assert_array_equal(single, cancer_model.expected[:1])
    out = json.loads(ts.output_fn(cancer_model.expected, "application/json"))
    assert out == {"predictions": cancer_model.expected.tolist()}


def test_inference_errors_are_clear(ts, cancer_model):
    with pytest.raises(ValueError, match="unsupported content type 'application/x-npy'"):
        ts.input_fn(b"\x93NUMPY", "application/x-npy")
    with pytest.raises(ValueError, match="expected 30 values per record"):
        ts.predict_fn(ts.input_fn("1,2,3\n", "text/csv"), cancer_model.bundle)
    with_target = to_csv_body(
        pd.concat([cancer_model.features, pd.Series(0, index=cancer_model.features.index)], axis=1), False
    )
    with pytest.raises(ValueError, match="expected 30 values per record"):
        ts.predict_fn(ts.input_fn(with_target, "text/csv"), cancer_model.bundle)
    header_only_some = "mean radius,target\n1.0,0\n"
    with pytest.raises(ValueError, match="header row lacks feature column"):
        ts.predict_fn(ts.input_fn(header_only_some, "text/csv"), cancer_model.bundle)
    with pytest.raises(ValueError, match="missing feature column"):
        ts.predict_fn(
            ts.input_fn(json.dumps([{"mean radius": 1.0}]), "application/json"), cancer_model.bundle
        )
    with pytest.raises(ValueError, match="must be numeric"):
        ts.predict_fn(ts.input_fn(",".join(["abc"] * 30), "text/csv"), cancer_model.bundle)
    with pytest.raises(ValueError, match="unsupported accept type"):
        ts.output_fn(cancer_model.expected, "application/x-protobuf")
    with pytest.raises(ValueError, match="empty request body"):
        ts.input_fn(b"", "text/csv")


def test_inference_with_categorical_features_and_multiclass(ts, tmp_path, run_main):
    train = mixed_frame(300, 12, "classification", 3)
    job = make_job(tmp_path, train=train)
    run_main(job, args_for("random_forest", "classification", n_estimators=20))
    bundle = ts.model_fn(str(job.model_dir))

    rows = mixed_frame(5, 13, "classification", 3).drop(columns=["y"])
    rows.loc[0, "color"] = "purple"  # unseen category: encoded as unknown, not an error
    rows.loc[1, "x1"] = np.nan
    expected = bundle["pipeline"].predict_proba(ts.prepare_features(rows, ["x1", "x2"], ["color", "flag"]))

    from_json = ts.predict_fn(
        ts.input_fn(
            json.dumps(rows.astype(object).where(rows.notna(), None).to_dict(orient="records")),
            "application/json",
        ),
        bundle,
    )
    assert from_json.shape == (5, 3)
    np.testing.assert_array_equal(from_json, expected)

    # Headerless CSV: an empty field is missing; true/True spell the same flag.
    csv_rows = []
    for r in rows.itertuples(index=False):
        x1 = "" if pd.isna(r.x1) else repr(r.x1)
        color = "" if r.color is None or pd.isna(r.color) else r.color
        csv_rows.append(f"{x1},{r.x2!r},{color},{str(r.flag).lower()}")
    from_csv = ts.predict_fn(ts.input_fn("\n".join(csv_rows), "text/csv"), bundle)
    np.testing.assert_array_equal(from_csv, expected)

    lines = ts.output_fn(from_csv, "text/csv").split("\n")
    assert len(lines) == 5
    assert [[float(v) for v in line.split(",")] for line in lines] == from_csv.tolist()


def test_regression_predictions(ts, tmp_path, run_main):
    job = make_job(tmp_path, train=mixed_frame(200, 14, "regression"))
    run_main(job, args_for("ridge", "regression"))
    bundle = ts.model_fn(str(job.model_dir))
    rows = mixed_frame(4, 15, "regression")
    expected = bundle["pipeline"].predict(ts.prepare_features(rows, ["x1", "x2"], ["color", "flag"]))
    data = ts.input_fn(rows.to_csv(index=False), "text/csv")  # header with the target column
    prediction = ts.predict_fn(data, bundle)
    assert prediction.shape == (4,)
    np.testing.assert_allclose(prediction, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("with_nan", [False, True])
def test_fit_pipeline_fast_imputer_is_identical_to_a_plain_fit(ts, with_nan):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 6)), columns=[f"f{i}" for i in range(6)])
    frame["i"] = rng.integers(0, 5, 400)  # an integer column too
    if with_nan:
        frame.iloc[::7, 2] = np.nan
    y = (frame["f0"].fillna(0) + rng.normal(size=400) > 0).astype(int).to_numpy()
    columns = list(frame.columns)
    params = {"n_estimators": 20, "max_depth": 3}
    fast = ts.fit_pipeline(ts.build_pipeline("xgboost", "classification", columns, [], params, 0, 1), frame, y, "xgboost")
    plain = ts.build_pipeline("xgboost", "classification", columns, [], params, 0, 1).fit(frame, y)
    fast_imputer = fast.named_steps["preprocess"].named_transformers_["num"].named_steps["impute"]
    plain_imputer = plain.named_steps["preprocess"].named_transformers_["num"].named_steps["impute"]
    assert np.array_equal(fast_imputer.statistics_, plain_imputer.statistics_)
    unseen = frame.copy()
    unseen.iloc[::5, 1] = np.nan  # missing values at predict time are imputed the same way
    assert np.array_equal(fast.predict_proba(unseen), plain.predict_proba(unseen))
    assert list(fast.named_steps["preprocess"].feature_names_in_) == columns


@pytest.mark.parametrize(
    "model, task, nan_at_predict, skipped",
    [
        ("xgboost", "classification", False, True),  # median imputer alone, no NaN: returns its input
        ("xgboost", "classification", True, False),  # a NaN to impute: through the pipeline
        ("random_forest", "regression", False, True),
        ("ridge", "regression", False, False),  # the scaler changes every value
    ],
)
def test_predict_scores_skips_the_preprocessing_only_when_it_changes_nothing(ts, monkeypatch, model, task, nan_at_predict, skipped):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(300, 5)), columns=[f"f{i}" for i in range(5)])
    y = (frame["f0"] + rng.normal(size=300) > 0).astype(int).to_numpy()
    if task == "regression":
        y = frame["f1"].to_numpy() * 3 + rng.normal(size=300)
    params = {"n_estimators": 10} if model != "ridge" else {}
    pipeline = ts.fit_pipeline(ts.build_pipeline(model, task, list(frame.columns), [], params, 0, 1), frame, y, model)
    rows = frame.iloc[:80].copy()
    if nan_at_predict:
        rows.iloc[::3, 1] = np.nan
    proba = task == "classification"
    expected = pipeline.predict_proba(rows) if proba else pipeline.predict(rows)
    preprocess = pipeline.named_steps["preprocess"]
    calls: list[int] = []
    transform = preprocess.transform
    monkeypatch.setattr(preprocess, "transform", lambda x: calls.append(1) or transform(x))
    got = ts.predict_scores(pipeline, rows, model, proba=proba)
    assert np.array_equal(got, expected)  # identical predictions, whichever way
    assert calls == ([] if skipped else [1])
