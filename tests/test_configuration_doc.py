"""docs/configuration.md against the code: every tuning-config key and DAG param documented, with
the type and default the code has; docs/training-script.md names what the code does."""

from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from tests.conftest import ROOT

DOC = os.path.join(ROOT, "docs", "configuration.md")


def rows(part: str) -> dict[str, tuple[str, str, str]]:
    """Table rows of one part ("## Tuning config" or "## DAG params"): name → (type, default, meaning)."""
    text = open(DOC, encoding="utf-8").read()
    start = text.index(part)
    end = text.find("\n## ", start + 1)
    out = {}
    for line in text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            out[cells[0].strip("`")] = (cells[1], cells[2], cells[3])
    return out


def code_default(cell: str):
    """A default cell written as `json` → its value; anything else (prose, "required") → None."""
    match = re.fullmatch(r"`(.*)`", cell)
    if not match:
        return None
    text = match.group(1)
    if text.startswith("{"):
        return text  # a YAML mapping, compared by hand below
    return json.loads(text)


def test_every_tuning_config_key_is_documented_with_its_default():
    from cvtune.config import KEYS, TuningConfig
    from cvtune.stopping import EarlyStopping

    documented = rows("## Tuning config")
    fields = {f.name: f.default for f in dataclasses.fields(TuningConfig)}
    for key in KEYS:
        assert key in documented, f"tuning config key {key!r} missing from docs/configuration.md"
        default = code_default(documented[key][1])
        if key in fields and fields[key] is not dataclasses.MISSING and not isinstance(default, str | type(None)):
            assert default == fields[key], key
        if key == "strategy":
            assert default == fields["strategy"]
    for field in dataclasses.fields(EarlyStopping):
        name = f"early_stopping.{field.name}"
        assert name in documented, name
        assert code_default(documented[name][1]) == field.default, name


def test_every_dag_param_is_documented_with_its_type_and_default(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=os.path.join(ROOT, "dags", "cv_tuning_pipeline.py")).get_dag("cv_tuning_pipeline")
    documented = rows("## DAG params")
    for name in dag.params:
        assert name in documented, f"DAG param {name!r} missing from docs/configuration.md"
        param = dag.params.get_param(name)
        kinds = param.schema["type"] if isinstance(param.schema["type"], list) else [param.schema["type"]]
        assert documented[name][0] == " or ".join(kinds), name
        cell = documented[name][1]
        if cell.startswith("`"):
            assert code_default(cell) == param.value, name
        section = param.schema["section"]
        doc = open(DOC, encoding="utf-8").read()
        # the row sits under its form section's heading
        heading = doc.index(f"### {section}\n")
        following = doc.find("\n### ", heading + 1)
        assert f"| `{name}` |" in doc[heading : following if following > 0 else None], (name, section)
    extra = set(documented) - set(dag.params)
    assert not extra, f"documented but not in the code: {extra}"


@pytest.mark.parametrize("name", ["xgboost", "hist_gradient_boosting", "random_forest", "logistic_regression", "ridge"])
def test_training_script_doc_lists_every_model_and_hyperparameter(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location("cvtune_train_doc", os.path.join(ROOT, "include", "training", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = open(os.path.join(ROOT, "docs", "training-script.md"), encoding="utf-8").read()
    [row] = [line for line in doc.splitlines() if line.startswith(f"| `{name}` |")]
    for hp in module.HYPERPARAMETERS[name]:
        assert f"`{hp}`" in row, (name, hp)
    for static in module.STATIC_HYPERPARAMETERS:
        assert f"`{static}`" in doc
