"""The docs users copy from: the README's first commands, JSON blocks (IAM policies) that parse."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import ROOT

DOCS = ["README.md", "docs/sagemaker.md", "docs/docker.md", "benchmarks/README.md"]


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
