"""The docs users copy from: the README's first commands, JSON blocks (IAM policies) that parse."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import ROOT

DOCS = ["README.md", "docs/sagemaker.md", "docs/docker.md", "docs/emulator.md", "docs/deploy.md", "docs/completion.md",
        "benchmarks/README.md"]


def read(path: str) -> str:
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def test_readme_starts_with_the_two_commands():
    first_block = re.search(r"```bash\n(.*?)```", read("README.md"), re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands[:2] == ["make demo", "make test"]
    makefile = read("Makefile")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in read(".ci/run")


@pytest.mark.parametrize("path", DOCS)
def test_json_blocks_parse(path):
    blocks = re.findall(r"```json\n(.*?)```", read(path), re.S)
    for block in blocks:
        json.loads(block)


def test_readme_holds_the_least_privilege_policies():
    readme = read("README.md")
    policies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, re.S)]
    actions = {
        a for p in policies if "Statement" in p for s in p["Statement"]
        for a in ([s["Action"]] if isinstance(s.get("Action"), str) else s.get("Action", []))
    }
    for needed in ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                   "sagemaker:CreateModelPackage", "sagemaker:CreateTransformJob", "iam:PassRole"):
        assert needed in actions, needed
    assert not any(a in ("*", "sagemaker:*", "s3:*") for a in actions), "least privilege: no wildcards"


@pytest.mark.parametrize("path", DOCS)
def test_relative_links_point_at_files(path):
    for target in re.findall(r"\]\(((?!https?://|#)[^)#]+)(?:#[^)]*)?\)", read(path)):
        assert os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(path), target))), target


def _condition_holds(condition: dict, context: dict) -> bool:
    """IAM's numeric condition operators, with ``…IfExists``: "If the policy key is present in the
    context of the request, process the key as specified in the policy. If the key is not present,
    evaluate the condition element as true." Without IfExists an absent key fails the condition."""
    compare = {"NumericLessThan": float.__lt__, "NumericLessThanEquals": float.__le__,
               "NumericGreaterThan": float.__gt__, "NumericGreaterThanEquals": float.__ge__,
               "NumericEquals": float.__eq__}
    for operator, keys in condition.items():
        if_exists = operator.endswith("IfExists")
        test = compare[operator.removesuffix("IfExists")]
        for key, bound in keys.items():
            if key not in context:
                if not if_exists:
                    return False
                continue
            if not test(float(context[key]), float(bound)):
                return False
    return True


def test_keep_alive_condition_allows_jobs_without_a_keep_alive():
    """cvtune omits KeepAlivePeriodInSeconds when keep_alive_period_s is 0 (required for spot), so
    the request carries no sagemaker:KeepAlivePeriod key; the README's cap must still allow it."""
    from cvtune.backends.base import JobSpec
    from cvtune.sagemaker.requests import create_training_job
    from tests.aws_fakes import make_config

    policies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", read("README.md"), re.S)]
    create = [s for p in policies if "Statement" in p for s in p["Statement"]
              if "sagemaker:CreateTrainingJob" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert create and all("Condition" in s for s in create)
    spec = JobSpec(name="run-t0000-f0", entry_point="train.py", hyperparameters={}, channels={})

    def context(**options):
        request = create_training_job(spec, make_config(**options), region="us-east-1", code_uri="s3://b/c.tar.gz", channels={})
        keep = request["ResourceConfig"].get("KeepAlivePeriodInSeconds")
        return {} if keep is None else {"sagemaker:KeepAlivePeriod": keep}

    for statement in create:
        assert _condition_holds(statement["Condition"], context(keep_alive_period_s=0, use_spot_instances=True))
        assert _condition_holds(statement["Condition"], context(keep_alive_period_s=1800))
        assert not _condition_holds(statement["Condition"], context(keep_alive_period_s=3600))


def test_dag_doc_diagram_is_a_code_block():
    """doc_md renders as Markdown: the pipeline diagram must sit in a fenced block, all of it."""
    import ast

    doc = ast.get_docstring(ast.parse(read("dags/cv_tuning_pipeline.py")))
    fenced = re.search(r"```text\n(.*?)\n```", doc, re.S)
    assert fenced, "no fenced diagram in the DAG's doc_md"
    outside = doc.replace(fenced.group(0), "")
    assert "─" not in outside and "→ report" in fenced.group(1)
