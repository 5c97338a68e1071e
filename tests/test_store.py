"""The artifact store: one object per set of credentials, on local paths and on S3 (moto server)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from cvtune.platform import platform_for
from cvtune.store import ArtifactStore, PreconditionFailed
from tests.conftest import aws_connection


def test_local_writes_are_atomic_and_honour_the_umask(tmp_path):
    store = ArtifactStore()
    old = os.umask(0o022)
    try:
        token = store.write_json(str(tmp_path / "reports" / "summary.json"), {"a": 1})
        store.write_text(str(tmp_path / "reports" / "report.html"), "<html></html>")
    finally:
        os.umask(old)
    for name in ("summary.json", "report.html"):
        mode = stat.S_IMODE(os.stat(tmp_path / "reports" / name).st_mode)
        assert mode == 0o644, oct(mode)  # readable by a web server, not only the writer (mkstemp gave 0600)
    assert sorted(os.listdir(tmp_path / "reports")) == ["report.html", "summary.json"]  # no temp files left
    data, current = store.read_versioned(str(tmp_path / "reports" / "summary.json"))
    assert json.loads(data) == {"a": 1} and current == token


def check_conditional_writes(store: ArtifactStore, uri: str) -> None:
    """Create-only, then compare-and-swap on the version token: a stale token or a second create fails."""
    first = store.write_bytes(uri, b"1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.write_bytes(uri, b"2", if_none_match=True)
    second = store.write_bytes(uri, b"2", if_match=first)
    with pytest.raises(PreconditionFailed):
        store.write_bytes(uri, b"3", if_match=first)
    assert store.read_versioned(uri) == (b"2", second)


def test_local_conditional_writes(tmp_path):
    check_conditional_writes(ArtifactStore(), str(tmp_path / "ledger.json"))


@pytest.fixture
def s3_store(s3_server, monkeypatch, no_ambient_aws):
    s3_server.create_bucket("store-bucket")
    aws_connection(monkeypatch, "aws_store", "AKIDSTORE", s3_server.endpoint)
    return platform_for({"backend": "local", "artifact_root": "s3://store-bucket/a", "aws_conn_id": "aws_store"}).store


def test_artifact_store_on_s3(s3_store, tmp_path):
    store, root = s3_store, "s3://store-bucket/store"
    assert not store.exists(f"{root}/runs/r1/ledger.json") and not store.exists(f"{root}/runs")
    store.write_json(f"{root}/runs/r1/ledger.json", {"a": 1})
    store.write_text(f"{root}/runs/r2/notes.txt", "hi")
    store.write_bytes(f"{root}/top.bin", b"\x00\x01")
    assert store.read_json(f"{root}/runs/r1/ledger.json") == {"a": 1}
    assert store.exists(f"{root}/runs/r1/ledger.json") and store.exists(f"{root}/runs") and store.exists(f"{root}/runs/")
    assert store.isdir(f"{root}/runs") and not store.isdir(f"{root}/top.bin")
    assert store.listdir(f"{root}/runs") == ["r1", "r2"] and store.listdir(root) == ["runs", "top.bin"]
    assert store.sha256(f"{root}/top.bin") == __import__("hashlib").sha256(b"\x00\x01").hexdigest()
    with pytest.raises(FileNotFoundError):
        store.read_bytes(f"{root}/missing.json")
    with pytest.raises(FileNotFoundError):
        store.listdir(f"{root}/nothing-here")
    store.download_dir(f"{root}/runs", str(tmp_path / "dl"))
    assert json.loads((tmp_path / "dl" / "r1" / "ledger.json").read_text()) == {"a": 1}
    assert (tmp_path / "dl" / "r2" / "notes.txt").read_text() == "hi"
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "sub" / "m.bin").write_bytes(b"model")
    store.upload_dir(str(tmp_path / "up"), f"{root}/model")
    assert store.read_bytes(f"{root}/model/sub/m.bin") == b"model"


def test_s3_conditional_writes(s3_store):
    check_conditional_writes(s3_store, "s3://store-bucket/cas/ledger.json")


def test_two_stores_in_one_process_use_their_own_connections(s3_server, monkeypatch, no_ambient_aws):
    s3_server.create_bucket("two-stores")
    aws_connection(monkeypatch, "aws_team_a", "AKIDTEAMA", s3_server.endpoint)
    aws_connection(monkeypatch, "aws_team_b", "AKIDTEAMB", s3_server.endpoint)
    a = platform_for({"artifact_root": "s3://two-stores/a", "aws_conn_id": "aws_team_a"}).store
    b = platform_for({"artifact_root": "s3://two-stores/b", "aws_conn_id": "aws_team_b"}).store
    # interleaved, as tasks of two connections in one worker process would
    a.write_text("s3://two-stores/a/x.txt", "from a")
    b.write_text("s3://two-stores/b/x.txt", "from b")
    assert a.read_text("s3://two-stores/b/x.txt") == "from b"  # same bucket, a's identity
    assert b.read_text("s3://two-stores/a/x.txt") == "from a"
    assert a.exists("s3://two-stores/a/x.txt") and b.exists("s3://two-stores/b/x.txt")
    assert s3_server.keys_for("/two-stores/a/") == {"AKIDTEAMA", "AKIDTEAMB"}
    signed = [(m, p, k) for m, p, k in s3_server.requests if p.startswith("/two-stores/")]
    assert ("PUT", "/two-stores/a/x.txt", "AKIDTEAMA") in signed and ("PUT", "/two-stores/b/x.txt", "AKIDTEAMB") in signed
    assert ("GET", "/two-stores/b/x.txt", "AKIDTEAMA") in signed and ("GET", "/two-stores/a/x.txt", "AKIDTEAMB") in signed
    assert None not in s3_server.keys_for("/two-stores/")


def test_without_a_connection_there_are_no_ambient_credentials(s3_server, no_ambient_aws):
    # what every task did before: boto3's default chain; here it finds nothing, as on a worker
    # whose AWS identity lives only in Airflow connections
    store = ArtifactStore({"endpoint_url": s3_server.endpoint, "region_name": "us-east-1"})
    with pytest.raises(Exception, match="(?i)credentials"):
        store.read_bytes("s3://two-stores/a/x.txt")
