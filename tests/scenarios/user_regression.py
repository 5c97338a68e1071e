"""A user's own regression script, written from docs/training-script.md alone: least squares with
an intercept on the numeric columns the user picks, metrics printed as `{channel}:rmse=...;`."""

import glob
import io
import json
import math
import os
import sys

import numpy as np
import pandas as pd

TARGET = "price"
FEATURES = ["area", "rooms"]  # the user's choice: the other columns (ids) are not features


def read_folder(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.csv")) + glob.glob(os.path.join(folder, "*.parquet")))
    return pd.concat([pd.read_parquet(f) if f.endswith(".parquet") else pd.read_csv(f) for f in files], ignore_index=True)


def hyperparameters(argv):
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    return {k.lstrip("-"): v for k, v in pairs.items()}


def design(frame):
    return np.column_stack([np.ones(len(frame))] + [frame[c].to_numpy(dtype=float) for c in FEATURES])


def main():
    hp = hyperparameters(sys.argv[1:])
    ridge = float(hp.get("ridge", "0"))
    train = read_folder(os.environ["SM_CHANNEL_TRAIN"])
    x, y = design(train), train[TARGET].to_numpy(dtype=float)
    penalty = ridge * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    for channel in ("validation", "test"):
        folder = os.environ.get(f"SM_CHANNEL_{channel.upper()}")
        if folder:
            frame = read_folder(folder)
            rmse = math.sqrt(float(np.mean((design(frame) @ coef - frame[TARGET].to_numpy(dtype=float)) ** 2)))
            print(f"{channel}:rmse={rmse!r};", flush=True)
    columns = [c for c in train.columns if c != TARGET]  # what a transform record holds, in order
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as fh:
        json.dump({"coef": coef.tolist(), "columns": columns}, fh)


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as fh:
        return json.load(fh)


def input_fn(body, content_type):
    assert content_type == "text/csv", content_type
    return pd.read_csv(io.StringIO(body if isinstance(body, str) else body.decode()), header=None)


def predict_fn(data, model):
    data.columns = model["columns"]
    return design(data) @ np.array(model["coef"])


def output_fn(prediction, accept):
    return "\n".join(repr(float(v)) for v in prediction)


if __name__ == "__main__":
    main()
