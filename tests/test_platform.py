"""One platform per connection: the factory, the option schema (extra, CLI, docs) and the layout."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys

import pytest

from cvtune.errors import ConfigError
from cvtune.local.options import LocalOptions
from cvtune.options import options_table
from cvtune.platform import PLATFORMS, platform_for
from cvtune.sagemaker.options import SageMakerOptions
from tests.conftest import ROOT

PLUGINS = os.path.join(ROOT, "plugins", "cvtune")
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


@pytest.mark.parametrize(("path", "name", "model"), [
    ("README.md", "local", LocalOptions), (os.path.join("docs", "sagemaker.md"), "sagemaker", SageMakerOptions),
])
def test_the_docs_tables_are_the_schema(path, name, model):
    text = open(os.path.join(ROOT, path), encoding="utf-8").read()
    match = re.search(rf"<!-- options:{name} -->\n(.*?)\n<!-- /options:{name} -->", text, re.S)
    assert match, f"{path} has no options:{name} table"
    assert match.group(1) == options_table(model), f"regenerate with cvtune.options.options_table({model.__name__})"


def test_one_schema_for_connection_cli_and_backend(tmp_path):
    # the connection takes stop_grace_s (the backend did; the connection refused it)...
    platform = platform_for({"backend": "local", "artifact_root": str(tmp_path), "stop_grace_s": 1.5, "workers": 3},
                            source="connection c extra")
    with platform.make_backend() as backend:
        assert backend.stop_grace_s == 1.5 and backend.capacity == 3
    assert backend.work_dir == os.path.join(str(tmp_path), "jobs")
    # ... and --backend-config takes workers and artifact_root (the CLI refused them)
    config = tmp_path / "local.json"
    config.write_text(json.dumps({"workers": 1, "artifact_root": str(tmp_path / "cli-root"), "stop_grace_s": 0.5}))
    from cvtune.cli import _platform, build_parser

    args = build_parser().parse_args(["tune", "--manifest", "m", "--config", "c", "--backend-config", str(config)])
    cli = _platform(args)
    assert cli.artifact_root == str(tmp_path / "cli-root") and cli.settings.options["max_parallel_jobs"] == 1
    # typos and bad values: the key, the problem and the fix, from the same schema everywhere
    with pytest.raises(ConfigError) as err:
        platform_for({"backend": "local", "wokers": 2}, source="connection c extra")
    assert err.value.field == "connection c extra.wokers" and "did you mean 'workers'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        platform_for({"backend": "local", "keep_alive_s": -1}, source="--backend-config")
    assert err.value.field == "--backend-config.keep_alive_s" and "non-negative" in str(err.value)
    with pytest.raises(ConfigError) as err:
        platform_for({"backend": "local", "workers": "2"}, source="s")
    assert err.value.field == "s.workers" and "expected an integer" in str(err.value)
    with pytest.raises(ConfigError) as err:
        platform_for({"backend": "sagemakr"}, source="s")
    assert err.value.field == "s.backend" and "did you mean 'sagemaker'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        platform_for({"backend": "sagemaker", "role_arn": ROLE, "s3_prefix": "s3://bkt/p", "stop_grace_s": 1}, source="s")
    assert err.value.field == "s.stop_grace_s" and "unknown setting for the sagemaker backend" in str(err.value)


def test_the_platform_owns_backend_store_registry_transform_and_plan(tmp_path):
    from cvtune.local.registry import LocalModelRegistry
    from cvtune.local.transform import LocalBatchTransform
    from cvtune.sagemaker.registry import SageMakerModelRegistry
    from cvtune.sagemaker.transform import SageMakerBatchTransform

    local = platform_for({"artifact_root": str(tmp_path)})
    assert isinstance(local.registry(), LocalModelRegistry) and local.registry().store is local.store
    assert isinstance(local.batch_transform(), LocalBatchTransform) and not local.batch_transform().deferrable
    with pytest.raises(ConfigError, match="no requests to show"):
        local.plan(None, {}, run_id="r")
    sm = platform_for({"backend": "sagemaker", "role_arn": ROLE, "s3_prefix": "s3://bkt/p/"})
    assert sm.artifact_root == "s3://bkt/p/artifacts" and sm.config.s3_prefix == "s3://bkt/p"
    assert isinstance(sm.registry(), SageMakerModelRegistry) and isinstance(sm.batch_transform(), SageMakerBatchTransform)
    assert sm.store is not local.store


def _backend_comparisons(path: str) -> list[str]:
    """``x == "sagemaker"``-like comparisons (==, !=, in) with a backend name, as source lines."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []
    for node in ast.walk(tree):
        # the AWS service name (a boto3 client of service "sagemaker") is no backend
        if isinstance(node, ast.Compare) and not (isinstance(node.left, ast.Name) and node.left.id == "service"):
            values = [node.left, *node.comparators]
            for value in values:
                names = [value] if isinstance(value, ast.Constant) else getattr(value, "elts", [])
                if any(isinstance(n, ast.Constant) and n.value in PLATFORMS for n in names):
                    found.append(f"{path}:{node.lineno}")
    return found


def test_only_the_factory_tells_local_from_sagemaker():
    found = []
    for root, _dirs, files in os.walk(PLUGINS):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".py") and path != os.path.join(PLUGINS, "platform.py"):
                found += _backend_comparisons(path)
    assert found == []


def test_no_import_cycle_and_the_sensor_and_triggers_need_no_operator():
    code = (
        "import sys; import cvtune.registry; cycle = 'cvtune.sagemaker.registry' in sys.modules; "
        "import cvtune.sensors.tuning, cvtune.triggers.tuning, cvtune.triggers.transform; "
        "print(cycle, sorted(m for m in sys.modules if m.startswith('cvtune.operators')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "plugins")})
    assert out.stdout.strip().splitlines()[-1] == "False []"


def test_operator_dry_run_is_airflows_method_again(tmp_path):
    from cvtune.operators import CVTuningOperator

    op = CVTuningOperator(task_id="tune", manifest_uri=str(tmp_path / "m.json"), tuning_config={}, plan_only=True)
    op.dry_run()  # BaseOperator.dry_run(): logs the rendered template fields; was shadowed by a bool
    assert callable(op.dry_run) and op.plan_only is True
