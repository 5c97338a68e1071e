"""`cvtune split` to s3:// uses the credentials of its --backend-config's aws_conn_id, as `cvtune tune` does."""

from __future__ import annotations

import json
import os

from tests.conftest import ROOT, aws_connection

DATA = os.path.join(ROOT, "include", "data", "breast_cancer.csv")
BUCKET = "split-cli"


def test_split_to_s3_signs_with_the_backend_configs_connection(airflow_db, s3_server, no_ambient_aws, monkeypatch,
                                                               tmp_path, capsys):
    from cvtune.cli import main
    from cvtune.store import ArtifactStore

    s3_server.create_bucket(BUCKET)
    aws_connection(monkeypatch, "aws_split", "AKIDSPLIT", s3_server.endpoint)
    settings = tmp_path / "backend.json"
    settings.write_text(json.dumps({"backend": "local", "aws_conn_id": "aws_split"}))
    first = len(s3_server.requests)

    out = f"s3://{BUCKET}/folds/bc"
    assert main(["split", DATA, "--target", "target", "--folds", "2", "--out", out,
                 "--backend-config", str(settings)]) == 0
    captured = capsys.readouterr().out
    printed = json.loads(captured[captured.index("{"):])
    assert printed["manifest"] == f"{out}/manifest.json"
    keys = {key for _, path, key in s3_server.requests[first:] if path.startswith(f"/{BUCKET}/")}
    assert keys == {"AKIDSPLIT"}  # every request signed with the connection's key, none unsigned or ambient

    admin = ArtifactStore({"key": "admin", "secret": "admin", "endpoint_url": s3_server.endpoint, "region_name": "us-east-1"})
    manifest = admin.read_json(f"{out}/manifest.json")
    assert len(manifest["folds"]) == 2 and all(admin.listdir(f["train_uri"]) for f in manifest["folds"])
